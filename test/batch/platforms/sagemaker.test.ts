import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { TARGET_DEFAULTS, type SageMakerTarget } from '../../../src/config/defaults.js';
import type { BatchJob } from '../../../src/batch/platform.js';
import { sageMakerBatch, transformRequests } from '../../../src/batch/platforms/sagemaker.js';
import { isMlopsError } from '../../../src/errors.js';
import { sageMakerAdapter } from '../../../src/targets/sagemaker.js';
import { scripted } from '../../scripted-cli.js';
import { planArgv, releases, targetContext } from '../../targets/target-context.js';
import { probeTool } from '../../tools.js';

const run = promisify(execFile);
const [, v2] = releases('123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/bc');
const target: SageMakerTarget = {
  ...TARGET_DEFAULTS.sagemaker,
  region: 'eu-west-1',
  executionRoleArn: 'arn:aws:iam::123456789012:role/SageMakerExecution',
  batch: { ...TARGET_DEFAULTS.sagemaker.batch, instanceCount: 2, maxConcurrentTransforms: 4 },
};
const job: BatchJob = {
  name: 'bc-a1b2c3',
  release: v2,
  input: 's3://data/in/rows.csv',
  output: 's3://data/out/',
  shards: 1,
  format: 'jsonl',
  env: {},
  pollIntervalMs: 1,
};
const tail = '--region eu-west-1 --output json';

/** An AWS account in a script: a transform job that goes through the statuses given, the last one for good. */
function account(statuses: object[], options: { modelExists?: boolean } = {}) {
  let looked = -1;
  return scripted((line) => {
    if (line.includes('describe-model'))
      return options.modelExists ? { stdout: '{"ModelName": "x"}' } : { exitCode: 254, stderr: 'ValidationException: Could not find model' };
    if (line.includes('describe-transform-job')) return { stdout: JSON.stringify(statuses[Math.min(++looked, statuses.length - 1)]) };
    if (line.includes('filter-log-events')) return { stdout: JSON.stringify({ events: [{ message: 'ClientError: 400 text/csv: row 3 ...' }] }) };
    return {};
  });
}

const argAfter = (line: string, flag: string) => JSON.parse(line.slice(line.indexOf(flag) + flag.length + 1, line.lastIndexOf(' --region')));

