/**
 * `mlops batch --target`: a batch job on a target's platform (a Kubernetes Indexed Job, a SageMaker Batch
 * Transform job, a Vertex AI batch prediction job), run on the version a deploy would resolve.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config, TargetConfig } from '../config/defaults.js';
import { inputError } from '../errors.js';
import { defaultModelName } from '../model/inspect.js';
import { isObjectUri } from '../storage/object-store.js';
import { defaultAzureSeam } from '../targets/azure.js';
import { resolveRelease } from '../targets/deploy.js';
import { createExecSeam, type PlannedStep, type Runner } from '../targets/exec.js';
import { selectTarget } from '../targets/index.js';
import { configuredSampleInputs } from '../targets/smoke.js';
import type { DeployContext, Release } from '../targets/types.js';
import { batchModeEnv } from './image-mode.js';
import type { BatchJob, BatchJobOutcome } from './platform.js';
import { BATCH_TYPES, batchPlatform } from './platforms/index.js';

export interface RemoteBatchOptions {
  cwd: string;
  projectDir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  target?: string;
  /** The pushed version to run; remote targets need one, as deploys do. */
  version?: string;
  /** s3://, gs:// or az:// URIs: the platform reads and writes them itself. */
  input: string;
  output: string;
  shards: number;
  format: BatchJob['format'];
  idColumn?: string;
  columns?: string[];
  batchSize?: number;
  workers?: number;
  /** The reject gate each shard applies. */
  maxRejectRate?: number;
  dryRun: boolean;
  /** --plan <dir>: write the job's declarative form here and run nothing. */
  planDir?: string;
  log: (line: string) => void;
  /** The exec seam's runner; tests pass one that answers as kubectl, aws, gcloud or curl would. */
  runner?: Runner;
  /** Tests pass the release instead of a registry to resolve it from. */
  resolve?: (version: string | undefined) => Promise<Release>;
  /** How often the platform is asked how the job goes; undefined: its own pace. */
  pollIntervalMs?: number;
}

export interface RemoteBatchResult {
  target: string;
  type: TargetConfig['type'];
  job: string;
  version: string;
  image: string;
  outcome: BatchJobOutcome;
  /** --plan: the files written. */
  files: string[];
  /** Every command run, or that would run under --dry-run. */
  plan: PlannedStep[];
}

/** A job name unique per run: the model's name as a DNS label (a letter first) and six random characters. */
export function jobName(model: string): string {
  const slug = model
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  const base = (/^[a-z]/.test(slug) ? slug : `batch-${slug}`).slice(0, 40).replace(/-+$/, '');
  return `${base}-${randomBytes(4).toString('hex').slice(0, 6)}`;
}

function context(options: RemoteBatchOptions, name: string): DeployContext {
  return {
    targetName: name,
    config: options.config,
    projectDir: options.projectDir,
    env: options.env,
    exec: createExecSeam({ dryRun: options.dryRun, runner: options.runner, onCommand: (line) => options.log(`$ ${line}`) }),
    azure: defaultAzureSeam,
    dryRun: options.dryRun,
    log: options.log,
    sampleInputs: configuredSampleInputs(options.config, options.projectDir),
    // A batch job serves nothing to smoke-test: its outputs are its check.
    smoke: async () => undefined,
    checkpoint: () => undefined,
  };
}

/** Selects the target and its platform, resolves the version, and plans or runs the job. */
export async function runRemoteBatch(options: RemoteBatchOptions): Promise<RemoteBatchResult> {
  const { name, target, adapter } = selectTarget(options.config, options.target);
  const platform = batchPlatform(target.type);
  if (!platform) {
    throw inputError(
      `target '${name}' (${target.type}) has no batch platform`,
      `batch jobs run on ${BATCH_TYPES.join(', ')} targets; or run the batch on this machine without --target`,
    );
  }
  for (const [flag, uri] of [
    ['input', options.input],
    ['output', options.output],
  ] as const) {
    if (!isObjectUri(uri)) {
      throw inputError(
        `--${flag} ${uri}: a ${target.type} target reads and writes object storage, not this machine's files`,
        'give an s3://, gs:// or az:// URI (upload the input first), or run the batch on this machine without --target',
      );
    }
  }
  if (!Number.isInteger(options.shards) || options.shards < 1) throw inputError(`--shards ${options.shards}: expected an integer >= 1`);
  const release = options.resolve
    ? await options.resolve(options.version)
    : await resolveRelease({ ...options, target: name, outputDir: undefined }, adapter, options.version);
  const model = release.modelName || options.config.model.name || defaultModelName(path.resolve(options.projectDir, options.config.model.path));
  const job: BatchJob = {
    name: jobName(model),
    release,
    input: options.input,
    output: options.output,
    shards: options.shards,
    format: options.format,
    env: batchModeEnv({
      input: options.input,
      output: options.output,
      shards: options.shards,
      format: options.format,
      idColumn: options.idColumn,
      columns: options.columns,
      batchSize: options.batchSize,
      workers: options.workers,
      maxRejectRate: options.maxRejectRate,
    }),
    ...(options.pollIntervalMs !== undefined ? { pollIntervalMs: options.pollIntervalMs } : {}),
  };
  const ctx = context(options, name);
  const result = { target: name, type: target.type, job: job.name, version: release.version, image: release.image };
  if (options.planDir) {
    const planned = platform.plan(target, job, ctx);
    await mkdir(options.planDir, { recursive: true });
    const files: string[] = [];
    for (const file of planned) {
      const written = path.join(options.planDir, file.name);
      await writeFile(written, file.content);
      files.push(written);
    }
    return { ...result, outcome: { status: 'planned' }, files, plan: ctx.exec.steps };
  }
  const outcome = await platform.run(target, job, ctx);
  return { ...result, outcome, files: [], plan: ctx.exec.steps };
}
