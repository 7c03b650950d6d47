import path from 'node:path';
import { runBench, type BenchFlags, type BenchReport } from '../bench/bench.js';
import { perModelPath, selectModels } from '../config/models.js';
import { renderBenchHtml, renderBenchHuman, renderBenchMarkdown } from '../bench/report.js';
import { ExitCode, inputError } from '../errors.js';
import { appendStepSummary, writeFileAtomic } from '../report/files.js';
import type { CommandContext } from './context.js';

interface RawFlags extends Omit<BenchFlags, 'concurrency' | 'rate' | 'batch' | 'durationMs' | 'requests' | 'warmupMs' | 'workers'> {
  concurrency?: string;
  rate?: string;
  batch?: string;
  duration?: string;
  requests?: string;
  warmup?: string;
  workers?: string;
  markdown?: string;
  html?: string;
}

function list(flag: string, value: string | undefined, integer: boolean): number[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',').map((v) => Number(v.trim()));
  if (items.length === 0 || items.some((n) => !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n)))) {
    throw inputError(
      `--${flag} ${value}: expected a comma-separated list of ${integer ? 'whole numbers' : 'numbers'} above 0, like 1,8,32`,
      'see `mlops bench --help`',
    );
  }
  return items;
}

/** "10s", "500ms", "2m" or plain seconds, in milliseconds. */
export function parseDuration(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/.exec(value.trim());
  if (!match) throw inputError(`--${flag} ${value}: expected a duration like 10s, 500ms or 2m`, 'a number and ms, s or m (seconds without a unit)');
  const n = Number(match[1]);
  return match[2] === 'ms' ? n : match[2] === 'm' ? n * 60_000 : n * 1000;
}

export async function run(raw: RawFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const flags: BenchFlags = {
    ...raw,
    concurrency: list('concurrency', raw.concurrency, true),
    rate: list('rate', raw.rate, false),
    batch: list('batch', raw.batch, true),
    durationMs: parseDuration('duration', raw.duration),
    requests: list('requests', raw.requests, true)?.[0],
    warmupMs: parseDuration('warmup', raw.warmup),
    workers: list('workers', raw.workers, true)?.[0],
  };
  if (flags.durationMs !== undefined && flags.requests !== undefined)
    throw inputError('--duration and --requests exclude each other', 'pick one way to end a run');
  // Several models: each benchmarked in turn with its own shapes and inputs; the verdict is every model's.
  const selected = selectModels(config, raw.modelName);
  const several = selected.length > 1;
  const reports: BenchReport[] = [];
  for (const one of selected) {
    const of = several ? ` ${one.name}` : '';
    const report = await ctx.reporter.step(
      `Benchmarking${of}`,
      (task) =>
        runBench({
          cwd: ctx.cwd,
          projectDir: baseDir,
          config: one.config,
          env: ctx.env,
          flags: one.entry ? { ...flags, modelName: one.name } : flags,
          onRun: (label) => task.update(`Benchmarking${of}: ${label}`),
        }),
      (r) => `Benchmarked${of} ${r.runs.length} run${r.runs.length === 1 ? '' : 's'} in ${r.seconds} s`,
    );
    if (raw.html) await writeFileAtomic(path.resolve(ctx.cwd, perModelPath(raw.html, one.name, several)), renderBenchHtml(report));
    reports.push(report);
  }
  const markdown = reports.map(renderBenchMarkdown).join('\n');
  if (raw.markdown) await writeFileAtomic(path.resolve(ctx.cwd, raw.markdown), markdown);
  await appendStepSummary(ctx.env, markdown);
  const passed = reports.every((r) => r.passed);
  // tag and push read the latest report of a build from here (several models: no runs, so no bench labels on the tag).
  const document = several ? { passed, target: reports[0].target, runs: [], models: reports } : reports[0];
  await writeFileAtomic(path.join(baseDir, '.mlops', 'last-bench.json'), JSON.stringify(document, null, 2) + '\n');
  if (several) ctx.reporter.result(document, (_d, s) => reports.map((r) => `${s.bold(r.model)}\n${renderBenchHuman(r, s)}`).join('\n\n'));
  else ctx.reporter.result(reports[0], renderBenchHuman);
  return passed ? ExitCode.ok : ExitCode.gateFailed;
}
