import { createHash } from 'node:crypto';
import path from 'node:path';
import type { AzureMachineLearningWorkspaces, OnlineDeployment, OnlineEndpoint } from '@azure/arm-machinelearning';
import type { PipelinePolicy } from '@azure/core-rest-pipeline';
import type { AzureMLTarget } from '../config/defaults.js';
import { environmentError } from '../errors.js';
import { defaultModelName } from '../model/inspect.js';
import { armClientOptions, armCredential, azureError, isoSeconds, orNull, servingOne } from './azure.js';
import { rollout, type Failure } from './rollout.js';
import { fileLock } from './lock.js';
import { smokeScoringRoute } from './smoke.js';
import type { DeployContext, DeployOutcome, RecordedRelease, Release, TargetAdapter, TargetStatus } from './types.js';

/** The container port and routes Azure ML's inference router calls: the server's own. */
const PORT = 8080;
const VERSION_TAG = 'mlops-version';
/** The first API version with mirrorTraffic; the SDK speaks 2022-10-01, which has none (see mirrorPolicy). */
const MIRROR_API_VERSION = '2023-04-01';
const MIRROR_HEADER = 'x-mlops-mirror-traffic';
const BUSY = new Set(['Creating', 'Updating', 'Deleting', 'Provisioning', 'Scaling']);

export function endpointName(target: AzureMLTarget, ctx: Pick<DeployContext, 'config' | 'projectDir'>): string {
  const name = target.endpoint || ctx.config.model.name || defaultModelName(path.resolve(ctx.projectDir, ctx.config.model.path));
  const cleaned = name
    .replace(/[^a-zA-Z0-9-]+/g, '-')
    .replace(/^[^a-zA-Z]+|-+$/g, '')
    .slice(0, 32);
  return cleaned.length >= 3 ? cleaned : `mlops-${cleaned}`.slice(0, 32);
}

/** One deployment per release, named by its version and image ("v1-2-0-3fa9c1"): a redeploy of the same release reuses it. */
export function deploymentName(release: Release): string {
  const hash = createHash('sha256').update(release.image).digest('hex').slice(0, 6);
  return `v${release.version.replace(/[^a-zA-Z0-9]+/g, '-')}`.slice(0, 25).replace(/-+$/, '') + `-${hash}`;
}

/**
 * mirrorTraffic, which the SDK's API version lacks, added to the one endpoint PUT that asks for it
 * (through a header this removes) under the first API version that has it. Everything else goes
 * through the SDK's own serializer unchanged.
 */
const mirrorPolicy: PipelinePolicy = {
  name: 'mlopsMirrorTraffic',
  async sendRequest(request, next) {
    const mirror = request.headers.get(MIRROR_HEADER);
    if (mirror === undefined) return next(request);
    request.headers.delete(MIRROR_HEADER);
    // The long-running operation's polls carry the same options; only the PUT has the body.
    if (request.method !== 'PUT' || typeof request.body !== 'string') return next(request);
    const body = JSON.parse(String(request.body)) as { properties: Record<string, unknown> };
    body.properties.mirrorTraffic = JSON.parse(mirror);
    request.body = JSON.stringify(body);
    request.url = request.url.replace(/api-version=[^&]+/, `api-version=${MIRROR_API_VERSION}`);
    return next(request);
  },
};

async function client(target: AzureMLTarget, ctx: DeployContext): Promise<AzureMachineLearningWorkspaces> {
  const { AzureMachineLearningWorkspaces } = await import('@azure/arm-machinelearning');
  const options = armClientOptions(ctx, target.armEndpoint);
  return new AzureMachineLearningWorkspaces(armCredential(ctx), target.subscriptionId, {
    ...options,
    additionalPolicies: [{ policy: mirrorPolicy, position: 'perRetry' as const }, ...options.additionalPolicies],
  });
}

interface Names {
  rg: string;
  ws: string;
  endpoint: string;
  what: string;
}

function names(target: AzureMLTarget, ctx: DeployContext): Names {
  const endpoint = endpointName(target, ctx);
  return { rg: target.resourceGroup, ws: target.workspace, endpoint, what: `Azure ML endpoint ${endpoint} (workspace ${target.workspace})` };
}

/** The deployments taking live traffic, by name. */
const live = (endpoint: OnlineEndpoint | null) => Object.entries(endpoint?.properties.traffic ?? {}).filter(([, share]) => share > 0);

