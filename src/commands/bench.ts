import path from 'node:path';
import { planBench, runBench, type BenchReport, type RunBenchOptions } from '../bench/bench.js';
import { perModelPath, selectModels, type SelectedModel } from '../config/models.js';
import { renderBenchHtml, renderBenchHuman, renderBenchMarkdown } from '../bench/report.js';
import { ExitCode, inputError } from '../errors.js';
import { parseGateFlag } from '../metrics/gates.js';
import { appendStepSummary, writeFileAtomic } from '../report/files.js';
import type { CommandContext } from './context.js';
import { targetOptions, type TargetFlags } from './target-flags.js';

export interface BenchFlags extends TargetFlags {
  concurrency?: string;
  rate?: string;
  batch?: string;
  duration?: string;
  requests?: string;
  warmup?: string;
  workers?: string;
  holdout?: string;
  labels?: string;
  shape: string[];
  inputData?: string;
  gate: string[];
  baseline?: string;
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

/** What the flags ask of each benchmark, but its gates and where the model runs: lists and durations parsed, every one checked before anything runs. */
function benchOptions(flags: BenchFlags): Omit<RunBenchOptions, 'cwd' | 'projectDir' | 'config' | 'env' | 'gates' | 'target'> {
  const options = {
    concurrencies: list('concurrency', flags.concurrency, true),
    rates: list('rate', flags.rate, false),
    batchSizes: list('batch', flags.batch, true),
    durationMs: parseDuration('duration', flags.duration),
    requestsPerRun: list('requests', flags.requests, true)?.[0],
    warmupMs: parseDuration('warmup', flags.warmup),
    loadWorkers: list('workers', flags.workers, true)?.[0],
    holdoutFile: flags.holdout,
    labelsFile: flags.labels,
    inputShapes: flags.shape,
    inputData: flags.inputData,
    baselineFile: flags.baseline,
  };
  if (options.durationMs !== undefined && options.requestsPerRun !== undefined)
    throw inputError('--duration and --requests exclude each other', 'pick one way to end a run');
  return options;
}

/** One model's benchmark: its plan (loads, gates, baseline) checked first, then the flags that say where the model runs. */
async function benchModel(planned: Omit<RunBenchOptions, 'target'>, flags: TargetFlags, one: SelectedModel): Promise<BenchReport> {
  const plan = await planBench(planned);
  const { cwd, projectDir, config, env } = planned;
  const target = targetOptions(one.entry ? { ...flags, modelName: one.name } : flags, { cwd, projectDir, config, env, otherwise: 'image' });
  return await runBench({ ...planned, target }, plan);
}

export async function run(flags: BenchFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const options = benchOptions(flags);
  // Several models: each benchmarked in turn with its own shapes and inputs; the verdict is every model's.
  const selected = selectModels(config, flags.modelName);
  const several = selected.length > 1;
  const reports: BenchReport[] = [];
  for (const one of selected) {
    const of = several ? ` ${one.name}` : '';
    const report = await ctx.reporter.step(
      `Benchmarking${of}`,
      (task) =>
        benchModel(
          {
            cwd: ctx.cwd,
            projectDir: baseDir,
            config: one.config,
            env: ctx.env,
            ...options,
            // Read within the step, where the config's gates are checked too: a bad one fails the step.
            gates: flags.gate.map(parseGateFlag),
            onRun: (label) => task.update(`Benchmarking${of}: ${label}`),
          },
          flags,
          one,
        ),
      (r) => `Benchmarked${of} ${r.runs.length} run${r.runs.length === 1 ? '' : 's'} in ${r.seconds} s`,
    );
    if (flags.html) await writeFileAtomic(path.resolve(ctx.cwd, perModelPath(flags.html, one.name, several)), renderBenchHtml(report));
    reports.push(report);
  }
  const markdown = reports.map(renderBenchMarkdown).join('\n');
  if (flags.markdown) await writeFileAtomic(path.resolve(ctx.cwd, flags.markdown), markdown);
  await appendStepSummary(ctx.env, markdown);
  const passed = reports.every((r) => r.passed);
  // tag and push read the latest report of a build from here (several models: no runs, so no bench labels on the tag).
  const document = several ? { passed, target: reports[0].target, runs: [], models: reports } : reports[0];
  await writeFileAtomic(path.join(baseDir, '.mlops', 'last-bench.json'), JSON.stringify(document, null, 2) + '\n');
  if (several) ctx.reporter.result(document, (_d, s) => reports.map((r) => `${s.bold(r.model)}\n${renderBenchHuman(r, s)}`).join('\n\n'));
  else ctx.reporter.result(reports[0], renderBenchHuman);
  return passed ? ExitCode.ok : ExitCode.gateFailed;
}
