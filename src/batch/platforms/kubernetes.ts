/**
 * A batch job as a Kubernetes Indexed Job: one pod per shard (JOB_COMPLETION_INDEX), the version's image in
 * batch mode, the Deployment's Pod Security "restricted" settings, identity and labels.
 */
import { Job } from 'kubernetes-models/batch/v1';
import { stringify } from 'yaml';
import type { KubernetesTarget } from '../../config/defaults.js';
import { inputError } from '../../errors.js';
import { kubectlBase } from '../../targets/kubectl.js';
import { CONTAINER_SECURITY_CONTEXT, POD_SECURITY_CONTEXT, podIdentity, recommendedLabels } from '../../targets/kubernetes-manifests.js';
import { resourceName } from '../../targets/kubernetes.js';
import type { DeployContext } from '../../targets/types.js';
import type { BatchJob, BatchJobOutcome, BatchPlatform } from '../platform.js';

/** The exit code of an input error (a bad row, a missing column): retrying the pod cannot help. */
const INPUT_ERROR_EXIT = 2;
const POLL_MS = 10_000;
/** A failed pod's last lines, for a failure report, from at most this many pods. */
const LOG_TAIL = 20;
const LOGGED_PODS = 5;

interface JobCondition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
}

interface JobState {
  status?: { active?: number; succeeded?: number; failed?: number; completedIndexes?: string; failedIndexes?: string; conditions?: JobCondition[] };
}

/** The Job's view of one run: finished (Complete or Failed), with the shards it lists. */
interface JobVerdict {
  complete: boolean;
  failedIndexes: number[];
  condition: JobCondition | undefined;
}

/** "0-2,5" (status.completedIndexes, failedIndexes) as [0, 1, 2, 5]. */
export function parseIndexes(text: string | undefined): number[] {
  if (!text) return [];
  return text.split(',').flatMap((part) => {
    const [from, to] = part.split('-').map(Number);
    if (!Number.isInteger(from)) return [];
    return Array.from({ length: (Number.isInteger(to) ? to : from) - from + 1 }, (_, i) => from + i);
  });
}

/** A batch pod's resources: the target's, with each request or limit the batch section gives over it. */
function batchResources(target: KubernetesTarget) {
  const own = target.batch.resources ?? {};
  return {
    requests: { ...target.resources.requests, ...own.requests },
    limits: { ...target.resources.limits, ...own.limits },
  };
}

/**
 * The Indexed Job for a run, or with `indexes` its retry: index k of the retry scores shard indexes[k]
 * (MLOPS_BATCH_INDEXES), so only the shards that failed run again.
 */
