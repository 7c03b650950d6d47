import type { ChalkInstance } from 'chalk';
import path from 'node:path';
import { ExitCode, inputError } from '../errors.js';
import { runInImage } from '../batch/in-image.js';
import { runBatch, type BatchProgress, type BatchReport, type RunBatchOptions } from '../batch/run-batch.js';
import type { Config } from '../config/defaults.js';
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

const thousands = (n: number) => Math.round(n).toLocaleString('en-US');

export function progressLine(p: BatchProgress): string {
  const rate = p.seconds > 0 ? p.records / p.seconds : 0;
  const eta = rate > 0 && p.total > p.records ? ` ETA ${Math.ceil((p.total - p.records) / rate)} s` : '';
  const percent = p.total > 0 ? ` (${((100 * p.records) / p.total).toFixed(1)}%)` : '';
  return `${thousands(p.records)} of ${thousands(p.total)} rows${percent}, ${thousands(rate)} rows/s,${eta} shards ${p.shardsDone}/${p.shards}`;
}

function renderHuman(r: BatchReport, s: ChalkInstance): string {
  const lines = [
    `${r.passed ? s.green('PASS') : s.red('FAIL')} ${r.verdict}`,
    `  input     ${r.input}`,
    `  output    ${r.output}${r.complete ? '' : ' (not joined yet)'}`,
    `  rows      ${thousands(r.records)} read, ${thousands(r.scored)} scored, ${thousands(r.rejected)} rejected${r.rejects && r.rejected > 0 ? ` (${r.rejects})` : ''}`,
    `  shards    ${r.shards.done} of ${r.shards.total} done: ${r.shards.ran} run now, ${r.shards.skipped} done before`,
    `  manifest  ${r.manifest}`,
  ];
  if (r.rowsPerSecond !== null)
    lines.push(`  speed     ${thousands(r.rowsPerSecond)} rows/s on ${r.workers} worker${r.workers === 1 ? '' : 's'} (${r.seconds.toFixed(1)} s)`);
  return lines.join('\n');
}

export async function run(flags: BatchFlags, ctx: CommandContext, version: string | undefined): Promise<number> {
  const { config, baseDir } = await ctx.config();
  if (flags.target || flags.dryRun || flags.plan) {
    const { runTargetBatch } = await import('./batch-target.js');
    return runTargetBatch(flags, ctx, config, baseDir, version);
  }
  if (version) throw inputError(`a version (${version}) goes with --target`, 'on this machine the model is --model (default: model.path)');
  const options = batchOptions(flags, config, baseDir, ctx);
  if (flags.image && flags.model) throw inputError('--image and --model name two models', 'score with one: the image (as released) or the model file');
  const task = ctx.reporter.task(`Scoring ${options.input}`);
  // A terminal redraws the line often; CI gets a plain line every 10 s.
  let shown = 0;
  const every = ctx.reporter.interactive ? 200 : 10_000;
  let report: BatchReport;
  try {
    const score = flags.image ? (o: RunBatchOptions) => runInImage(flags.image!, o) : runBatch;
    report = await score({
      ...options,
      log: (line) => ctx.reporter.info(line),
      onProgress: (p) => {
        const now = performance.now();
        if (now - shown < every) return;
        shown = now;
        if (ctx.reporter.interactive) task.progress(progressLine(p));
        else task.update(progressLine(p));
      },
    });
  } catch (error) {
    task.fail();
    throw error;
  }
  if (report.passed) task.succeed(`Scored ${thousands(report.scored)} rows in ${report.seconds.toFixed(1)} s`);
  else task.fail(report.verdict);
  ctx.reporter.result(report, renderHuman);
  return report.passed ? ExitCode.ok : ExitCode.gateFailed;
}
