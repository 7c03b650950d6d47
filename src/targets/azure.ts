/**
 * What the Azure targets share: the credential (@azure/identity's default chain: environment,
 * workload identity, managed identity, Azure CLI, ...), the SDK clients' options, a pipeline policy
 * that records every write and answers a dry run without sending, and ARM errors as mlops errors.
 */
import type { TokenCredential } from '@azure/core-auth';
import { createHttpHeaders, type PipelinePolicy, type PipelineResponse } from '@azure/core-rest-pipeline';
import { environmentError, isMlopsError } from '../errors.js';
import type { AzureSeam, DeployContext } from './types.js';

export const defaultAzureSeam: AzureSeam = {
  credential: () => new LazyDefaultCredential(),
};

/** DefaultAzureCredential, loaded on first use: @azure/identity and MSAL cost 150 ms to import, and most runs never touch Azure. */
class LazyDefaultCredential implements TokenCredential {
  private inner: Promise<TokenCredential> | undefined;
  async getToken(scopes: string | string[], options?: Parameters<TokenCredential['getToken']>[1]) {
    this.inner ??= import('@azure/identity').then(({ DefaultAzureCredential }) => new DefaultAzureCredential());
    return (await this.inner).getToken(scopes, options);
  }
}

/**
 * Records each write (PUT, PATCH, DELETE, POST) as a plan step with its body, as the exec seam does
 * for CLIs. In a dry run nothing is sent: a read finds nothing (so the plan shows what a first deploy
 * makes) and a write is answered with its own body, so the SDK's serializer still checks every body.
 */
function planPolicy(ctx: DeployContext): PipelinePolicy {
  return {
    name: 'mlopsPlan',
    async sendRequest(request, next) {
      const url = new URL(request.url);
      const line = `${request.method} ${url.origin}${url.pathname}?${url.searchParams.toString()}`;
      const body = typeof request.body === 'string' ? request.body : undefined;
      if (request.method !== 'GET') ctx.exec.record(line, body && withoutSecretValues(body));
      if (!ctx.dryRun) return next(request);
      const answer = (status: number, text?: string): PipelineResponse => ({
        request,
        status,
        headers: createHttpHeaders({ 'content-type': 'application/json' }),
        bodyAsText: text,
      });
      if (request.method === 'GET') return answer(404, JSON.stringify({ error: { code: 'ResourceNotFound', message: 'dry run: nothing is read' } }));
      if (request.method === 'DELETE') return answer(200);
      const echoed = body ? (JSON.parse(body) as Record<string, unknown>) : {};
      if (echoed.properties && typeof echoed.properties === 'object') (echoed.properties as Record<string, unknown>).provisioningState = 'Succeeded';
      return answer(200, JSON.stringify(echoed));
    },
  };
}

/** A body as the plan shows it: every secret's value (Container Apps' `secrets[].value`) replaced, so no plan or log carries one. */
function withoutSecretValues(body: string): string {
  if (!body.includes('"secrets"')) return body;
  return JSON.stringify(JSON.parse(body) as unknown, (key, value: unknown) =>
    key === 'secrets' && Array.isArray(value)
      ? (value as unknown[]).map((secret) => (secret && typeof secret === 'object' && 'value' in secret ? { ...secret, value: '<secret>' } : secret))
      : value,
  );
}

/** The options every Azure SDK client here takes: the ARM endpoint (sovereign clouds, tests), TLS trust, the plan policy. */
export function armClientOptions(ctx: DeployContext, armEndpoint: string) {
  const endpoint = armEndpoint.replace(/\/+$/, '');
  return {
    $host: endpoint,
    endpoint,
    credentialScopes: `${endpoint}/.default`,
    ...(ctx.azure.ca ? { tlsOptions: { ca: ctx.azure.ca } } : {}),
    // perRetry: after the SDK's deserializer (which must see a dry run's answers) and before the bearer token (which a dry run never asks for).
    additionalPolicies: [{ policy: planPolicy(ctx), position: 'perRetry' as const }],
  };
}

/** A credential that is never asked in a dry run; asked, it says so. */
export function armCredential(ctx: DeployContext): TokenCredential {
  return ctx.dryRun ? { getToken: async () => ({ token: 'dry-run', expiresOnTimestamp: Date.now() + 3_600_000 }) } : ctx.azure.credential();
}

/** A get that may find nothing: null on 404, anything else through `azureError`. */
export async function orNull<T>(call: Promise<T>, what: string): Promise<T | null> {
  try {
    return await call;
  } catch (error) {
    // Duck-typed: the SDKs load the pipeline's CommonJS build, whose RestError is another class than the ESM one.
    if ((error as { name?: string }).name === 'RestError' && (error as { statusCode?: number }).statusCode === 404) return null;
    throw azureError(error, what);
  }
}

/** The one-line message ARM or the credential chain gave, as an environment error (exit 3) with what to check. */
export function azureError(error: unknown, what: string): Error {
  if (isMlopsError(error)) return error;
  const e = error as Error & { statusCode?: number; code?: string };
  const said = (e.message ?? String(error)).split('\n')[0];
  if (e.name === 'CredentialUnavailableError' || e.name === 'AuthenticationRequiredError' || e.name === 'AggregateAuthenticationError') {
    return environmentError(
      `no Azure credential for ${what}: ${said}`,
      'sign in with `az login`, or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET (or a federated token) for a service principal',
    );
  }
  if (e.statusCode === 401 || e.statusCode === 403) {
    return environmentError(
      `Azure refused ${what} (HTTP ${e.statusCode}): ${said}`,
      'check that the signed-in identity has a role on the resource group (Contributor, or AzureML Data Scientist for a workspace)',
    );
  }
  return environmentError(
    `${what} failed${e.statusCode ? ` (HTTP ${e.statusCode})` : ''}: ${said}`,
    'check the subscription, resource group and names in the target; `az account show` says which subscription is signed in',
  );
}

/** What serves, when it is on one deployment (or revision) at most: a split is a rollout under way, which a deploy does not cross. */
export function servingOne(serving: [string, number][], what: string, unit: 'deployment' | 'revision'): [string, number][] {
  if (serving.length > 1)
    throw environmentError(
      `${what} splits its traffic over ${serving.map(([name]) => name).join(', ')}: another rollout is under way`,
      `let it finish, or put all traffic on one ${unit}, then deploy again`,
    );
  return serving;
}

/** "PT5S": the ISO 8601 durations Azure's APIs take. */
export const isoSeconds = (seconds: number) => `PT${seconds}S`;
