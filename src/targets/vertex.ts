import { notFoundOrThrow } from './exec.js';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { VertexTarget } from '../config/defaults.js';
import { inputError } from '../errors.js';
import { defaultModelName } from '../model/inspect.js';
import { encodeInstances } from '../protocol/instances.js';
import { revisionTag } from './cloudrun.js';
import { cloudLoggingRecords, cloudLoggingTail } from './gcloud.js';
import { checkPredictions, smokeThroughCli, type SmokeFailure, rawSmokeBody } from './smoke.js';
import { fileLock } from './lock.js';
import { rollout } from './rollout.js';
import { servingOnly, type DeployContext, type DeployOutcome, type ModelSignature, type Release, type TargetAdapter, type TargetStatus } from './types.js';

interface EndpointDescription {
  displayName?: string;
  deployedModels?: { id?: string; model?: string; displayName?: string; createTime?: string }[];
  trafficSplit?: Record<string, number>;
  labels?: Record<string, string>;
}

/** How many predictions a smoke test may send before one comes from the new model (it gets only its share). */
const SMOKE_ATTEMPTS = 10;

export function endpointDisplayName(target: VertexTarget, ctx: Pick<DeployContext, 'config' | 'projectDir'>): string {
  return target.endpoint || ctx.config.model.name || defaultModelName(path.resolve(ctx.projectDir, ctx.config.model.path));
}

/** A Vertex resource id: a lowercase letter first, then [a-z0-9-], at most 63. */
const resourceId = (name: string) => {
  const slug = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+/, '');
  return (/^[a-z]/.test(slug) ? slug : `m-${slug}`).slice(0, 63).replace(/-+$/, '');
};

/** The model's id for a release: its endpoint, version and image, so the same release is uploaded once. */
export const modelIdOf = (display: string, release: Release) =>
  resourceId(`${display}-${revisionTag(release.version)}-${createHash('sha256').update(release.image).digest('hex').slice(0, 8)}`);

/** Deployed-model ids are 1 to 10 digits: a hash of the model id, so a redeploy of one model names the same. */
const deployedModelId = (modelId: string) =>
  String(1_000_000_000 + (parseInt(createHash('sha256').update(modelId).digest('hex').slice(0, 8), 16) % 999_999_999));

/** The old traffic scaled down to make room for `percent` on the new model (named `newId`). */
export function trafficSplit(newId: string, percent: number, old: Record<string, number>): string {
  const entries = Object.entries(old).filter(([id, p]) => id !== newId && p > 0);
  const total = entries.reduce((n, [, p]) => n + p, 0);
  const rest = 100 - percent;
  const scaled = entries.map(([id, p]) => [id, Math.floor((p * rest) / (total || 1))] as const);
  const remainder = rest - scaled.reduce((n, [, p]) => n + p, 0);
  const split = [[newId, percent] as const, ...scaled.map(([id, p], i) => [id, i === 0 ? p + remainder : p] as const).filter(([, p]) => p > 0)];
  return split.map(([id, p]) => `${id}=${p}`).join(',');
}

/**
 * gcloud through the exec seam. The model is uploaded with our image and its routes (Vertex hands
 * them to the server as AIP_HTTP_PORT, AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE), deployed beside
 * the serving one with the first canary share, smoke-tested through `endpoints predict`, then given
 * the rest of the traffic step by step; on failure traffic goes back and the new model is undeployed.
 */
