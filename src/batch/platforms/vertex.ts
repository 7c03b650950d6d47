/**
 * A batch job as a Vertex AI BatchPredictionJob on the version's model (uploaded as a deploy uploads it):
 * Vertex AI sends the instances to the image's predict route and writes JSON Lines predictions to GCS.
 * gcloud has no batch prediction commands, so the REST API is reached with curl through the exec seam,
 * with gcloud's access token in a header file that never reaches a log line or a plan.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { VertexTarget } from '../../config/defaults.js';
import { environmentError, inputError } from '../../errors.js';
import { revisionTag } from '../../targets/cloudrun.js';
import { endpointDisplayName, modelIdOf, uploadModel } from '../../targets/vertex.js';
import type { DeployContext, Release } from '../../targets/types.js';
import type { BatchJob, BatchJobOutcome, BatchPlatform } from '../platform.js';

const POLL_MS = 30_000;
const ENDED = new Set(['JOB_STATE_SUCCEEDED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED', 'JOB_STATE_EXPIRED', 'JOB_STATE_PARTIALLY_SUCCEEDED']);

interface BatchPredictionJobState {
  name?: string;
  state?: string;
  error?: { code?: number; message?: string };
  partialFailures?: { message?: string }[];
  completionStats?: { successfulCount?: string; failedCount?: string; incompleteCount?: string };
  outputInfo?: { gcsOutputDirectory?: string };
}

/** The model id a deploy of this release uploads (or would): the same id, so a deployed version's model is reused. */
export const modelId = (target: VertexTarget, release: Release, ctx: Pick<DeployContext, 'config' | 'projectDir'>): string =>
  modelIdOf(endpointDisplayName(target, ctx), release);

const apiBase = (target: VertexTarget) => `https://${target.region}-aiplatform.googleapis.com/v1`;
const parent = (target: VertexTarget) => `projects/${target.project}/locations/${target.region}`;

/** JSON Lines or CSV instances, by the input's extension (or the job's format for a prefix); a prefix reads every file under it. */
function inputConfig(job: BatchJob) {
  const extension = /\.(csv|jsonl|ndjson|json)$/i.exec(job.input)?.[1].toLowerCase();
  const format = extension === 'csv' ? 'csv' : extension ? 'jsonl' : job.format;
  if (format === 'parquet') {
    throw inputError(
      `Vertex AI batch prediction reads JSON Lines or CSV from GCS, and ${job.input} is read as Parquet`,
      'give JSON Lines or CSV input, or run the batch on a kubernetes target',
    );
  }
  return { instancesFormat: format, gcsSource: { uris: [job.input.endsWith('/') ? `${job.input}*` : job.input] } };
}

/** The models.upload body (what `gcloud ai models upload` sends) and the batchPredictionJobs.create body. */
export function predictionRequests(target: VertexTarget, job: BatchJob, ctx: Pick<DeployContext, 'config' | 'projectDir'>) {
  for (const uri of [job.input, job.output]) {
    if (!uri.toLowerCase().startsWith('gs://')) throw inputError(`Vertex AI batch prediction reads and writes GCS, and ${uri} is not a gs:// URI`);
  }
  if (job.format !== 'jsonl') {
    throw inputError(`Vertex AI writes a custom model's batch predictions as JSON Lines, not ${job.format}`, 'ask for --format jsonl');
  }
  const id = modelId(target, job.release, ctx);
  const labels = { 'mlops-version': revisionTag(job.release.version).slice(1), 'managed-by': 'mlops' };
  const batch = target.batch;
  return {
    modelId: id,
    upload: {
      modelId: id,
      model: {
        displayName: id,
        containerSpec: {
          imageUri: job.release.image,
          ports: [{ containerPort: ctx.config.image.port }],
          healthRoute: '/v2/health/ready',
          predictRoute: `/v1/models/${job.release.modelName}:predict`,
        },
        labels,
      },
    },
    batchPredictionJob: {
      displayName: job.name,
      model: `${parent(target)}/models/${id}`,
      inputConfig: inputConfig(job),
      outputConfig: { predictionsFormat: 'jsonl', gcsDestination: { outputUriPrefix: job.output } },
      dedicatedResources: {
        machineSpec: { machineType: batch.machineType },
        startingReplicaCount: batch.startingReplicaCount,
        maxReplicaCount: batch.maxReplicaCount,
      },
      ...(target.serviceAccount ? { serviceAccount: target.serviceAccount } : {}),
      labels: { ...labels, 'mlops-batch': job.name },
    },
  };
}

/**
 * The Vertex AI REST API through curl. The token is fetched through the seam (the command is shown, its
 * answer is not) and handed to curl in a header file, so no command line or plan carries it.
 */