describe('sagemaker batch platform: a Batch Transform job (aws CLI through the exec seam; no AWS account here)', () => {
  it('the transform job reads S3 lines in mini-batches and joins the answers line by line', () => {
    const { model, transformJob } = transformRequests(target, job, targetContext());
    expect(transformJob).toEqual({
      TransformJobName: 'bc-a1b2c3',
      ModelName: model.ModelName,
      MaxConcurrentTransforms: 4,
      MaxPayloadInMB: 6,
      ModelClientConfig: { InvocationsTimeoutInSeconds: 600, InvocationsMaxRetries: 1 },
      BatchStrategy: 'MultiRecord',
      TransformInput: {
        DataSource: { S3DataSource: { S3DataType: 'S3Prefix', S3Uri: 's3://data/in/rows.csv' } },
        ContentType: 'text/csv',
        SplitType: 'Line',
        CompressionType: 'None',
      },
      TransformOutput: { S3OutputPath: 's3://data/out/', Accept: 'application/jsonlines', AssembleWith: 'Line' },
      TransformResources: { InstanceType: 'ml.m5.large', InstanceCount: 2 },
      Tags: [
        { Key: 'mlops-version', Value: '1.1.0' },
        { Key: 'managed-by', Value: 'mlops' },
      ],
    });
    // A prefix takes the job's format; 0 leaves the setting to the image's /execution-parameters.
    const prefix = transformRequests(
      { ...target, batch: { ...target.batch, maxConcurrentTransforms: 0 } },
      { ...job, input: 's3://data/in/' },
      targetContext(),
    );
    expect(prefix.transformJob.TransformInput.ContentType).toBe('application/jsonlines');
    expect(prefix.transformJob).not.toHaveProperty('MaxConcurrentTransforms');
  });

  it('reuses the model a deploy of the same release made: the same name', async () => {
    const { calls } = scripted(() => ({ exitCode: 254, stderr: 'Could not find endpoint' }));
    const deployArgs = await planArgv((c) => sageMakerAdapter.deploy(target, v2, null, c));
    const deployModel = deployArgs.find((a) => a[1] === 'create-model')!;
    expect(transformRequests(target, job, targetContext()).model.ModelName).toBe(deployModel[deployModel.indexOf('--model-name') + 1]);
    expect(calls).toEqual([]);
  });

  it('refuses what Batch Transform cannot do: Parquet, other stores, non-ECR images', () => {
    const refused = (change: Partial<BatchJob>) => {
      try {
        transformRequests(target, { ...job, ...change }, targetContext());
        return 'accepted';
      } catch (error) {
        return isMlopsError(error) ? `exit ${error.exitCode}: ${error.message}` : String(error);
      }
    };
    expect(refused({ format: 'parquet' })).toMatch(/^exit 2: .*Parquet cannot be written/);
    expect(refused({ input: 's3://data/in/rows.parquet', format: 'csv' })).toBe('accepted');
    expect(refused({ input: 'gs://data/in/' })).toMatch(/^exit 2: .*gs:\/\/data\/in\/ is not an s3:\/\/ URI/);
    expect(refused({ release: { ...v2, image: 'registry.example.com/team/bc@sha256:' + 'b'.repeat(64) } })).toMatch(/ECR only/);
  });

  it('creates the model when missing, the transform job, and polls it to Completed', async () => {
    const { runner, calls } = account([{ TransformJobStatus: 'InProgress' }, { TransformJobStatus: 'Completed' }]);
    const logs: string[] = [];
    const outcome = await sageMakerBatch.run(target, job, targetContext({ runner, logs }));
    expect(outcome).toMatchObject({ status: 'completed', detail: { transformJob: 'bc-a1b2c3', output: 's3://data/out/' } });
    expect(calls.map((c) => c.split(' ').slice(1, 3).join(' '))).toEqual([
      'sagemaker describe-model',
      'sagemaker create-model',
      'sagemaker create-transform-job',
      'sagemaker describe-transform-job',
      'sagemaker describe-transform-job',
    ]);
    expect(calls[3]).toBe(`aws sagemaker describe-transform-job --transform-job-name bc-a1b2c3 ${tail}`);
    expect(argAfter(calls[2], '--cli-input-json')).toEqual(transformRequests(target, job, targetContext()).transformJob);
    expect(logs).toEqual(['transform job bc-a1b2c3: InProgress', 'transform job bc-a1b2c3: Completed']);
    // A model a deploy made is used as it is.
    const again = account([{ TransformJobStatus: 'Completed' }], { modelExists: true });
    await sageMakerBatch.run(target, job, targetContext({ runner: again.runner }));
    expect(again.calls.some((c) => c.includes('create-model'))).toBe(false);
  });

  it("a failed job is an outcome naming SageMaker's FailureReason, with the job's log lines", async () => {
    const reason = 'ClientError: See job logs for more information';
    const { runner, calls } = account([{ TransformJobStatus: 'Failed', FailureReason: reason }]);
    const outcome = await sageMakerBatch.run(target, job, targetContext({ runner }));
    expect(outcome).toMatchObject({ status: 'failed', message: `transform job bc-a1b2c3 failed: ${reason}`, logs: 'ClientError: 400 text/csv: row 3 ...' });
    expect(calls.at(-1)).toBe(`aws logs filter-log-events --log-group-name /aws/sagemaker/TransformJobs --log-stream-name-prefix bc-a1b2c3 --limit 50 ${tail}`);
  });

  it('past batch.timeoutSeconds the job is stopped and the run fails saying so', async () => {
    const { runner, calls } = account([{ TransformJobStatus: 'InProgress' }]);
    const short = { ...target, batch: { ...target.batch, timeoutSeconds: 0.05 } } as SageMakerTarget;
    const outcome = await sageMakerBatch.run(short, { ...job, pollIntervalMs: 20 }, targetContext({ runner }));
    expect(outcome).toMatchObject({ status: 'failed', message: expect.stringContaining('did not finish in 0.05 s') });
    expect(calls).toContain(`aws sagemaker stop-transform-job --transform-job-name bc-a1b2c3 ${tail}`);
  });

  it('--dry-run records every call (the model and job requests included) and sends nothing', async () => {
    const { runner, calls } = account([]);
    const ctx = targetContext({ runner, dryRun: true });
    expect(await sageMakerBatch.run(target, job, ctx)).toEqual({ status: 'planned' });
    expect(calls).toEqual([]);
    expect(ctx.exec.steps.map((s) => s.command.split(' ').slice(1, 3).join(' '))).toEqual([
      'sagemaker describe-model',
      'sagemaker create-model',
      'sagemaker create-transform-job',
      'sagemaker describe-transform-job',
    ]);
  });

  it('plan: the create-model and create-transform-job inputs as JSON', () => {
    const files = sageMakerBatch.plan(target, job, targetContext());
    expect(files.map((f) => f.name)).toEqual(['bc-a1b2c3-model.json', 'bc-a1b2c3-transform-job.json']);
    expect(JSON.parse(files[1].content)).toEqual(transformRequests(target, job, targetContext()).transformJob);
  });
});

