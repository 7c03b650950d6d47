import { accessOf, smokeSecurity } from './server-secrets.js';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import type { KServeTarget } from '../config/defaults.js';
import { environmentError } from '../errors.js';
import { forwardToPods, freePort, kubectlBase, leaseLock, listPods, podLogs, podNames, type PodList } from './kubectl.js';
import { renderInferenceService } from './kserve-manifest.js';
import { resourceName } from './kubernetes.js';
import { rollout, type Check } from './rollout.js';
import { servingOnly, type DeployContext, type DeployOutcome, type FailureReason, type Release, type TargetAdapter, type TargetStatus } from './types.js';

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
}

interface InferenceServiceState {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    creationTimestamp?: string;
  };
  spec?: { predictor?: { containers?: { image?: string; env?: { name: string; value?: string }[] }[]; canaryTrafficPercent?: number } };
  status?: {
    url?: string;
    observedGeneration?: number;
    conditions?: Condition[];
    components?: { predictor?: { traffic?: { revisionName?: string; percent?: number; latestRevision?: boolean; tag?: string }[] } };
  };
}

const POLL_MS = 2000;
/** Knative gives up on a revision with these reasons; waiting longer will not help. */
const TERMINAL = /RevisionFailed|ProgressDeadlineExceeded|ContainerMissing|ExitCode|CrashLoopBackOff|ImagePullBackOff|ErrImagePull/;

const selectorOf = (name: string) => `serving.kserve.io/inferenceservice=${name}`;

/**
 * kubectl through the exec seam: the InferenceService is applied once per canary step
 * (canaryTrafficPercent, then without it), each step waited for and smoke-tested on a pod of the new
 * image; on failure the spec that served before is applied again.
 */
