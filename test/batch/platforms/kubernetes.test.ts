import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { Job } from 'kubernetes-models/batch/v1';
import { TARGET_DEFAULTS, type KubernetesTarget } from '../../../src/config/defaults.js';
import { batchModeEnv } from '../../../src/batch/image-mode.js';
import type { BatchJob } from '../../../src/batch/platform.js';
import { kubernetesBatch, parseIndexes, renderBatchJob } from '../../../src/batch/platforms/kubernetes.js';
import { restrictedViolations } from '../../targets/pod-security.js';
import { scripted } from '../../scripted-cli.js';
import { targetContext, releases } from '../../targets/target-context.js';

const [, v2] = releases('registry.example.com/team/bc');
const target: KubernetesTarget = {
  ...TARGET_DEFAULTS.kubernetes,
  context: 'prod-cluster',
  namespace: 'ml',
  serviceAccountName: 'batch-reader',
  imagePullSecrets: ['regcred'],
  batch: { ...TARGET_DEFAULTS.kubernetes.batch, parallelism: 2, resources: { limits: { memory: '2Gi' } } },
};
const base = '--context prod-cluster --namespace ml';
const job: BatchJob = {
  name: 'bc-a1b2c3',
  release: v2,
  input: 's3://data/in/',
  output: 's3://data/out/',
  shards: 4,
  format: 'csv',
  env: batchModeEnv({ input: 's3://data/in/', output: 's3://data/out/', shards: 4, format: 'csv' }),
  pollIntervalMs: 1,
};

type EnvVar = { name: string; value: string };
const envOf = (manifest: { spec: { template: { spec: { containers: { env: EnvVar[] }[] } } } }) =>
  Object.fromEntries(manifest.spec.template.spec.containers[0].env.map((e) => [e.name, e.value]));

/** A cluster in a script: each Job answers with the states listed for it, in turn, the last one for good. */
function cluster(states: Record<string, object[]>, podLogs: Record<string, string> = {}) {
  const seen: Record<string, number> = {};
  return scripted((line, args) => {
    if (line.includes(' get job ')) {
      const name = args[args.indexOf('job') + 1];
      const list = states[name];
      if (!list) return { exitCode: 1, stderr: `Error from server (NotFound): jobs.batch "${name}" not found` };
      const i = Math.min((seen[name] = (seen[name] ?? -1) + 1), list.length - 1);
      return { stdout: JSON.stringify({ status: list[i] }) };
    }
    if (line.includes(' get pods ')) {
      const jobName = /job-name=(\S+)/.exec(line)![1];
      const pods = Object.keys(podLogs).filter((p) => p.startsWith(`${jobName}-`) && !p.slice(jobName.length + 1).startsWith('retry'));
      return { stdout: JSON.stringify({ items: pods.map((name) => ({ metadata: { name } })) }) };
    }
    if (line.includes(' logs ')) return { stdout: podLogs[/pod\/(\S+)/.exec(line)![1]] ?? '' };
    return {};
  });
}

const failed = (reason: string, message: string) => ({ type: 'Failed', status: 'True', reason, message });