function vertexApi(ctx: DeployContext) {
  return async (method: 'GET' | 'POST', url: string, body?: unknown): Promise<BatchPredictionJobState> => {
    const token = (await ctx.exec.run('gcloud', ['auth', 'print-access-token'])).stdout.trim();
    const dir = await mkdtemp(path.join(tmpdir(), 'mlops-vertex-'));
    const headers = path.join(dir, 'headers');
    try {
      await writeFile(headers, `Authorization: Bearer ${token}\n`, { mode: 0o600 });
      const result = await ctx.exec.run(
        'curl',
        [
          '--silent',
          '--show-error',
          '--fail-with-body',
          '--request',
          method,
          '--header',
          `@${headers}`,
          ...(body === undefined ? [] : ['--header', 'Content-Type: application/json', '--data-binary', '@-']),
          url,
        ],
        { allowFailure: true, timeoutMs: 120_000, ...(body === undefined ? {} : { input: JSON.stringify(body) }) },
      );
      if (result.exitCode !== 0) {
        const said = (JSON.parse(result.stdout || '{}') as { error?: { message?: string } }).error?.message;
        throw environmentError(
          `Vertex AI ${method} ${url} failed: ${said ?? result.stderr.trim().split('\n').at(-1) ?? `exit ${result.exitCode}`}`,
          "check gcloud's credentials and project: gcloud auth list; gcloud config list",
        );
      }
      return JSON.parse(result.stdout || '{}') as BatchPredictionJobState;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };
}

const count = (value: string | undefined) => Number(value ?? 0);

export const vertexBatch: BatchPlatform<VertexTarget> = {
  type: 'vertex',

  // The bodies of POST .../models:upload and POST .../batchPredictionJobs.
  plan(target, job, ctx) {
    const requests = predictionRequests(target, job, ctx);
    return [
      { name: `${job.name}-model-upload.json`, content: `${JSON.stringify(requests.upload, null, 2)}\n` },
      { name: `${job.name}-batch-prediction-job.json`, content: `${JSON.stringify(requests.batchPredictionJob, null, 2)}\n` },
    ];
  },

  /** The model uploaded if it is not there (as a deploy uploads it), the job created, then read until it ends. */
  async run(target, job, ctx): Promise<BatchJobOutcome> {
    const requests = predictionRequests(target, job, ctx);
    await uploadModel(ctx, target, job.release, requests.modelId);
    const api = vertexApi(ctx);
    const created = await api('POST', `${apiBase(target)}/${parent(target)}/batchPredictionJobs`, requests.batchPredictionJob);
    // A dry run creates nothing: the read it would make is shown with the id left open.
    const name = created.name ?? `${parent(target)}/batchPredictionJobs/<id>`;
    const deadline = Date.now() + target.batch.timeoutSeconds * 1000;
    let said = '';
    const seen = await ctx.exec.poll<BatchPredictionJobState | 'timeout'>(async () => {
      const state = await api('GET', `${apiBase(target)}/${name}`);
      const stats = state.completionStats;
      const line = `batch prediction job ${job.name}: ${state.state ?? 'unknown'}${stats ? ` (${count(stats.successfulCount)} predicted, ${count(stats.failedCount)} failed)` : ''}`;
      if (state.state && line !== said) ctx.log((said = line));
      if (state.state && ENDED.has(state.state)) return { verdict: state };
      return Date.now() > deadline ? { verdict: 'timeout' } : null;
    }, job.pollIntervalMs ?? POLL_MS);
    if (seen === undefined) return { status: 'planned' };
    const detail = { batchPredictionJob: name, model: requests.modelId, output: job.output };
    if (seen === 'timeout') {
      await api('POST', `${apiBase(target)}/${name}:cancel`, {});
      return {
        status: 'failed',
        message: `batch prediction job ${job.name} did not finish in ${target.batch.timeoutSeconds} s: it was cancelled`,
        logs: '',
        detail,
      };
    }
    const failed = count(seen.completionStats?.failedCount);
    const withOutput = { ...detail, outputDirectory: seen.outputInfo?.gcsOutputDirectory ?? null, failedInstances: failed };
    if (seen.state === 'JOB_STATE_SUCCEEDED' && failed === 0) return { status: 'completed', detail: withOutput };
    const reason = seen.error?.message ?? (failed > 0 ? `${failed} instances failed` : 'no reason given');
    return {
      status: 'failed',
      message: `batch prediction job ${job.name} ended ${(seen.state ?? 'unknown').replace('JOB_STATE_', '').toLowerCase()}: ${reason}`,
      logs: (seen.partialFailures ?? []).map((f) => f.message ?? '').join('\n'),
      detail: withOutput,
    };
  },
};