export const vertexAdapter: TargetAdapter<VertexTarget> = {
  type: 'vertex',
  needsRegistry: true,
  output: null,

  // The platform has no lock to offer mlops: a lock file in the project (best effort, docs/deploy.md).
  lock: (_target, ctx, holder) => fileLock(ctx.projectDir, ctx.targetName, holder),
  /**
   * Traffic on deployed models other than the serving release's, with no deploy running: a deploy
   * died mid-canary. All traffic goes back to the serving release's deployed model (its id is
   * derived from the release, so it is known without a record), and the others are undeployed.
   */
  async recover(target, ctx, current) {
    if (!current) return null;
    const base = ['--project', target.project, '--region', target.region];
    const display = endpointDisplayName(target, ctx);
    const endpoint = resourceId(display);
    const described = await ctx.exec.run('gcloud', ['ai', 'endpoints', 'describe', endpoint, ...base, '--format=json'], { allowFailure: true });
    if (described.exitCode !== 0 || !described.stdout) return null;
    const state = JSON.parse(described.stdout) as EndpointDescription;
    const serving = deployedModelId(modelIdOf(display, current));
    const others = (state.deployedModels ?? []).filter((m) => m.id && m.id !== serving);
    if (others.length === 0 || !(state.deployedModels ?? []).some((m) => m.id === serving)) return null;
    await ctx.exec.run('gcloud', ['ai', 'endpoints', 'update', endpoint, ...base, `--traffic-split=${serving}=100`]);
    for (const other of others)
      await ctx.exec.run('gcloud', ['ai', 'endpoints', 'undeploy-model', endpoint, ...base, `--deployed-model-id=${other.id}`], { allowFailure: true });
    const split = Object.entries(state.trafficSplit ?? {})
      .map(([id, p]) => `${id}: ${p}%`)
      .join(', ');
    return {
      candidate: { version: others[0].displayName ?? 'unknown', image: others[0].model ?? '' },
      outcome: 'restored',
      serving: current,
      message: `an interrupted deploy left deployed models beside ${current.version}'s (traffic ${split}); all traffic went back to ${current.version} and the others were undeployed`,
    };
  },

  async deploy(target, release, previous, ctx): Promise<DeployOutcome> {
    const { exec } = ctx;
    const base = ['--project', target.project, '--region', target.region];
    const display = endpointDisplayName(target, ctx);
    const endpoint = resourceId(display);
    const describe = async () => {
      const result = await exec.run('gcloud', ['ai', 'endpoints', 'describe', endpoint, ...base, '--format=json'], { allowFailure: true });
      return result.exitCode === 0 && result.stdout ? (JSON.parse(result.stdout) as EndpointDescription) : null;
    };
    const before = await describe();
    if (!before) {
      await exec.run('gcloud', ['ai', 'endpoints', 'create', ...base, `--display-name=${display}`, `--endpoint-id=${endpoint}`, '--labels=managed-by=mlops']);
    }
    const serving = Object.fromEntries(Object.entries(before?.trafficSplit ?? {}).filter(([, p]) => p > 0));

    const modelId = modelIdOf(display, release);
    const deployedId = deployedModelId(modelId);
    const alreadyDeployed = (before?.deployedModels ?? []).some((m) => m.id === deployedId);
    const someServe = Object.keys(serving).length > 0;
    let deployed = alreadyDeployed;
    const setSplit = (split: string) => exec.run('gcloud', ['ai', 'endpoints', 'update', endpoint, ...base, `--traffic-split=${split}`]);
    return rollout(ctx, release, previous, target, {
      serving: someServe,
      // deploy-model takes the traffic split it starts with.
      startsWithTraffic: true,
      describe: () => ({ candidate: `deployed model ${deployedId}` }),
      async create(share) {
        await uploadModel(ctx, target, release, modelId);
        if (alreadyDeployed) return void (await setSplit(trafficSplit(deployedId, share, serving)));
        // "0" names the model being deployed.
        const result = await exec.run('gcloud', deployModelArgs(target, endpoint, modelId, deployedId, trafficSplit('0', share, serving)), {
          allowFailure: true,
          timeoutMs: target.readyTimeoutSeconds * 1000,
        });
        deployed = result.exitCode === 0;
        if (!deployed) return { reason: 'health-timeout', message: `deploy-model did not finish: ${result.stderr.trim().split('\n').at(-1) ?? ''}` };
        return undefined;
      },
      smoke: () => predictSmoke(ctx, base, endpoint, deployedId, release),
      shift: async (percent) => void (await setSplit(trafficSplit(deployedId, percent, serving))),
      async promote() {
        // The old models take no traffic now; undeploying them stops their billing.
        for (const old of before?.deployedModels ?? []) {
          if (old.id && old.id !== deployedId)
            await exec.run('gcloud', ['ai', 'endpoints', 'undeploy-model', endpoint, ...base, `--deployed-model-id=${old.id}`]);
        }
        return `https://${target.region}-aiplatform.googleapis.com/v1/projects/${target.project}/locations/${target.region}/endpoints/${endpoint}:predict`;
      },
      async fallBack() {
        const logs = await cloudLoggingTail(ctx, target.project, [
          'resource.type="aiplatform.googleapis.com/Endpoint"',
          `resource.labels.endpoint_id="${endpoint}"`,
        ]);
        if (someServe)
          await setSplit(
            Object.entries(serving)
              .map(([id, p]) => `${id}=${p}`)
              .join(','),
          );
        if (deployed && !alreadyDeployed) {
          await exec.run('gcloud', ['ai', 'endpoints', 'undeploy-model', endpoint, ...base, `--deployed-model-id=${deployedId}`], { allowFailure: true });
        }
        return { restored: someServe ? previous : null, logs };
      },
    });
  },

  async replicas(_target, ctx) {
    throw inputError(
      `target '${ctx.targetName}' (Vertex AI): replicas cannot be reached one by one, so their live profiles cannot be summed`,
      'use --prometheus with a Prometheus that scrapes them, or --url with a local run of the same image',
    );
  },

  async inferenceLogs(target, ctx, since) {
    const endpoint = resourceId(endpointDisplayName(target, ctx));
    const resource = [
      'resource.type="aiplatform.googleapis.com/Endpoint"',
      `resource.labels.endpoint_id="${endpoint}"`,
      `resource.labels.location="${target.region}"`,
    ];
    return cloudLoggingRecords(ctx, target.project, resource, since, `Cloud Logging, endpoint ${endpoint}`);
  },

  // The platform keeps no record of earlier versions here: what serves now.
  async recordedReleases(target, ctx) {
    return servingOnly(await this.status(target, ctx));
  },

  async status(target, ctx): Promise<TargetStatus> {
    const base = ['--project', target.project, '--region', target.region];
    const endpoint = resourceId(endpointDisplayName(target, ctx));
    const result = await ctx.exec.run('gcloud', ['ai', 'endpoints', 'describe', endpoint, ...base, '--format=json'], { allowFailure: true });
    if (result.exitCode !== 0) {
      notFoundOrThrow(
        result,
        /NOT_FOUND|not found/i,
        `Vertex AI endpoint ${endpoint} (project ${target.project}, region ${target.region})`,
        "check gcloud's credentials and project: gcloud auth list; gcloud config list",
      );
      return {
        target: ctx.targetName,
        type: 'vertex',
        deployed: false,
        version: null,
        image: null,
        health: 'not deployed',
        url: null,
        startedAt: null,
        detail: { endpoint },
      };
    }
    const description = JSON.parse(result.stdout) as EndpointDescription;
    const split = description.trafficSplit ?? {};
    const main = (description.deployedModels ?? []).sort((a, b) => (split[b.id ?? ''] ?? 0) - (split[a.id ?? ''] ?? 0))[0];
    const model = main?.model
      ? await ctx.exec.run('gcloud', ['ai', 'models', 'describe', main.model.split('/').at(-1)!, ...base, '--format=json'], { allowFailure: true })
      : undefined;
    const modelDescription =
      model?.exitCode === 0 ? (JSON.parse(model.stdout) as { labels?: Record<string, string>; containerSpec?: { imageUri?: string } }) : undefined;
    return {
      target: ctx.targetName,
      type: 'vertex',
      deployed: Boolean(main),
      version: modelDescription?.labels?.['mlops-version'] ?? null,
      image: modelDescription?.containerSpec?.imageUri ?? null,
      health: main ? 'ready' : 'no model deployed',
      url: `https://${target.region}-aiplatform.googleapis.com/v1/projects/${target.project}/locations/${target.region}/endpoints/${endpoint}:predict`,
      startedAt: main?.createTime ?? null,
      detail: { endpoint, traffic: (description.deployedModels ?? []).map((m) => `${m.displayName ?? m.id} (${m.id}): ${split[m.id ?? ''] ?? 0}%`) },
    };
  },
};

