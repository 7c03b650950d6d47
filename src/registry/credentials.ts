import { execa } from 'execa';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
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
export async function resolveCredentials(registry: string, env: NodeJS.ProcessEnv): Promise<Credentials | undefined> {
  if (env.MLOPS_REGISTRY_USERNAME || env.MLOPS_REGISTRY_PASSWORD) {
    return { username: env.MLOPS_REGISTRY_USERNAME ?? '', password: env.MLOPS_REGISTRY_PASSWORD ?? '', source: 'MLOPS_REGISTRY_USERNAME/PASSWORD' };
  }
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