/**
 * The real aws CLI parses each request: botocore checks it against SageMaker's service model, then
 * stops where it would need an account or the network (as test/targets/sagemaker.test.ts does).
 */
const aws = probeTool('aws', 'apt-get install awscli');

describe.skipIf(!aws.ok)(`the aws CLI accepts the batch requests${aws.ok ? '' : ` (skipped: ${aws.reason})`}`, () => {
  const env = {
    ...process.env,
    AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'example',
    AWS_MAX_ATTEMPTS: '1',
    AWS_CONFIG_FILE: '/dev/null',
    AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
  };
  const call = (args: string[]) =>
    run(aws.path, [...args, '--endpoint-url', 'http://127.0.0.1:9', '--cli-connect-timeout', '1'], { env, timeout: 60_000 }).then(
      () => '',
      (e) => String(e.stderr),
    );

  it('validates the planned commands and the --plan files against the SageMaker service model', async () => {
    const steps = await planArgv((c) => sageMakerBatch.run(target, job, c));
    const dir = await mkdtemp(path.join(tmpdir(), 'mlops-aws-batch-'));
    try {
      for (const file of sageMakerBatch.plan(target, job, targetContext())) await writeFile(path.join(dir, file.name), file.content);
      steps.push(['sagemaker', 'create-model', '--cli-input-json', `file://${path.join(dir, 'bc-a1b2c3-model.json')}`, '--region', 'eu-west-1']);
      steps.push([
        'sagemaker',
        'create-transform-job',
        '--cli-input-json',
        `file://${path.join(dir, 'bc-a1b2c3-transform-job.json')}`,
        '--region',
        'eu-west-1',
      ]);
      for (const args of steps) expect(await call(args), `aws ${args.join(' ')}`).toMatch(/Could not connect to the endpoint URL/);
      // The check itself refuses a request that breaks the model (a field it does not have, a number as text).
      const broken = { ...transformRequests(target, job, targetContext()).transformJob, MaxPayloadInMB: '6', Shards: 4 };
      const said = await call(['sagemaker', 'create-transform-job', '--cli-input-json', JSON.stringify(broken), '--region', 'eu-west-1']);
      expect(said).toMatch(/Unknown parameter in input: "Shards"/);
      expect(said).toMatch(/Invalid type for parameter MaxPayloadInMB/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