export function renderBatchJob(target: KubernetesTarget, job: BatchJob, ctx: Pick<DeployContext, 'config' | 'projectDir'>, indexes?: number[]): Job {
  const name = indexes ? retryName(job.name) : job.name;
  const completions = indexes ? indexes.length : job.shards;
  const labels = {
    ...recommendedLabels(resourceName(target, ctx), job.release),
    'app.kubernetes.io/component': 'batch',
    'mlops.batch': job.name,
  };
  const env = { ...job.env, ...(indexes ? { MLOPS_BATCH_INDEXES: indexes.join(',') } : {}) };
  const manifest = new Job({
    metadata: { name, namespace: target.namespace, labels, annotations: { 'mlops.image': job.release.image } },
    spec: {
      completionMode: 'Indexed',
      completions,
      parallelism: Math.min(target.batch.parallelism, completions),
      // Each shard retries on its own; one shard that keeps failing does not stop the others.
      backoffLimitPerIndex: target.batch.backoffLimitPerIndex,
      activeDeadlineSeconds: target.batch.activeDeadlineSeconds,
      ttlSecondsAfterFinished: target.batch.ttlSecondsAfterFinished,
      podFailurePolicy: {
        rules: [
          // An input error fails the same way every time: the index fails at once instead of using its retries.
          { action: 'FailIndex', onExitCodes: { containerName: 'model', operator: 'In', values: [INPUT_ERROR_EXIT] } },
          // A pod evicted or preempted did nothing wrong: it runs again without counting against its index.
          { action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
        ],
      },
      template: {
        metadata: { labels },
        spec: {
          // podFailurePolicy needs Never: a failed container makes a new pod, which the policy judges.
          restartPolicy: 'Never',
          securityContext: POD_SECURITY_CONTEXT,
          ...podIdentity(target),
          containers: [
            {
              name: 'model',
              image: job.release.image,
              env: Object.entries(env).map(([envName, value]) => ({ name: envName, value })),
              resources: batchResources(target),
              securityContext: CONTAINER_SECURITY_CONTEXT,
              // The root filesystem is read-only: the reader's and writer's scratch files go to /tmp.
              volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
            },
          ],
          volumes: [{ name: 'tmp', emptyDir: {} }],
        },
      },
    },
  });
  try {
    manifest.validate();
  } catch (error) {
    throw inputError(`the rendered batch Job is not valid Kubernetes: ${(error as Error).message}`, 'check the kubernetes target settings in config');
  }
  return manifest;
}

/** The retry Job's name: the run's, marked, within a DNS label (pod hostnames add "-<index>"). */
const retryName = (name: string) => `${name.slice(0, 50)}-retry`;

const jobYaml = (manifest: Job) => stringify(manifest.toJSON());

/**
 * The condition that ended the Job (Complete or Failed, status True), if one has. FailureTarget and
 * SuccessCriteriaMet come first, while the controller ends the pods; the run waits for the end itself.
 */
const finished = (state: JobState) => state.status?.conditions?.find((c) => c.status === 'True' && (c.type === 'Complete' || c.type === 'Failed'));

/** Applies one Job and watches it until it ends, logging each change in its indexes; undefined in a dry run. */
async function runJob(target: KubernetesTarget, manifest: Job, shards: number[], ctx: DeployContext, intervalMs: number): Promise<JobVerdict | undefined> {
  const base = kubectlBase(target);
  const name = manifest.metadata!.name!;
  await ctx.exec.run('kubectl', [...base, 'apply', '-f', '-'], { input: jobYaml(manifest) });
  // Index k of this Job scores shards[k]: progress and failures are told in the run's shard numbers.
  const shardsOf = (text: string | undefined) => parseIndexes(text).map((i) => shards[i] ?? i);
  let said = '';
  return ctx.exec.poll(async () => {
    const got = await ctx.exec.run('kubectl', [...base, 'get', 'job', name, '-o', 'json']);
    const state = JSON.parse(got.stdout || '{}') as JobState;
    const completed = shardsOf(state.status?.completedIndexes);
    const failed = shardsOf(state.status?.failedIndexes);
    const line = `job ${name}: ${completed.length}/${shards.length} shards done${failed.length ? `, shards ${failed.join(',')} failed` : ''}, ${state.status?.active ?? 0} running`;
    if (line !== said && got.stdout) ctx.log((said = line));
    const condition = finished(state);
    if (!condition) return null;
    return { verdict: { complete: condition.type === 'Complete', failedIndexes: failed, condition } };
  }, intervalMs);
}

/** The last lines of the Job's failed pods, each headed by its name. */
async function failedPodLogs(target: KubernetesTarget, name: string, ctx: DeployContext): Promise<string> {
  const base = kubectlBase(target);
  const listed = await ctx.exec.run(
    'kubectl',
    [...base, 'get', 'pods', '-l', `batch.kubernetes.io/job-name=${name}`, '--field-selector=status.phase=Failed', '-o', 'json'],
    { allowFailure: true },
  );
  const pods = ((JSON.parse(listed.stdout || '{}') as { items?: { metadata?: { name?: string } }[] }).items ?? [])
    .map((p) => p.metadata?.name)
    .filter((n): n is string => Boolean(n))
    .slice(0, LOGGED_PODS);
  const out: string[] = [];
  for (const pod of pods) {
    const logs = await ctx.exec.run('kubectl', [...base, 'logs', `pod/${pod}`, '-c', 'model', `--tail=${LOG_TAIL}`], { allowFailure: true });
    out.push(`--- pod ${pod}\n${logs.exitCode === 0 ? logs.stdout : `(logs unreadable: ${logs.stderr.trim().split('\n').at(-1) ?? ''})`}`);
  }
  return out.join('\n');
}

const why = (condition: JobCondition | undefined) => [condition?.reason, condition?.message].filter(Boolean).join(': ') || 'no reason given';

export const kubernetesBatch: BatchPlatform<KubernetesTarget> = {
  type: 'kubernetes',

  plan: (target, job, ctx) => [{ name: `${job.name}-job.yaml`, content: jobYaml(renderBatchJob(target, job, ctx)) }],

  /**
   * kubectl apply, then the Job watched until it ends. Shards that failed after their own retries
   * (backoffLimitPerIndex) get one more Job of their own; what fails there fails the run with the
   * Job's reason and the failed pods' logs.
   */
  async run(target, job, ctx): Promise<BatchJobOutcome> {
    const intervalMs = job.pollIntervalMs ?? POLL_MS;
    const all = Array.from({ length: job.shards }, (_, i) => i);
    const first = await runJob(target, renderBatchJob(target, job, ctx), all, ctx, intervalMs);
    if (!first) return { status: 'planned' };
    const detail = { job: job.name, namespace: target.namespace, shards: job.shards };
    if (first.complete) return { status: 'completed', detail };
    // Only shards that failed can run again: a Job ended by its deadline would end the same way.
    if (first.failedIndexes.length === 0 || first.condition?.reason === 'DeadlineExceeded') {
      return { status: 'failed', message: `job ${job.name} failed (${why(first.condition)})`, logs: await failedPodLogs(target, job.name, ctx), detail };
    }
    const retry = renderBatchJob(target, job, ctx, first.failedIndexes);
    ctx.log(`job ${job.name}: shards ${first.failedIndexes.join(',')} failed (${why(first.condition)}); running them once more as job ${retry.metadata!.name}`);
    const firstLogs = await failedPodLogs(target, job.name, ctx);
    const second = await runJob(target, retry, first.failedIndexes, ctx, intervalMs);
    const retried = { ...detail, retried: first.failedIndexes, retryJob: retry.metadata!.name };
    if (!second || second.complete) return { status: 'completed', detail: retried };
    const still = second.failedIndexes.length ? second.failedIndexes : first.failedIndexes;
    return {
      status: 'failed',
      message: `job ${job.name}: shards ${still.join(',')} failed twice (${why(second.condition)})`,
      logs: [firstLogs, await failedPodLogs(target, retry.metadata!.name!, ctx)].filter(Boolean).join('\n'),
      detail: { ...retried, failed: still },
    };
  },
};
