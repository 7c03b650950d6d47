import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { applyDefaults } from '../../../src/config/normalize.js';
import { jobName, runRemoteBatch, type RemoteBatchOptions } from '../../../src/batch/remote.js';
import { isMlopsError } from '../../../src/errors.js';
import { withTempDir } from '../../helpers.js';
import { scripted } from '../../scripted-cli.js';
import { releases } from '../../targets/target-context.js';

const [, v2] = releases('registry.example.com/team/bc');
const config = applyDefaults({
  model: { name: 'bc' },
  targets: { prod: { type: 'kubernetes', namespace: 'ml' }, here: { type: 'local' } },
});

function options(change: Partial<RemoteBatchOptions> = {}): RemoteBatchOptions {
  return {
    cwd: '/tmp',
    projectDir: '/tmp',
    config,
    env: {},
    target: 'prod',
    version: '1.1.0',
    input: 's3://data/in/',
    output: 's3://data/out/',
    shards: 3,
    format: 'csv',
    dryRun: false,
    log: () => undefined,
    resolve: async () => v2,
    pollIntervalMs: 1,
    ...change,
  };
}

const failure = (promise: Promise<unknown>) =>
  promise.then(
    () => 'ran',
    (error) => (isMlopsError(error) ? `exit ${error.exitCode}: ${error.message} (${error.hint})` : String(error)),
  );

describe('runRemoteBatch: a batch job on a target platform', () => {
  it('names the job after the model with a short unique suffix, as a DNS label', () => {
    expect(jobName('Breast_Cancer.v2')).toMatch(/^breast-cancer-v2-[0-9a-f]{6}$/);
    expect(jobName('2024-model')).toMatch(/^batch-2024-model-[0-9a-f]{6}$/);
    expect(jobName('bc')).not.toBe(jobName('bc'));
  });

  it('refuses a target type with no batch platform, naming the ones that have one', async () => {
    expect(await failure(runRemoteBatch(options({ target: 'here' })))).toBe(
      "exit 2: target 'here' (local) has no batch platform (batch jobs run on kubernetes, sagemaker, vertex targets; or run the batch on this machine without --target)",
    );
  });

  it("refuses this machine's files for a remote target", async () => {
    expect(await failure(runRemoteBatch(options({ input: './rows.csv' })))).toMatch(
      /^exit 2: --input \.\/rows\.csv: a kubernetes target reads and writes object storage/,
    );
    expect(await failure(runRemoteBatch(options({ output: '/data/out' })))).toMatch(/^exit 2: --output \/data\/out:/);
  });

  it('--plan writes the Job YAML and runs nothing', async () => {
    await withTempDir(async (dir) => {
      const { runner, calls } = scripted(() => ({}));
      const result = await runRemoteBatch(options({ planDir: path.join(dir, 'plan'), runner }));
      expect(calls).toEqual([]);
      expect(result).toMatchObject({ target: 'prod', type: 'kubernetes', version: '1.1.0', image: v2.image, outcome: { status: 'planned' }, plan: [] });
      expect(result.files).toEqual([path.join(dir, 'plan', `${result.job}-job.yaml`)]);
      const manifest = parse(await readFile(result.files[0], 'utf8'));
      expect(manifest).toMatchObject({ kind: 'Job', metadata: { name: result.job, namespace: 'ml' }, spec: { completions: 3 } });
      expect(manifest.spec.template.spec.containers[0].env).toContainEqual({ name: 'MLOPS_BATCH_SHARDS', value: '3' });
    });
  });

  it('--dry-run prints each command and sends none; a run returns the outcome and the steps', async () => {
    const printed: string[] = [];
    const { runner, calls } = scripted(() => ({}));
    const dry = await runRemoteBatch(options({ dryRun: true, runner, log: (line) => printed.push(line) }));
    expect(calls).toEqual([]);
    expect(dry.outcome).toEqual({ status: 'planned' });
    expect(printed).toEqual(['$ kubectl --namespace ml apply -f -', `$ kubectl --namespace ml get job ${dry.job} -o json`]);
    const live = scripted((line) =>
      line.includes('get job') ? { stdout: JSON.stringify({ status: { completedIndexes: '0-2', conditions: [{ type: 'Complete', status: 'True' }] } }) } : {},
    );
    const done = await runRemoteBatch(options({ runner: live.runner }));
    expect(done.outcome).toMatchObject({ status: 'completed', detail: { shards: 3 } });
    expect(done.plan.map((s) => s.command)).toEqual(live.calls);
  });
});
