import { execa } from 'execa';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import type { TokenCredential } from '@azure/core-auth';
import { environmentError } from '../errors.js';

export interface Credentials {
  username: string;
  password: string;
  /** Where they came from, for messages (never the values). */
  source: string;
}

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

/** The keys Docker's config uses for a registry: the host, and Docker Hub's historic URL. */
function configKeys(registry: string): string[] {
  if (registry === 'docker.io') return ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'];
  return [registry, `https://${registry}`, `http://${registry}`];
}

async function fromHelper(helper: string, registry: string, env: NodeJS.ProcessEnv): Promise<Credentials | undefined> {
  const server = configKeys(registry)[0];
  const result = await execa(`docker-credential-${helper}`, ['get'], { input: server, env, reject: false, timeout: 15_000 }).catch(() => undefined);
  if (!result || result.exitCode !== 0) return undefined;
  try {
    const { Username, Secret } = JSON.parse(result.stdout) as { Username: string; Secret: string };
    return { username: Username, password: Secret, source: `docker-credential-${helper}` };
  } catch {
    throw environmentError(`docker-credential-${helper} answered something that is not JSON for ${registry}`);
  }
}

/**
 * Credentials for a registry: MLOPS_REGISTRY_USERNAME / MLOPS_REGISTRY_PASSWORD
 * first, then Docker's config ($DOCKER_CONFIG or ~/.docker/config.json):
 * a per-registry credential helper, the default store, or an inline auth.
 */
export async function resolveCredentials(registry: string, env: NodeJS.ProcessEnv, azureCredential?: TokenCredential): Promise<Credentials | undefined> {
  if (env.MLOPS_REGISTRY_USERNAME || env.MLOPS_REGISTRY_PASSWORD) {
    return { username: env.MLOPS_REGISTRY_USERNAME ?? '', password: env.MLOPS_REGISTRY_PASSWORD ?? '', source: 'MLOPS_REGISTRY_USERNAME/PASSWORD' };
  }
  const configured = await fromDockerConfig(registry, env);
  if (configured) return configured;
  if (ECR_REGISTRY.test(registry)) return fromEcr(registry, env);
  if (ACR_REGISTRY.test(registry)) return fromAcr(registry, `https://${registry}`, azureCredential);
  return undefined;
}

/** Azure Container Registry, in the public, China and US Government clouds. */
const ACR_REGISTRY = /^[a-z0-9]{5,50}\.azurecr\.(io|cn|us)$/;
/** The ARM audience each ACR cloud takes tokens for. */
const ACR_ARM = { io: 'https://management.azure.com', cn: 'https://management.chinacloudapi.cn', us: 'https://management.usgovcloudapi.net' } as const;
/** The user name ACR gives a refresh token from an exchange. */
export const ACR_TOKEN_USER = '00000000-0000-0000-0000-000000000000';

/**
 * ACR's token exchange, as `az acr login --expose-token` does it: an Entra ID access token (from
 * @azure/identity's default chain: environment, workload or managed identity, Azure CLI) becomes an
 * ACR refresh token at /oauth2/exchange, which the registry then takes as a password; no docker login.
 */
export async function fromAcr(registry: string, baseUrl: string, credential?: TokenCredential): Promise<Credentials> {
  const cloud = (ACR_REGISTRY.exec(registry)?.[1] ?? 'io') as keyof typeof ACR_ARM;
  let aad: string;
  try {
    const chain = credential ?? new (await import('@azure/identity')).DefaultAzureCredential();
    aad = (await chain.getToken(`${ACR_ARM[cloud]}/.default`))?.token ?? '';
  } catch (error) {
    throw environmentError(
      `${registry} is Azure Container Registry, and no Entra ID token could be had for it: ${(error as Error).message.split('\n')[0]}`,
      'sign in with `az login` (or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET), or set MLOPS_REGISTRY_USERNAME/PASSWORD to an ACR token',
    );
  }
  const res = await fetch(`${baseUrl}/oauth2/exchange`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'access_token', service: registry, access_token: aad }).toString(),
    signal: AbortSignal.timeout(30_000),
  }).catch((error: Error) => {
    throw environmentError(`${registry}: the ACR token exchange could not be reached: ${error.message}`, 'check the network and the registry name');
  });
  const text = await res.text();
  const refresh = res.ok ? (JSON.parse(text) as { refresh_token?: string }).refresh_token : undefined;
  if (!refresh) {
    throw environmentError(
      `${registry}: the ACR token exchange answered HTTP ${res.status}`,
      'check that the signed-in identity has AcrPush (to push) or AcrPull on the registry',
      text.slice(0, 300),
    );
  }
  return { username: ACR_TOKEN_USER, password: refresh, source: 'ACR token exchange (Entra ID)' };
}

/** Amazon ECR: <account>.dkr.ecr.<region>.amazonaws.com[.cn]. */
const ECR_REGISTRY = /^\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/;

/** ECR's 12-hour token from the AWS CLI, with the user's own credentials and profile. */
async function fromEcr(registry: string, env: NodeJS.ProcessEnv): Promise<Credentials> {
  const region = ECR_REGISTRY.exec(registry)![1];
  const result = await execa('aws', ['ecr', 'get-login-password', '--region', region], { env, reject: false, timeout: 60_000 }).catch(
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT')
        throw environmentError(
          `${registry} is Amazon ECR, and its login needs the aws CLI, which is not installed`,
          'install the AWS CLI, or set MLOPS_REGISTRY_USERNAME=AWS and MLOPS_REGISTRY_PASSWORD=$(aws ecr get-login-password)',
        );
      throw error;
    },
  );
  if (result.exitCode !== 0 || !String(result.stdout).trim()) {
    throw environmentError(
      `aws ecr get-login-password --region ${region} failed (exit ${result.exitCode})`,
      'check the AWS credentials (aws sts get-caller-identity) and that they may call ecr:GetAuthorizationToken',
      String(result.stderr).trim().split('\n').slice(-3).join('\n'),
    );
  }
  return { username: 'AWS', password: String(result.stdout).trim(), source: 'aws ecr get-login-password' };
}

async function fromDockerConfig(registry: string, env: NodeJS.ProcessEnv): Promise<Credentials | undefined> {
  const file = path.join(env.DOCKER_CONFIG ?? path.join(env.HOME ?? homedir(), '.docker'), 'config.json');
  let config: DockerConfig;
  try {
    config = JSON.parse(await readFile(file, 'utf8')) as DockerConfig;
  } catch {
    return undefined;
  }
  const keys = configKeys(registry);
  const helper = keys.map((k) => config.credHelpers?.[k]).find(Boolean);
  if (helper) return fromHelper(helper, registry, env);
  const entry = keys.map((k) => config.auths?.[k]).find(Boolean);
  if (entry?.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), source: file };
  }
  if (entry?.username) return { username: entry.username, password: entry.password ?? '', source: file };
  if (config.credsStore) return fromHelper(config.credsStore, registry, env);
  return undefined;
}
