/**
 * The image's batch mode: MLOPS_MODE=batch runs one shard (or every shard) of a batch job inside the
 * version's image, with the same reader, writer and workers as `mlops batch` on this machine. These
 * variables are its whole interface: the Kubernetes Job sets them, and so may any scheduler.
 */
import { inputError } from '../errors.js';

export interface BatchModeSettings {
  input: string;
  output: string;
  /** The job's shard count (0: cut by size); with no index, every shard runs here. */
  shards: number;
  format?: 'csv' | 'jsonl' | 'parquet';
  idColumn?: string;
  columns?: string[];
  batchSize?: number;
  workers?: number;
  /** Retry jobs: JOB_COMPLETION_INDEX k runs shard indexes[k], not shard k. */
  indexes?: number[];
  /** The reject gate each shard applies (batch.maxRejectRate). */
  maxRejectRate?: number;
}

export const BATCH_MODE_ENV = {
  MLOPS_MODE: 'batch',
  MLOPS_BATCH_INPUT: 'input',
  MLOPS_BATCH_OUTPUT: 'output',
  MLOPS_BATCH_SHARDS: 'shards',
  MLOPS_BATCH_FORMAT: 'format',
  MLOPS_BATCH_ID_COLUMN: 'idColumn',
  MLOPS_BATCH_COLUMNS: 'columns (comma-separated)',
  MLOPS_BATCH_BATCH_SIZE: 'batchSize',
  MLOPS_BATCH_WORKERS: 'workers',
  MLOPS_BATCH_INDEXES: 'indexes (comma-separated): index k runs shard indexes[k]',
  MLOPS_BATCH_MAX_REJECT_RATE: 'maxRejectRate',
  JOB_COMPLETION_INDEX: 'the shard this pod runs (set by an Indexed Job)',
} as const;

/** The environment that makes the image score shards: what a Job's pod template carries. */
export function batchModeEnv(settings: BatchModeSettings): Record<string, string> {
  const env: Record<string, string> = {
    MLOPS_MODE: 'batch',
    MLOPS_BATCH_INPUT: settings.input,
    MLOPS_BATCH_OUTPUT: settings.output,
  };
  if (settings.shards) env.MLOPS_BATCH_SHARDS = String(settings.shards);
  if (settings.format) env.MLOPS_BATCH_FORMAT = settings.format;
  if (settings.idColumn !== undefined) env.MLOPS_BATCH_ID_COLUMN = settings.idColumn;
  if (settings.columns?.length) env.MLOPS_BATCH_COLUMNS = settings.columns.join(',');
  if (settings.batchSize) env.MLOPS_BATCH_BATCH_SIZE = String(settings.batchSize);
  if (settings.workers) env.MLOPS_BATCH_WORKERS = String(settings.workers);
  if (settings.indexes?.length) env.MLOPS_BATCH_INDEXES = settings.indexes.join(',');
  if (settings.maxRejectRate) env.MLOPS_BATCH_MAX_REJECT_RATE = String(settings.maxRejectRate);
  return env;
}

const count = (name: string, value: string, min: number): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw inputError(`${name}=${value}: expected an integer >= ${min}`);
  return n;
};

/** Reads the batch mode's settings and the shard to run (undefined: every shard). */
export function batchModeFromEnv(env: NodeJS.ProcessEnv): { settings: BatchModeSettings; shard: number | undefined } {
  const need = (name: string) => {
    const value = env[name];
    if (!value) throw inputError(`MLOPS_MODE=batch: ${name} is not set`, `set ${name} (${BATCH_MODE_ENV[name as keyof typeof BATCH_MODE_ENV]})`);
    return value;
  };
  // Unset: the input is cut by its size (batch.shardMegabytes), as on a laptop; a Job sets its completions.
  const shards = env.MLOPS_BATCH_SHARDS === undefined ? 0 : count('MLOPS_BATCH_SHARDS', env.MLOPS_BATCH_SHARDS, 1);
  const format = env.MLOPS_BATCH_FORMAT;
  if (format && format !== 'csv' && format !== 'jsonl' && format !== 'parquet')
    throw inputError(`MLOPS_BATCH_FORMAT=${format}: expected csv, jsonl or parquet`);
  const indexes = env.MLOPS_BATCH_INDEXES ? env.MLOPS_BATCH_INDEXES.split(',').map((v) => count('MLOPS_BATCH_INDEXES', v.trim(), 0)) : undefined;
  const settings: BatchModeSettings = {
    input: need('MLOPS_BATCH_INPUT'),
    output: need('MLOPS_BATCH_OUTPUT'),
    shards,
    format: format as BatchModeSettings['format'],
    idColumn: env.MLOPS_BATCH_ID_COLUMN,
    columns: env.MLOPS_BATCH_COLUMNS ? env.MLOPS_BATCH_COLUMNS.split(',').map((c) => c.trim()) : undefined,
    batchSize: env.MLOPS_BATCH_BATCH_SIZE ? count('MLOPS_BATCH_BATCH_SIZE', env.MLOPS_BATCH_BATCH_SIZE, 1) : undefined,
    workers: env.MLOPS_BATCH_WORKERS ? count('MLOPS_BATCH_WORKERS', env.MLOPS_BATCH_WORKERS, 1) : undefined,
    indexes,
  };
  const index = env.JOB_COMPLETION_INDEX !== undefined ? count('JOB_COMPLETION_INDEX', env.JOB_COMPLETION_INDEX, 0) : undefined;
  let shard = index;
  if (index !== undefined && indexes) {
    if (index >= indexes.length) throw inputError(`JOB_COMPLETION_INDEX=${index}: MLOPS_BATCH_INDEXES lists ${indexes.length} shards`);
    shard = indexes[index];
  }
  if (shard !== undefined && !shards) throw inputError('JOB_COMPLETION_INDEX is set, and MLOPS_BATCH_SHARDS is not', "set the job's shard count");
  if (shard !== undefined && shard >= shards) throw inputError(`shard ${shard}: the job has ${shards} shards (MLOPS_BATCH_SHARDS)`);
  return { settings, shard };
}
