import type { ChalkInstance } from 'chalk';
import path from 'node:path';
import { byteReader, listInput } from '../batch/input.js';
import { inputWeight, weighInput } from '../batch/plan.js';
import { runRemoteBatch, type RemoteBatchResult } from '../batch/remote.js';
import { gatherBatch, type BatchReport } from '../batch/run-batch.js';
import type { Config } from '../config/defaults.js';
import { ExitCode, MlopsError, inputError } from '../errors.js';
import { objectStoreFor } from '../storage/index.js';
import { batchOptions, type BatchFlags } from './batch-flags.js';
import type { CommandContext } from './context.js';

interface TargetBatchReport extends RemoteBatchResult {
  /** The parts the Job's pods wrote, joined (Kubernetes; SageMaker and Vertex write their own outputs). */
  gathered: BatchReport | null;
}

const EXTENSIONS: Record<string, 'csv' | 'jsonl' | 'parquet'> = { '.csv': 'csv', '.jsonl': 'jsonl', '.ndjson': 'jsonl', '.parquet': 'parquet' };

/** The job's shard count: --shards, else the input's size in shards of batch.shardMegabytes (the input is listed for it). */
async function shardCount(flags: BatchFlags, input: string, megabytes: number, ctx: CommandContext): Promise<number> {
  if (flags.shards !== undefined) {
    if (!Number.isInteger(flags.shards) || flags.shards < 1) throw inputError(`--shards ${flags.shards}: expected an integer >= 1`);
    return flags.shards;
  }
  const storeFor = (uri: string) => objectStoreFor(uri, ctx.env);
  const files = await weighInput(await listInput(input, ctx.cwd, storeFor), byteReader(storeFor));
  const total = inputWeight(files);
  return Math.max(1, Math.ceil(total / (megabytes * 2 ** 20)));
}

function renderHuman(r: TargetBatchReport, s: ChalkInstance): string {
  const lines = [`target   ${r.target} (${r.type})`, `job      ${r.job}`, `version  ${r.version} (${r.image})`];
  if (r.outcome.status === 'planned') lines.push(r.files.length > 0 ? `written  ${r.files.join(', ')}` : `${s.yellow('planned')}: nothing was run`);
  if (r.outcome.status === 'completed') lines.push(`${s.green('completed')}`);
  if (r.gathered) lines.push(`output   ${r.gathered.output}: ${r.gathered.verdict}`);
  return lines.join('\n');
}

/** `mlops batch --target NAME`: the job on the target's platform. */
export async function runTargetBatch(flags: BatchFlags, ctx: CommandContext, config: Config, projectDir: string, version: string | undefined): Promise<number> {
  if (!flags.target) throw inputError(`${flags.dryRun ? '--dry-run' : '--plan'} goes with --target`, 'name the target whose platform runs the job');
  if (flags.shard) throw inputError('--shard goes without --target', "a target's job runs every shard; --shard i/n runs one here");
  const options = batchOptions(flags, config, projectDir, ctx);
  const extension = path.extname(options.output.replace(/\/+$/, '')).toLowerCase();
  const format = options.format ?? EXTENSIONS[extension] ?? EXTENSIONS[path.extname(options.input).toLowerCase()] ?? 'jsonl';
  const shards = await shardCount(flags, options.input, options.shardMegabytes, ctx);
  const result = await runRemoteBatch({
    cwd: ctx.cwd,
    projectDir,
    config,
    env: ctx.env,
    target: flags.target,
    version,
    input: options.input,
    output: options.output,
    shards,
    format,
    idColumn: options.idColumn,
    columns: options.columns,
    batchSize: flags.batchSize,
    workers: flags.workers,
    maxRejectRate: options.maxRejectRate,
    dryRun: Boolean(flags.dryRun),
    planDir: flags.plan ? path.resolve(ctx.cwd, flags.plan) : undefined,
    log: (line) => ctx.reporter.info(line),
  });
  if (result.outcome.status === 'failed') {
    throw new MlopsError(`the ${result.type} batch job ${result.job} failed: ${result.outcome.message}`, {
      exitCode: ExitCode.environment,
      details: result.outcome.logs || undefined,
      hint: "the reason is the platform's own; fix it and run again",
    });
  }
  let gathered: BatchReport | null = null;
  if (result.outcome.status === 'completed' && result.type === 'kubernetes') {
    gathered = await gatherBatch({ cwd: ctx.cwd, env: ctx.env, input: options.input, output: options.output, maxRejectRate: options.maxRejectRate });
  }
  ctx.reporter.result({ ...result, gathered } satisfies TargetBatchReport, renderHuman);
  return gathered && !gathered.passed ? ExitCode.gateFailed : ExitCode.ok;
}