/**
 * Azure ML managed online endpoints through Microsoft's SDK: an environment version naming the
 * image and the server's routes, the endpoint (made once), then a deployment per release. The new
 * deployment is smoke-tested on its own (the azureml-model-deployment header) before any traffic,
 * mirrored if configured, then given the endpoint's traffic in steps; on a failure traffic goes back
 * to the deployment that served and the new one is deleted.
 */
export const azureMLAdapter: TargetAdapter<AzureMLTarget> = {
  type: 'azureml',
  needsRegistry: true,
  output: null,

  // The platform has no lock to offer mlops: a lock file in the project (best effort, docs/deploy.md).
  lock: (_target, ctx, holder) => fileLock(ctx.projectDir, ctx.targetName, holder),

  async recover(target, ctx, current) {
    const n = names(target, ctx);
    const ml = await client(target, ctx);
    const endpoint = await orNull(ml.onlineEndpoints.get(n.rg, n.ws, n.endpoint), n.what);
    const serving = live(endpoint);
    if (!endpoint || serving.length <= 1 || !current) return null;
    // A split left by a deploy that died: all traffic back to the deployment of the release that served.
    const back = deploymentName(current);
    if (!serving.some(([name]) => name === back)) return null;
    const candidates = serving.filter(([name]) => name !== back).map(([name]) => name);
    const candidate = await orNull(ml.onlineDeployments.get(n.rg, n.ws, n.endpoint, candidates[0]), `deployment ${candidates[0]} of ${n.what}`);
    await setTraffic(ml, n, endpoint, { [back]: 100 });
    for (const name of candidates) await deleteDeployment(ml, n, name);
    return {
      candidate: { version: candidate?.tags?.[VERSION_TAG] ?? candidates[0], image: candidate?.tags?.['mlops-image'] ?? '' },
      outcome: 'restored',
      serving: current,
      message: `endpoint ${n.endpoint} split its traffic with ${candidates.join(', ')}; all of it goes to ${back} again and they were deleted`,
    };
  },

  async deploy(target, release, previous, ctx): Promise<DeployOutcome> {
    const n = names(target, ctx);
    const ml = await client(target, ctx);
    const deployment = deploymentName(release);

    const before = await orNull(ml.onlineEndpoints.get(n.rg, n.ws, n.endpoint), n.what);
    const serving = servingDeployments(before, n);
    // The release already serving (a redeploy) is checked again in place: it is never "the old one" to move traffic from, or to delete.
    const old = serving[0]?.[0] === deployment ? undefined : serving[0]?.[0];
    const redeploy = serving[0]?.[0] === deployment;
    const environmentId = await createEnvironment(ml, n, target, release, deployment, before);

    let endpoint: OnlineEndpoint = before ?? { location: target.location, properties: { authMode: 'Key' } };
    let mirrored = false;
    let fetched = false;
    // The endpoint as it is once the new deployment stands: what setTraffic changes.
    const current = async () => {
      if (!fetched) endpoint = (await orNull(ml.onlineEndpoints.get(n.rg, n.ws, n.endpoint), n.what)) ?? endpoint;
      fetched = true;
      return endpoint;
    };
    const smoke = () => scoringSmoke(ml, n, target, deployment, release, ctx);
    return rollout(ctx, release, previous, target, {
      serving: old !== undefined,
      describe: () => ({ candidate: deployment }),
      create: () => createDeployment(ml, n, target, release, deployment, environmentId),
      smoke: async () => {
        const failure = await smoke();
        return failure ? { reason: 'smoke-failure', message: failure } : undefined;
      },
      async mirror(percent) {
        mirrored = true;
        endpoint = await setTraffic(ml, n, await current(), { [old!]: 100 }, { [deployment]: percent });
      },
      async shift(percent) {
        // The mirror ends as live traffic starts: Azure ML takes no deployment in both.
        const split = percent === 100 || !old ? { [deployment]: 100 } : { [old]: 100 - percent, [deployment]: percent };
        endpoint = await setTraffic(ml, n, await current(), split, mirrored ? {} : undefined);
        mirrored = false;
        return undefined;
      },
      // After a bake: still Succeeded, still answering. A check that cannot be made is no pass: traffic goes back.
      async watch(percent) {
        const failure = await checkDeployment(ml, n, deployment)
          .then((problem) => problem ?? smoke())
          .catch((error: Error) => `the deployment could not be checked: ${error.message.split('\n')[0]}`);
        if (!failure) return undefined;
        return { reason: 'rollout-failed', message: percent === 0 ? `while mirrored: ${failure}` : `at ${percent}% of traffic: ${failure}` };
      },
      async promote() {
        // Blue/green ends with one colour: the others cost instance hours. A rollback makes the old one again from its environment version.
        for (const other of await listDeployments(ml, n)) {
          if (other.name && other.name !== deployment) await deleteDeployment(ml, n, other.name);
        }
        return endpoint.properties.scoringUri ?? null;
      },
      async fallBack(_failure, stage) {
        const logs = await deploymentLogs(ml, n, deployment, 200);
        if (stage === 'traffic' && old) {
          const current = await orNull(ml.onlineEndpoints.get(n.rg, n.ws, n.endpoint), n.what);
          // A mirror to the failed deployment ends too: Azure ML deletes no deployment that still takes mirrored traffic.
          if (current) await setTraffic(ml, n, current, { [old]: 100 }, target.mirror > 0 ? {} : undefined);
        }
        if (!redeploy) await deleteDeployment(ml, n, deployment);
        return { restored: old ? previous : null, logs };
      },
    });
  },

  async replicas(_target, ctx) {
    throw environmentError(
      `target '${ctx.targetName}' (Azure ML): instances cannot be reached one by one, so their live profiles cannot be summed`,
      'read the inference log with mlops monitor --labels, or use --url with a local run of the same image',
    );
  },

  /** What the serving deployments' inference servers printed, as Azure ML keeps it (the last 10,000 lines of each). */
  async inferenceLogs(target, ctx) {
    const n = names(target, ctx);
    const ml = await client(target, ctx);
    const endpoint = await orNull(ml.onlineEndpoints.get(n.rg, n.ws, n.endpoint), n.what);
    const out = [];
    for (const [deployment] of live(endpoint)) out.push({ from: `Azure ML deployment ${deployment}`, text: await deploymentLogs(ml, n, deployment, 10_000) });
    return out;
  },

  /** Every deployment the endpoint holds; only the serving one, once a deploy has finished. */
  async recordedReleases(target, ctx): Promise<RecordedRelease[]> {
    const n = names(target, ctx);
    const ml = await client(target, ctx);
    const endpoint = await orNull(ml.onlineEndpoints.get(n.rg, n.ws, n.endpoint), n.what);
    if (!endpoint) return [];
    const traffic = endpoint.properties.traffic ?? {};
    const out: RecordedRelease[] = [];
    for (const d of await listDeployments(ml, n)) {
      const version = d.tags?.[VERSION_TAG];
      if (version)
        out.push({
          version,
          image: d.tags?.['mlops-image'] ?? '',
          at: d.systemData?.createdAt?.toISOString() ?? null,
          serving: (traffic[d.name ?? ''] ?? 0) > 0,
        });
    }
    return out;
  },

  async status(target, ctx): Promise<TargetStatus> {
    const n = names(target, ctx);
    const ml = await client(target, ctx);
    const endpoint = await orNull(ml.onlineEndpoints.get(n.rg, n.ws, n.endpoint), n.what);
    const serving = live(endpoint);
    if (!endpoint || serving.length === 0)
      return {
        target: ctx.targetName,
        type: 'azureml',
        deployed: false,
        version: null,
        image: null,
        health: endpoint ? 'no traffic' : 'not deployed',
        url: endpoint?.properties.scoringUri ?? null,
        startedAt: null,
        detail: { endpoint: n.endpoint },
      };
    const [main] = [...serving].sort((a, b) => b[1] - a[1]);
    const deployment = await orNull(ml.onlineDeployments.get(n.rg, n.ws, n.endpoint, main[0]), `deployment ${main[0]} of ${n.what}`);
    const state = deployment?.properties.provisioningState;
    return {
      target: ctx.targetName,
      type: 'azureml',
      deployed: true,
      version: deployment?.tags?.[VERSION_TAG] ?? null,
      image: deployment?.tags?.['mlops-image'] ?? null,
      health: state === 'Succeeded' && endpoint.properties.provisioningState === 'Succeeded' ? 'ready' : (state ?? 'unknown'),
      url: endpoint.properties.scoringUri ?? null,
      startedAt: deployment?.systemData?.createdAt?.toISOString() ?? null,
      detail: {
        endpoint: n.endpoint,
        deployment: main[0],
        traffic: endpoint.properties.traffic,
        instances: deployment?.sku?.capacity ?? null,
        instanceType: (deployment?.properties as { instanceType?: string } | undefined)?.instanceType ?? null,
        authMode: endpoint.properties.authMode,
      },
    };
  },
};

