import type { ChalkInstance } from 'chalk';
import { ExitCode, inputError } from '../errors.js';
import { runInImage } from '../batch/in-image.js';
import { runBatch, type BatchProgress, type BatchReport, type RunBatchOptions } from '../batch/run-batch.js';
import { batchOptions, type BatchFlags } from './batch-flags.js';
import type { CommandContext } from './context.js';

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
