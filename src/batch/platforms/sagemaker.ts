/**
 * A batch job as a SageMaker Batch Transform job: the version's model (made as a deploy makes it) serves
 * /invocations, and SageMaker sends it the input's lines in mini-batches and joins the answers line by line.
 */
import type { SageMakerTarget } from '../../config/defaults.js';
import { inputError } from '../../errors.js';
import { ECR_HOST, modelName } from '../../targets/sagemaker.js';
import type { DeployContext } from '../../targets/types.js';
import type { BatchJob, BatchJobOutcome, BatchPlatform } from '../platform.js';

const POLL_MS = 30_000;

/** What SageMaker sends and asks for, by format: both split and join on lines. */
const MEDIA_TYPES = { csv: 'text/csv', jsonl: 'application/jsonlines' } as const;

interface TransformJobDescription {
  TransformJobStatus?: 'InProgress' | 'Completed' | 'Failed' | 'Stopping' | 'Stopped';
  FailureReason?: string;
  TransformOutput?: { S3OutputPath?: string };
}

/** The format of the input's lines: its file extension, or the job's format for a prefix. */
function inputFormat(job: BatchJob): 'csv' | 'jsonl' {
  const extension = /\.(csv|jsonl|ndjson|json)$/i.exec(job.input)?.[1].toLowerCase();
  const format = extension === 'csv' ? 'csv' : extension ? 'jsonl' : job.format;
  if (format === 'parquet') {
    throw inputError(
      `SageMaker Batch Transform splits its input on lines, and ${job.input} is read as Parquet`,
      'give CSV (rows of numbers, no header) or JSON Lines input, or run the batch on a kubernetes target',
    );
  }
  return format;
}

/** The requests a run sends: create-model's (when the model is not there yet) and create-transform-job's. */
export function transformRequests(target: SageMakerTarget, job: BatchJob, ctx: Pick<DeployContext, 'config' | 'projectDir'>) {
  const host = job.release.image.split('/')[0];
  if (!ECR_HOST.test(host)) {
    throw inputError(
      `SageMaker pulls images from Amazon ECR only, and ${host} is not an ECR registry`,
      'set image.repository to <account>.dkr.ecr.<region>.amazonaws.com/<name>, then `mlops push`',
    );
  }
  for (const uri of [job.input, job.output]) {
    if (!uri.toLowerCase().startsWith('s3://')) throw inputError(`SageMaker Batch Transform reads and writes S3, and ${uri} is not an s3:// URI`);
  }
  if (job.format === 'parquet') {
    throw inputError('SageMaker Batch Transform joins its output on lines: Parquet cannot be written there', 'ask for --format csv or jsonl');
  }
  const batch = target.batch;
  const model = modelName(target, job.release, ctx);
  const tags = [
    { Key: 'mlops-version', Value: job.release.version },
    { Key: 'managed-by', Value: 'mlops' },
  ];
  return {
    model: { ModelName: model, ExecutionRoleArn: target.executionRoleArn, PrimaryContainer: { Image: job.release.image, Mode: 'SingleModel' }, Tags: tags },
    transformJob: {
      TransformJobName: job.name,
      ModelName: model,
      // 0: left out, so SageMaker asks the image (GET /execution-parameters).
      ...(batch.maxConcurrentTransforms > 0 ? { MaxConcurrentTransforms: batch.maxConcurrentTransforms } : {}),
      ...(batch.maxPayloadMB > 0 ? { MaxPayloadInMB: batch.maxPayloadMB } : {}),
      ModelClientConfig: { InvocationsTimeoutInSeconds: batch.invocationsTimeoutSeconds, InvocationsMaxRetries: 1 },
      BatchStrategy: 'MultiRecord',
      TransformInput: {
        DataSource: { S3DataSource: { S3DataType: 'S3Prefix', S3Uri: job.input } },
        ContentType: MEDIA_TYPES[inputFormat(job)],
        SplitType: 'Line',
        CompressionType: 'None',
      },
      // One answer line per input line, in order: SageMaker writes <input file>.out under the output path.
      TransformOutput: { S3OutputPath: job.output, Accept: MEDIA_TYPES[job.format], AssembleWith: 'Line' },
      TransformResources: { InstanceType: batch.instanceType, InstanceCount: batch.instanceCount },
      Tags: tags,
    },
  };
}