/** What serves on the endpoint, when a deploy may change it: not Failed, not changing, traffic on one deployment at most. */
function servingDeployments(before: OnlineEndpoint | null, n: Names): [string, number][] {
  const state = before?.properties.provisioningState;
  if (state === 'Failed')
    throw environmentError(
      `${n.what} is Failed and cannot take a deployment`,
      `delete it (az ml online-endpoint delete --name ${n.endpoint} -g ${n.rg} -w ${n.ws}), then deploy again`,
    );
  if (state && BUSY.has(state)) throw environmentError(`${n.what} is ${state}: another change is under way`, 'wait for it to finish, then deploy again');
  return servingOne(live(before), n.what, 'deployment');
}

/** The release's image as an environment version (the endpoint made too on a first deploy); returns the version's id. */
async function createEnvironment(
  ml: AzureMachineLearningWorkspaces,
  n: Names,
  target: AzureMLTarget,
  release: Release,
  deployment: string,
  before: OnlineEndpoint | null,
): Promise<string> {
  const environment = n.endpoint;
  try {
    await ml.environmentVersions.createOrUpdate(n.rg, n.ws, environment, deployment, {
      properties: {
        description: `${release.modelName} ${release.version}, served by mlops`,
        image: release.image,
        osType: 'Linux',
        inferenceConfig: {
          livenessRoute: { path: '/v2/health/live', port: PORT },
          readinessRoute: { path: '/v2/health/ready', port: PORT },
          scoringRoute: { path: `/v2/models/${encodeURIComponent(release.modelName)}/infer`, port: PORT },
        },
        tags: { [VERSION_TAG]: release.version },
      },
    });
    if (!before) {
      await ml.onlineEndpoints.beginCreateOrUpdateAndWait(n.rg, n.ws, n.endpoint, {
        location: target.location,
        identity: { type: 'SystemAssigned' },
        properties: { authMode: target.authMode === 'key' ? 'Key' : 'AMLToken', description: `${release.modelName}, served by mlops` },
        tags: { 'managed-by': 'mlops' },
      });
    }
  } catch (error) {
    throw azureError(error, `creating ${n.what}`);
  }
  return `/subscriptions/${target.subscriptionId}/resourceGroups/${n.rg}/providers/Microsoft.MachineLearningServices/workspaces/${n.ws}/environments/${environment}/versions/${deployment}`;
}