/** The release's image as a Vertex AI model, uploaded once: a model of the same id is the same image. */
/** Uploads the release as a Vertex AI model unless it is there: a deploy and a batch job share it. */
export async function uploadModel(ctx: DeployContext, target: VertexTarget, release: Release, modelId: string): Promise<void> {
  const base = ['--project', target.project, '--region', target.region];
  const known = await ctx.exec.run('gcloud', ['ai', 'models', 'describe', modelId, ...base, '--format=json'], { allowFailure: true });
  // A dry run's describe answers nothing, so its plan shows the upload.
  if (known.exitCode === 0 && known.stdout) return;
  await ctx.exec.run(
    'gcloud',
    [
      'ai',
      'models',
      'upload',
      ...base,
      `--model-id=${modelId}`,
      `--display-name=${modelId}`,
      `--container-image-uri=${release.image}`,
      `--container-ports=${ctx.config.image.port}`,
      '--container-health-route=/v2/health/ready',
      `--container-predict-route=/v1/models/${release.modelName}:predict`,
      `--labels=mlops-version=${revisionTag(release.version).slice(1)},managed-by=mlops`,
    ],
    { timeoutMs: 1_800_000 },
  );
}

function deployModelArgs(target: VertexTarget, endpoint: string, modelId: string, deployedId: string, split: string): string[] {
  return [
    'ai',
    'endpoints',
    'deploy-model',
    endpoint,
    '--project',
    target.project,
    '--region',
    target.region,
    `--model=${modelId}`,
    `--deployed-model-id=${deployedId}`,
    `--display-name=${modelId}`,
    `--machine-type=${target.machineType}`,
    `--min-replica-count=${target.minReplicas}`,
    `--max-replica-count=${target.maxReplicas}`,
    ...(target.serviceAccount ? [`--service-account=${target.serviceAccount}`] : []),
    `--traffic-split=${split}`,
  ];
}