describe('kubernetes batch platform: an Indexed Job (kubectl through the exec seam; no cluster here)', () => {
  it('renders a valid Indexed Job that passes Pod Security "restricted" with the Deployment identity and labels', () => {
    const manifest = renderBatchJob(target, job, targetContext()).toJSON();
    // Validated again here against the Kubernetes schema, independently of the renderer.
    expect(() => new Job(manifest).validate()).not.toThrow();
    expect(manifest.spec).toMatchObject({ completionMode: 'Indexed', completions: 4, parallelism: 2, backoffLimitPerIndex: 2, activeDeadlineSeconds: 86400 });
    expect(manifest.spec.podFailurePolicy.rules[0]).toEqual({
      action: 'FailIndex',
      onExitCodes: { containerName: 'model', operator: 'In', values: [2] },
    });
    const pod = manifest.spec.template.spec;
    expect(restrictedViolations(pod)).toEqual([]);
    expect(pod).toMatchObject({
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      serviceAccountName: 'batch-reader',
      imagePullSecrets: [{ name: 'regcred' }],
    });
    expect(pod.containers[0].securityContext.readOnlyRootFilesystem).toBe(true);
    expect(pod.containers[0].volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
    expect(pod.volumes).toEqual([{ name: 'tmp', emptyDir: {} }]);
    expect(pod.containers[0].image).toBe(v2.image);
    // The batch section's limit over the target's resources; the rest are the target's.
    expect(pod.containers[0].resources).toEqual({ requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1', memory: '2Gi' } });
    expect(envOf(manifest)).toEqual({
      MLOPS_MODE: 'batch',
      MLOPS_BATCH_INPUT: 's3://data/in/',
      MLOPS_BATCH_OUTPUT: 's3://data/out/',
      MLOPS_BATCH_SHARDS: '4',
      MLOPS_BATCH_FORMAT: 'csv',
    });
    expect(manifest.metadata.labels).toMatchObject({
      'app.kubernetes.io/name': 'bc',
      'app.kubernetes.io/version': '1.1.0',
      'app.kubernetes.io/component': 'batch',
      'app.kubernetes.io/managed-by': 'mlops',
      'mlops.batch': 'bc-a1b2c3',
    });
    expect(manifest.spec.template.metadata.labels).toEqual(manifest.metadata.labels);
  });

  it('a parallelism over the shard count is cut to it; an invalid Job is refused before anything runs', () => {
    const one = renderBatchJob(target, { ...job, shards: 1 }, targetContext()).toJSON();
    expect(one.spec).toMatchObject({ completions: 1, parallelism: 1 });
    // An environment value must be a string: the schema check catches what the types let through.
    const bad = { ...job, env: { ...job.env, MLOPS_BATCH_SHARDS: 4 as unknown as string } };
    expect(() => renderBatchJob(target, bad, targetContext())).toThrow(/the rendered batch Job is not valid Kubernetes/);
  });

  it('plan: the Job YAML, the same manifest that is applied', async () => {
    const [file] = kubernetesBatch.plan(target, job, targetContext());
    expect(file.name).toBe('bc-a1b2c3-job.yaml');
    expect(parse(file.content)).toEqual(renderBatchJob(target, job, targetContext()).toJSON());
  });

  it('parses index lists as the Job status writes them', () => {
    expect(parseIndexes('0-2,5,7-8')).toEqual([0, 1, 2, 5, 7, 8]);
    expect(parseIndexes(undefined)).toEqual([]);
  });

  it('applies, polls the Job and logs per-index progress until Complete', async () => {
    const { runner, calls, inputs } = cluster({
      'bc-a1b2c3': [
        { active: 2, completedIndexes: '0' },
        { active: 1, completedIndexes: '0-2' },
        { completedIndexes: '0-3', conditions: [{ type: 'Complete', status: 'True' }] },
      ],
    });
    const logs: string[] = [];
    const outcome = await kubernetesBatch.run(target, job, targetContext({ runner, logs }));
    expect(outcome).toEqual({ status: 'completed', detail: { job: 'bc-a1b2c3', namespace: 'ml', shards: 4 } });
    expect(calls).toEqual([
      `kubectl ${base} apply -f -`,
      `kubectl ${base} get job bc-a1b2c3 -o json`,
      `kubectl ${base} get job bc-a1b2c3 -o json`,
      `kubectl ${base} get job bc-a1b2c3 -o json`,
    ]);
    expect(parse(inputs[0]).kind).toBe('Job');
    expect(logs).toEqual([
      'job bc-a1b2c3: 1/4 shards done, 2 running',
      'job bc-a1b2c3: 3/4 shards done, 1 running',
      'job bc-a1b2c3: 4/4 shards done, 0 running',
    ]);
  });

  it('failed indexes run once more as a Job of their own (MLOPS_BATCH_INDEXES), which completes', async () => {
    const { runner, calls, inputs } = cluster(
      {
        'bc-a1b2c3': [{ completedIndexes: '0,2', failedIndexes: '1,3', conditions: [failed('FailedIndexes', 'Job has failed indexes')] }],
        'bc-a1b2c3-retry': [{ completedIndexes: '0-1', conditions: [{ type: 'Complete', status: 'True' }] }],
      },
      { 'bc-a1b2c3-1-x7k': 'error: s3 read timed out' },
    );
    const outcome = await kubernetesBatch.run(target, job, targetContext({ runner }));
    expect(outcome).toEqual({
      status: 'completed',
      detail: { job: 'bc-a1b2c3', namespace: 'ml', shards: 4, retried: [1, 3], retryJob: 'bc-a1b2c3-retry' },
    });
    expect(calls.filter((c) => c.includes('apply'))).toHaveLength(2);
    const retry = parse(inputs[1]);
    expect(retry.metadata.name).toBe('bc-a1b2c3-retry');
    expect(retry.spec).toMatchObject({ completionMode: 'Indexed', completions: 2, parallelism: 2 });
    expect(envOf(retry)).toMatchObject({ MLOPS_BATCH_INDEXES: '1,3', MLOPS_BATCH_SHARDS: '4' });
    expect(() => new Job(retry).validate()).not.toThrow();
    expect(restrictedViolations(retry.spec.template.spec)).toEqual([]);
  });

  it('a shard that fails its retry too fails the run with the Job reason and the failed pods logs, in shard numbers', async () => {
    const logs: string[] = [];
    const { runner, calls } = cluster(
      {
        'bc-a1b2c3': [{ completedIndexes: '0,2', failedIndexes: '1,3', conditions: [failed('FailedIndexes', 'Job has failed indexes')] }],
        // Index 1 of the retry is shard 3.
        'bc-a1b2c3-retry': [{ completedIndexes: '0', failedIndexes: '1', conditions: [failed('FailedIndexes', 'Job has failed indexes')] }],
      },
      { 'bc-a1b2c3-3-abc': 'first try: out of memory', 'bc-a1b2c3-retry-1-def': 'error: column "age" is missing' },
    );
    const outcome = await kubernetesBatch.run(target, job, targetContext({ runner, logs }));
    expect(outcome).toMatchObject({
      status: 'failed',
      message: 'job bc-a1b2c3: shards 3 failed twice (FailedIndexes: Job has failed indexes)',
      detail: { failed: [3], retried: [1, 3] },
    });
    if (outcome.status !== 'failed') throw new Error('expected failed');
    expect(outcome.logs).toContain('--- pod bc-a1b2c3-retry-1-def\nerror: column "age" is missing');
    expect(outcome.logs).toContain('first try: out of memory');
    expect(calls).toContain(`kubectl ${base} get pods -l batch.kubernetes.io/job-name=bc-a1b2c3-retry --field-selector=status.phase=Failed -o json`);
    expect(calls).toContain(`kubectl ${base} logs pod/bc-a1b2c3-retry-1-def -c model --tail=20`);
    // Only once: no third Job.
    expect(calls.filter((c) => c.includes('apply'))).toHaveLength(2);
    expect(logs).toContain('job bc-a1b2c3-retry: 1/2 shards done, shards 3 failed, 0 running');
  });

  it('a Job past its deadline is not retried: it fails with its reason', async () => {
    const { runner, calls } = cluster({
      'bc-a1b2c3': [{ completedIndexes: '0', failedIndexes: '1', conditions: [failed('DeadlineExceeded', 'Job was active longer than specified deadline')] }],
    });
    const outcome = await kubernetesBatch.run(target, job, targetContext({ runner }));
    expect(outcome).toMatchObject({ status: 'failed', message: 'job bc-a1b2c3 failed (DeadlineExceeded: Job was active longer than specified deadline)' });
    expect(calls.filter((c) => c.includes('apply'))).toHaveLength(1);
  });

  it('--dry-run records the apply (with the Job) and one read, and sends nothing', async () => {
    const { runner, calls } = cluster({});
    const ctx = targetContext({ runner, dryRun: true });
    expect(await kubernetesBatch.run(target, job, ctx)).toEqual({ status: 'planned' });
    expect(calls).toEqual([]);
    expect(ctx.exec.steps.map((s) => s.command)).toEqual([`kubectl ${base} apply -f -`, `kubectl ${base} get job bc-a1b2c3 -o json`]);
    expect(parse(ctx.exec.steps[0].input!).spec.completionMode).toBe('Indexed');
  });
});