/** The new deployment, provisioned and waited for: a failure when it did not provision or was not ready in time, an error when ARM refused it. */
async function createDeployment(
  ml: AzureMachineLearningWorkspaces,
  n: Names,
  target: AzureMLTarget,
  release: Release,
  deployment: string,
  environmentId: string,
): Promise<Failure | undefined> {
  const probe = {
    initialDelay: isoSeconds(target.probe.initialDelaySeconds),
    period: isoSeconds(target.probe.periodSeconds),
    timeout: isoSeconds(target.probe.timeoutSeconds),
    failureThreshold: target.probe.failureThreshold,
    successThreshold: 1,
  };
  try {
    await ml.onlineDeployments.beginCreateOrUpdateAndWait(
      n.rg,
      n.ws,
      n.endpoint,
      deployment,
      {
        location: target.location,
        sku: { name: 'Default', capacity: target.instanceCount },
        tags: { [VERSION_TAG]: release.version, 'mlops-image': release.image.slice(0, 256) },
        properties: {
          endpointComputeType: 'Managed',
          description: `${release.modelName} ${release.version}`,
          environmentId,
          instanceType: target.instanceType,
          requestSettings: {
            requestTimeout: `PT${target.requestTimeoutMs / 1000}S`,
            maxConcurrentRequestsPerInstance: target.maxConcurrentRequestsPerInstance,
          },
          livenessProbe: probe,
          readinessProbe: probe,
          appInsightsEnabled: false,
        },
      },
      { abortSignal: AbortSignal.timeout(target.readyTimeoutSeconds * 1000) },
    );
    return undefined;
  } catch (error) {
    const e = error as Error & { statusCode?: number };
    // A deployment that failed to provision is a failed rollout; a refused request is an error.
    if (e.statusCode && e.statusCode < 500) throw azureError(error, `creating deployment ${deployment} of ${n.what}`);
    if (e.name === 'AbortError' || e.name === 'TimeoutError')
      return { reason: 'health-timeout', message: `deployment ${deployment} was not ready after ${target.readyTimeoutSeconds} s` };
    return { reason: 'rollout-failed', message: `deployment ${deployment} did not provision: ${e.message.split('\n')[0]}` };
  }
}