/**
 * Predictions through the endpoint, each checked, until one comes from the new deployed model; the
 * endpoint splits traffic, so with a small share the new model may not answer any of them (a warning).
 */
function predictSmoke(ctx: DeployContext, base: string[], endpoint: string, deployedId: string, release: Release): Promise<SmokeFailure | undefined> {
  const encode = async (signature: ModelSignature) =>
    release.takes ? rawSmokeBody(release.takes, 'instances') : JSON.stringify(encodeInstances(signature.inputs, await ctx.sampleInputs(signature.inputs)));
  return smokeThroughCli(ctx, release, 'gcloud ai endpoints predict', encode, async (request) => {
    for (let attempt = 0; attempt < SMOKE_ATTEMPTS; attempt++) {
      const result = await ctx.exec.run('gcloud', ['ai', 'endpoints', 'predict', endpoint, ...base, `--json-request=${request}`, '--format=json'], {
        allowFailure: true,
        timeoutMs: 120_000,
      });
      if (result.exitCode !== 0)
        return { reason: 'smoke-failure', message: `gcloud ai endpoints predict failed: ${result.stderr.trim().split('\n').at(-1) ?? ''}` };
      const answer = JSON.parse(result.stdout) as { predictions?: unknown; deployedModelId?: string };
      checkPredictions(answer, 1);
      if (answer.deployedModelId === undefined || answer.deployedModelId === deployedId) return undefined;
    }
    ctx.log(`warning: none of ${SMOKE_ATTEMPTS} smoke predictions was served by the new model (deployed model ${deployedId}); the old one answered them all`);
    return undefined;
  });
}
