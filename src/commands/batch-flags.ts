import path from 'node:path';
import type { RunBatchOptions } from '../batch/run-batch.js';
import type { Config } from '../config/defaults.js';
import { inputError } from '../errors.js';
import type { CommandContext } from './context.js';

export interface BatchFlags {
  input?: string;
  output?: string;
  model?: string;
  image?: string;
  format?: string;
  idColumn?: string;
  columns?: string;
  batchSize?: number;
  workers?: number;
  limit?: number;
  shard?: string;
  shards?: number;
  maxRejectRate?: number;
  target?: string;
  dryRun?: boolean;
  plan?: string;
}

const count = (value: number | undefined, flag: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined => {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < min || value > max) throw inputError(`${flag} ${value}: expected an integer from ${min} to ${max}`);
  return value;
};

/** --shard i/n: shard i (0-based) of n. */
export function parseShard(value: string): { index: number; count: number } {
  const match = /^(\d+)\/(\d+)$/.exec(value.trim());
  const index = Number(match?.[1]);
  const total = Number(match?.[2]);
  if (!match || total < 1 || index >= total) throw inputError(`--shard ${value}: expected i/n with 0 <= i < n, like 0/4`, 'shards are numbered from 0');
  return { index, count: total };
}

/** What the flags ask, over the config's batch section: each checked before any file is read. */
export function batchOptions(flags: BatchFlags, config: Config, projectDir: string, ctx: CommandContext): Omit<RunBatchOptions, 'onProgress' | 'log'> {
  const settings = config.batch;
  const fromConfig = (value: string) => (value && !/^(s3|gs|az):\/\//.test(value) ? path.relative(ctx.cwd, path.resolve(projectDir, value)) || '.' : value);
  const input = flags.input ?? fromConfig(settings.input);
  const output = flags.output ?? fromConfig(settings.output);
  if (!input) throw inputError('no input given', 'pass --input <file|folder|glob|URI> or set batch.input');
  if (!output) throw inputError('no output given', 'pass --output <file|folder|URI> or set batch.output');
  const format = flags.format ?? (settings.format || undefined);
  if (format !== undefined && format !== 'csv' && format !== 'jsonl' && format !== 'parquet')
    throw inputError(`--format ${format}: expected csv, jsonl or parquet`);
  const rate = flags.maxRejectRate ?? settings.maxRejectRate;
  if (!(rate >= 0 && rate <= 1)) throw inputError(`--max-reject-rate ${flags.maxRejectRate}: expected a fraction between 0 and 1`);
  const shard = flags.shard ? parseShard(flags.shard) : undefined;
  const modelPath = flags.model ? path.resolve(ctx.cwd, flags.model) : path.resolve(projectDir, config.model.path);
  return {
    cwd: ctx.cwd,
    env: ctx.env,
    model: { path: modelPath, preprocess: config.model.preprocess, postprocess: config.model.postprocess },
    input,
    output,
    format,
    idColumn: flags.idColumn ?? settings.idColumn,
    columns:
      flags.columns !== undefined
        ? flags.columns
            .split(',')
            .map((c) => c.trim())
            .filter(Boolean)
        : settings.columns,
    batchSize: count(flags.batchSize, '--batch-size', 1, 65_536) ?? settings.batchSize,
    workers: count(flags.workers, '--workers', 0, 1024) ?? settings.workers,
    shardMegabytes: settings.shardMegabytes,
    maxRejectRate: rate,
    limit: count(flags.limit, '--limit', 1),
    ...(shard ? { shardCount: shard.count, only: [shard.index] } : {}),
  };
}