/** The container's stdout and SageMaker's data log: streams named <job>/<instance>, last lines first to go. */
async function jobLogs(ctx: DeployContext, target: SageMakerTarget, job: string): Promise<string> {
  const result = await ctx.exec.run(
    'aws',
    [
      'logs',
      'filter-log-events',
      '--log-group-name',
      '/aws/sagemaker/TransformJobs',
      '--log-stream-name-prefix',
      job,
      '--limit',
      '50',
      '--region',
      target.region,
      '--output',
      'json',
    ],
    { allowFailure: true },
  );
  if (result.exitCode !== 0) return '';
  return ((JSON.parse(result.stdout || '{}') as { events?: { message?: string }[] }).events ?? []).map((e) => e.message ?? '').join('\n');
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

export const sageMakerBatch: BatchPlatform<SageMakerTarget> = {
  type: 'sagemaker',

  // For `aws sagemaker create-model` and `create-transform-job --cli-input-json file://...`.
  plan(target, job, ctx) {
    const requests = transformRequests(target, job, ctx);
    return [
      { name: `${job.name}-model.json`, content: json(requests.model) },
      { name: `${job.name}-transform-job.json`, content: json(requests.transformJob) },
    ];
  },

  /** The model if it is not there, create-transform-job, then describe-transform-job until it ends. */
  async run(target, job, ctx): Promise<BatchJobOutcome> {
    const requests = transformRequests(target, job, ctx);
    const aws = (args: string[], options?: { allowFailure?: boolean }) =>
      ctx.exec.run('aws', ['sagemaker', ...args, '--region', target.region, '--output', 'json'], options);
    const known = await aws(['describe-model', '--model-name', requests.model.ModelName], { allowFailure: true });
    // A dry run's describe answers nothing, so its plan shows the model being made.
    if (known.exitCode !== 0 || !known.stdout) await aws(['create-model', '--cli-input-json', JSON.stringify(requests.model)]);
    await aws(['create-transform-job', '--cli-input-json', JSON.stringify(requests.transformJob)]);
    const deadline = Date.now() + target.batch.timeoutSeconds * 1000;
    let said = '';
    const seen = await ctx.exec.poll<TransformJobDescription | 'timeout'>(async () => {
      const described = JSON.parse((await aws(['describe-transform-job', '--transform-job-name', job.name])).stdout || '{}') as TransformJobDescription;
      const status = described.TransformJobStatus;
      if (status && status !== said) ctx.log(`transform job ${job.name}: ${(said = status)}`);
      if (status === 'Completed' || status === 'Failed' || status === 'Stopped') return { verdict: described };
      return Date.now() > deadline ? { verdict: 'timeout' } : null;
    }, job.pollIntervalMs ?? POLL_MS);
    if (seen === undefined) return { status: 'planned' };
    const detail = { transformJob: job.name, model: requests.model.ModelName, output: job.output };
    if (seen !== 'timeout' && seen.TransformJobStatus === 'Completed') return { status: 'completed', detail };
    if (seen === 'timeout') await aws(['stop-transform-job', '--transform-job-name', job.name], { allowFailure: true });
    const message =
      seen === 'timeout'
        ? `transform job ${job.name} did not finish in ${target.batch.timeoutSeconds} s (batch.timeoutSeconds): it was stopped`
        : `transform job ${job.name} ${seen.TransformJobStatus === 'Stopped' ? 'was stopped' : 'failed'}: ${seen.FailureReason ?? 'no reason given'}`;
    return { status: 'failed', message, logs: await jobLogs(ctx, target, job.name), detail };
  },
};