export const kserveAdapter: TargetAdapter<KServeTarget> = {
  type: 'kserve',
  needsRegistry: true,
  output: 'the InferenceService YAML',

  // A Lease, as for kubernetes targets: long enough for every canary step and the restore.
  lock: (target, ctx, holder) =>
    leaseLock(ctx, kubectlBase(target), resourceName(target, ctx), target.namespace, holder, target.readyTimeoutSeconds * (target.canary.length + 1) + 300),
  /**
   * The InferenceService names an image (mlops.image) that no completed deploy recorded: a deploy
   * died between an apply and its checks, maybe mid-canary. The serving release is applied again.
   */
  async recover(target, ctx, current) {
    const name = resourceName(target, ctx);
    const base = kubectlBase(target);
    const state = await getInferenceService(ctx, base, name);
    const image = state?.metadata?.annotations?.['mlops.image'];
    if (!state || !current || !image || image === current.image) return null;
    const applied = await ctx.exec.run('kubectl', [...base, 'apply', '-f', '-', '-o', 'json'], {
      input: stringify(renderInferenceService(name, target, current, ctx.config)),
    });
    const generation = (JSON.parse(applied.stdout || '{}') as InferenceServiceState).metadata?.generation ?? 0;
    const failure = await untilReady(ctx, base, name, generation, target.readyTimeoutSeconds);
    const version = state.metadata?.annotations?.['mlops.version'] ?? 'unknown';
    return {
      candidate: { version, image },
      outcome: 'restored',
      serving: failure ? null : current,
      message: `an interrupted deploy had applied ${version} (${image}) without finishing its checks; ${current.version} was applied again${failure ? `, but ${failure.message}` : ' and is ready'}`,
    };
  },

  async deploy(target, release, previous, ctx): Promise<DeployOutcome> {
    const name = resourceName(target, ctx);
    if (ctx.outputDir) {
      await mkdir(ctx.outputDir, { recursive: true });
      const file = path.join(ctx.outputDir, `${name}-inferenceservice.yaml`);
      await writeFile(file, stringify(renderInferenceService(name, target, release, ctx.config)));
      return { status: 'written', release, files: [file] };
    }
    const { exec } = ctx;
    const base = kubectlBase(target);
    // What the smoke test presents, checked before anything is applied.
    const smoke = smokeSecurity(ctx, target);
    const before = await getInferenceService(ctx, base, name);
    let generation = 0;
    const apply = async (percent: number) => {
      const manifest = renderInferenceService(name, target, release, ctx.config, percent);
      const applied = await exec.run('kubectl', [...base, 'apply', '-f', '-', '-o', 'json'], { input: stringify(manifest) });
      generation = (JSON.parse(applied.stdout || '{}') as InferenceServiceState).metadata?.generation ?? 0;
    };
    const ready = () => untilReady(ctx, base, name, generation, target.readyTimeoutSeconds);
    return rollout(ctx, release, previous, target, {
      serving: before !== null,
      // KServe has no revision without traffic: canaryTrafficPercent gives the new one its first share at once.
      startsWithTraffic: true,
      // Each step applies a spec that must become ready, the last one too.
      watchesFullTraffic: true,
      describe: () => ({ candidate: release.image }),
      create: async (share) => void (await apply(share)),
      ready,
      smoke: () => smokeNewPods(ctx, base, name, release, smoke),
      shift: async (percent) => (await apply(percent), ready()),
      promote: async () => (await getInferenceService(ctx, base, name))?.status?.url ?? null,
      async fallBack(failure) {
        const logs = (
          await exec.run('kubectl', [...base, 'logs', '-l', selectorOf(name), '-c', 'kserve-container', '--tail=20', '--prefix'], { allowFailure: true })
        ).stdout;
        if (!before || !previous) return { restored: null, logs };
        const restored = await exec.run('kubectl', [...base, 'apply', '-f', '-', '-o', 'json'], { input: stringify(restorable(before)) });
        const back = await untilReady(
          ctx,
          base,
          name,
          (JSON.parse(restored.stdout || '{}') as InferenceServiceState).metadata?.generation ?? 0,
          target.readyTimeoutSeconds,
        );
        if (back) return { restored: null, logs, message: `${failure.message}; and the previous spec did not become ready again either: ${back.message}` };
        return { restored: previous, logs };
      },
    });
  },

  async replicas(target, ctx) {
    const name = resourceName(target, ctx);
    const base = kubectlBase(target);
    const pods = podNames(await listPods(ctx, base, selectorOf(name), true));
    if (pods.length === 0)
      throw environmentError(
        `target '${ctx.targetName}': no running predictor pods of InferenceService ${name} in namespace ${target.namespace}`,
        `deploy first, or wait for it to scale up from zero`,
      );
    return forwardToPods(ctx, base, pods, ctx.config.image.port, Boolean(target.tls));
  },

  async inferenceLogs(target, ctx, since) {
    const name = resourceName(target, ctx);
    const base = kubectlBase(target);
    const pods = podNames(await listPods(ctx, base, selectorOf(name)));
    if (pods.length === 0)
      throw environmentError(
        `target '${ctx.targetName}': no predictor pods of InferenceService ${name} in namespace ${target.namespace}`,
        'deploy first; a service scaled to zero keeps no logs in its pods (use a file or HTTP sink)',
      );
    return podLogs(ctx, base, pods, 'kserve-container', since);
  },

  // The platform keeps no record of earlier versions here: what serves now.
  async recordedReleases(target, ctx) {
    return servingOnly(await this.status(target, ctx));
  },

  async status(target, ctx): Promise<TargetStatus> {
    const name = resourceName(target, ctx);
    const state = await getInferenceService(ctx, kubectlBase(target), name);
    if (!state)
      return {
        target: ctx.targetName,
        type: 'kserve',
        deployed: false,
        version: null,
        image: null,
        health: 'not deployed',
        url: null,
        startedAt: null,
        detail: {},
      };
    const ready = state.status?.conditions?.find((c) => c.type === 'Ready');
    return {
      target: ctx.targetName,
      type: 'kserve',
      deployed: true,
      version: state.metadata?.annotations?.['mlops.version'] ?? state.metadata?.labels?.['app.kubernetes.io/version'] ?? null,
      image: state.spec?.predictor?.containers?.[0]?.image ?? null,
      health: ready?.status === 'True' ? 'ready' : `not ready${ready?.reason ? ` (${ready.reason})` : ''}`,
      url: state.status?.url ?? null,
      startedAt: state.metadata?.creationTimestamp ?? null,
      detail: {
        inferenceService: name,
        namespace: target.namespace,
        canaryTrafficPercent: state.spec?.predictor?.canaryTrafficPercent ?? null,
        traffic: (state.status?.components?.predictor?.traffic ?? []).map((t) => `${t.revisionName}${t.tag ? ` (${t.tag})` : ''}: ${t.percent ?? 0}%`),
        ...accessOf((state.spec?.predictor?.containers?.[0]?.env ?? []).map((e) => `${e.name}=${e.value ?? ''}`)),
      },
    };
  },
};