/** The endpoint with a new traffic split (and mirror split, when given), put whole: PUT is what every API version takes the same way. */
async function setTraffic(
  ml: AzureMachineLearningWorkspaces,
  n: Names,
  endpoint: OnlineEndpoint,
  traffic: Record<string, number>,
  mirror?: Record<string, number>,
): Promise<OnlineEndpoint> {
  const body: OnlineEndpoint = {
    location: endpoint.location,
    identity: endpoint.identity
      ? { type: endpoint.identity.type, userAssignedIdentities: endpoint.identity.userAssignedIdentities }
      : { type: 'SystemAssigned' },
    tags: endpoint.tags,
    properties: { authMode: endpoint.properties.authMode, description: endpoint.properties.description, traffic },
  };
  try {
    const put = await ml.onlineEndpoints.beginCreateOrUpdateAndWait(
      n.rg,
      n.ws,
      n.endpoint,
      body,
      mirror ? { requestOptions: { customHeaders: { [MIRROR_HEADER]: JSON.stringify(mirror) } } } : undefined,
    );
    return { ...body, ...put, properties: { ...body.properties, ...put.properties } };
  } catch (error) {
    throw azureError(error, `moving the traffic of ${n.what}`);
  }
}

async function listDeployments(ml: AzureMachineLearningWorkspaces, n: Names): Promise<OnlineDeployment[]> {
  const list = async () => {
    const out: OnlineDeployment[] = [];
    for await (const d of ml.onlineDeployments.list(n.rg, n.ws, n.endpoint)) out.push(d);
    return out;
  };
  return (await orNull(list(), `the deployments of ${n.what}`)) ?? [];
}

async function deleteDeployment(ml: AzureMachineLearningWorkspaces, n: Names, deployment: string): Promise<void> {
  try {
    await ml.onlineDeployments.beginDeleteAndWait(n.rg, n.ws, n.endpoint, deployment);
  } catch (error) {
    throw azureError(error, `deleting deployment ${deployment} of ${n.what}`);
  }
}

async function deploymentLogs(ml: AzureMachineLearningWorkspaces, n: Names, deployment: string, tail: number): Promise<string> {
  const logs = await orNull(
    ml.onlineDeployments.getLogs(n.rg, n.ws, n.endpoint, deployment, { containerType: 'InferenceServer', tail }),
    `the logs of deployment ${deployment}`,
  ).catch(() => null);
  return logs?.content ?? '';
}

/** A deployment that stopped being Succeeded while it baked (a crash loop Azure ML noticed): the reason, else undefined. */
async function checkDeployment(ml: AzureMachineLearningWorkspaces, n: Names, deployment: string): Promise<string | undefined> {
  const described: OnlineDeployment | null = await orNull(
    ml.onlineDeployments.get(n.rg, n.ws, n.endpoint, deployment),
    `deployment ${deployment} of ${n.what}`,
  );
  const state = described?.properties.provisioningState;
  return state === 'Succeeded' ? undefined : `deployment ${deployment} is ${state ?? 'gone'}`;
}

/** One OIP request to the scoring URI, routed to this deployment alone, with the endpoint's key or an Azure ML token. */
async function scoringSmoke(
  ml: AzureMachineLearningWorkspaces,
  n: Names,
  target: AzureMLTarget,
  deployment: string,
  release: Release,
  ctx: DeployContext,
): Promise<string | undefined> {
  let secret: string | undefined;
  try {
    secret =
      target.authMode === 'key'
        ? (await ml.onlineEndpoints.listKeys(n.rg, n.ws, n.endpoint)).primaryKey
        : (await ml.onlineEndpoints.getToken(n.rg, n.ws, n.endpoint)).accessToken;
  } catch (error) {
    throw azureError(error, `reading the ${target.authMode === 'key' ? 'keys' : 'token'} of ${n.what}`);
  }
  const endpoint = await orNull(ml.onlineEndpoints.get(n.rg, n.ws, n.endpoint), n.what);
  const scoringUri = endpoint?.properties.scoringUri;
  if (!scoringUri) return `${n.what} has no scoring URI`;
  return smokeScoringRoute(ctx, scoringUri, release, { authorization: `Bearer ${secret ?? ''}`, 'azureml-model-deployment': deployment });
}