async function getInferenceService(ctx: DeployContext, base: string[], name: string): Promise<InferenceServiceState | null> {
  const result = await ctx.exec.run('kubectl', [...base, 'get', 'inferenceservice', name, '-o', 'json'], { allowFailure: true });
  if (result.exitCode === 0) return result.stdout ? (JSON.parse(result.stdout) as InferenceServiceState) : null;
  if (/NotFound|not found/i.test(result.stderr) && !/resource type/i.test(result.stderr)) return null;
  throw environmentError(
    `kubectl get inferenceservice ${name} failed: ${result.stderr.trim().split('\n').at(-1) ?? ''}`,
    /resource type/i.test(result.stderr)
      ? 'KServe is not installed in this cluster (no InferenceService CRD): install it, or deploy with a kubernetes target'
      : 'check the kubectl context and namespace',
  );
}

/** Until KServe has seen this generation and says Ready, a revision fails for good, or time runs out. */
async function untilReady(
  ctx: DeployContext,
  base: string[],
  name: string,
  generation: number,
  timeoutSeconds: number,
): Promise<{ reason: FailureReason; message: string } | undefined> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  return ctx.exec.poll<Check>(async () => {
    const state = await getInferenceService(ctx, base, name);
    const conditions = state?.status?.conditions ?? [];
    const seen = (state?.status?.observedGeneration ?? 0) >= generation;
    if (seen && conditions.some((c) => c.type === 'Ready' && c.status === 'True')) return { verdict: undefined };
    const failed = conditions.find((c) => c.status === 'False' && TERMINAL.test(`${c.reason ?? ''} ${c.message ?? ''}`));
    if (seen && failed) {
      const reason: FailureReason = /ExitCode|CrashLoopBackOff/.test(`${failed.reason} ${failed.message}`) ? 'crash-loop' : 'rollout-failed';
      return { verdict: { reason, message: `InferenceService ${name}: ${failed.type} ${failed.reason ?? ''}: ${failed.message ?? ''}`.trim() } };
    }
    if (Date.now() <= deadline) return null;
    const waiting = conditions.filter((c) => c.status !== 'True').map((c) => `${c.type}${c.reason ? ` (${c.reason})` : ''}`);
    return {
      verdict: {
        reason: 'health-timeout',
        message: `InferenceService ${name} was not ready after ${timeoutSeconds} s${waiting.length ? `: ${waiting.join(', ')}` : ''}`,
      },
    };
  }, POLL_MS);
}

/** One inference on a ready pod of the new image, through a port-forward (the canary share would make the route a lottery). */
async function smokeNewPods(
  ctx: DeployContext,
  base: string[],
  name: string,
  release: Release,
  smoke: ReturnType<typeof smokeSecurity>,
): Promise<{ reason: FailureReason; message: string } | undefined> {
  const pods: PodList = await listPods(ctx, base, selectorOf(name), true);
  const pod = (pods.items ?? []).find((p) => p.spec?.containers?.some((c) => c.image === release.image) && p.status?.containerStatuses?.every((s) => s.ready));
  if (!pod?.metadata?.name)
    return {
      reason: 'health-timeout',
      message: `InferenceService ${name} is ready, but no ready pod runs ${release.image} (scaled to zero? set minReplicas to 1 or more)`,
    };
  const port = await freePort();
  // The smoke test retries while the port-forward starts listening.
  const forward = await ctx.exec.background('kubectl', [...base, 'port-forward', `pod/${pod.metadata.name}`, `${port}:${ctx.config.image.port}`]);
  try {
    await ctx.smoke(`${smoke.scheme}://127.0.0.1:${port}`, release, {}, smoke.security);
    return undefined;
  } catch (error) {
    return { reason: 'smoke-failure', message: `the smoke test on pod ${pod.metadata.name} failed: ${(error as Error).message}` };
  } finally {
    forward.stop();
  }
}

/** The InferenceService as it was, without what the API server fills in, ready to apply again. */
function restorable(state: InferenceServiceState): object {
  const { annotations = {}, labels, name, namespace } = state.metadata ?? {};
  const kept = Object.fromEntries(Object.entries(annotations).filter(([k]) => k !== 'kubectl.kubernetes.io/last-applied-configuration'));
  return { apiVersion: state.apiVersion, kind: state.kind, metadata: { name, namespace, labels, annotations: kept }, spec: state.spec };
}
