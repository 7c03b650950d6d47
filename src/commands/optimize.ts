import type { ChalkInstance } from 'chalk';
import path from 'node:path';
import { ExitCode, inputError } from '../errors.js';
import { parseGateFlag } from '../metrics/gates.js';
import { runOptimize, type OptimizeReport, type RunOptimizeOptions } from '../optimize/optimize.js';
import { appendStepSummary, markdownTable, writeFileAtomic } from '../report/files.js';
import { renderTable } from '../ui/reporter.js';
import type { Config } from '../config/defaults.js';
import type { CommandContext } from './context.js';

export interface OptimizeFlags {
  model?: string;
  output?: string;
  quantize?: string;
  calibration?: string;
  /** Parsed by commander: NaN when not a number. */
  calibrationRows?: number;
  method?: string;
  perChannel?: boolean;
  exclude: string[];
  level?: string;
  holdout?: string;
  gate: string[];
  keep?: boolean;
  markdown?: string;
}

/** A flag that names one of a few choices; undefined (or '') leaves it to the config. */
function choice<T extends string>(value: string | undefined, allowed: readonly T[], flag: string): T | undefined {
  if (value === undefined || value === '') return undefined;
  const chosen = allowed.find((a) => a === value);
  if (chosen === undefined) throw inputError(`${flag} ${value}: expected ${allowed.join(', ')}`);
  return chosen;
}

/** What the flags ask of the optimization, over the config: files, choices, counts and gates, checked before any work. */
function optimizeOptions(
  flags: OptimizeFlags,
  config: Config,
  projectDir: string,
  cwd: string,
): Omit<RunOptimizeOptions, 'cwd' | 'projectDir' | 'config' | 'env'> {
  const settings = config.optimize;
  const sourceModel = flags.model ? path.resolve(cwd, flags.model) : path.resolve(projectDir, config.model.path);
  const outputFile = flags.output ? path.resolve(cwd, flags.output) : settings.output ? path.resolve(projectDir, settings.output) : '';
  if (!outputFile) throw inputError('no output file', 'pass --output model.int8.onnx, or set optimize.output');
  if (outputFile === sourceModel)
    throw inputError(`--output ${flags.output ?? settings.output} is the source model`, 'write the optimized model to another file');
  const options = {
    sourceModel,
    outputFile,
    quantize: choice(flags.quantize, ['none', 'dynamic', 'static'] as const, '--quantize'),
    level: choice(flags.level, ['basic', 'extended', 'all'] as const, '--level'),
    calibrationMethod: choice(flags.method, ['minmax', 'percentile'] as const, '--method'),
    calibrationFile: flags.calibration,
    calibrationRows: flags.calibrationRows,
    perChannel: flags.perChannel,
    exclude: flags.exclude,
    holdoutFile: flags.holdout,
    keepOnFailure: Boolean(flags.keep),
  };
  const rows = options.calibrationRows;
  if (rows !== undefined && (!Number.isInteger(rows) || rows < 1)) throw inputError(`--calibration-rows ${rows}: expected a row count >= 1`);
  return { ...options, gates: flags.gate.map(parseGateFlag) };
}

const fmt = (v: number | null | undefined, digits = 4) => (v === null || v === undefined ? 'n/a' : Number.isInteger(v) ? String(v) : v.toFixed(digits));
const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
const gateRow = (g: OptimizeReport['gates'][number], pass: string, fail: string) => [
  `${g.metric}${g.implicit ? ' (default)' : ''}`,
  `${g.op} ${g.threshold}`,
  fmt(g.value),
  g.passed ? pass : fail,
];

function tables(r: OptimizeReport): { metrics: string[][]; sides: string[][] } {
  return {
    metrics: r.comparison.map((c) => [c.metric, fmt(c.before), fmt(c.after), fmt(c.drop)]),
    sides: [
      ['size', kb(r.source.sizeBytes), kb(r.optimized.sizeBytes), fmt(r.values.size_ratio, 3)],
      ['p50 ms', fmt(r.source.latencyMs?.p50, 3), fmt(r.optimized.latencyMs?.p50, 3), fmt(r.values.speedup, 2) + 'x faster'],
      ['p99 ms', fmt(r.source.latencyMs?.p99, 3), fmt(r.optimized.latencyMs?.p99, 3), ''],
      ['requests/s', fmt(r.source.throughputRps, 0), fmt(r.optimized.throughputRps, 0), fmt(r.values.throughput_ratio, 2) + 'x'],
    ],
  };
}

function what(r: OptimizeReport): string {
  const done =
    r.quantize === 'none'
      ? `graph optimization (level ${r.level})`
      : `${r.quantize} INT8 quantization${r.calibration ? ` calibrated on ${r.calibration.rows} rows of ${r.calibration.file} (${r.calibration.method})` : ''}, then level ${r.level}`;
  const ops =
    r.quantized.length > 0
      ? `; quantized ${r.quantized.length} node${r.quantized.length === 1 ? '' : 's'} (${[...new Set(r.quantized.map((q) => q.op))].join(', ')})`
      : '';
  return done + ops;
}

function agreementLine(r: OptimizeReport): string {
  const a = r.agreement;
  if (!a) return 'not measured (no holdout)';
  return `${a.rows} rows: max |difference| ${a.maxAbsDiff.toExponential(2)}, mean ${a.meanAbsDiff.toExponential(2)}${a.classChangeRate !== null ? `, predicted class changed on ${(a.classChangeRate * 100).toFixed(2)}% of rows` : ''}`;
}

function renderHuman(r: OptimizeReport, s: ChalkInstance): string {
  const t = tables(r);
  return [
    `${s.bold('source')}    ${r.source.file} (${r.source.sha256.slice(0, 12)})`,
    `${s.bold('optimized')} ${r.output ?? `${r.optimized.file} (not written: a gate failed; --keep writes it anyway)`}`,
    `${s.bold('done')}      ${what(r)}`,
    ...r.leftInFloat.map((l) => `${s.yellow('left in float')} ${l.node} (${l.op}): ${l.reason}`),
    '',
    ...(t.metrics.length > 0 ? [renderTable(['metric', 'before', 'after', 'drop'], t.metrics), ''] : []),
    `${s.bold('agreement')} ${agreementLine(r)}`,
    '',
    renderTable(['', 'source', 'optimized', 'ratio'], t.sides),
    '',
    renderTable(
      ['gate', 'threshold', 'value', 'result'],
      r.gates.map((g) => gateRow(g, s.green('pass'), s.red('FAIL'))),
    ),
    '',
    r.passed ? s.green.bold('PASSED') : s.red.bold('FAILED'),
  ].join('\n');
}

export function renderMarkdown(r: OptimizeReport): string {
  const t = tables(r);
  return [
    `## mlops optimize: ${r.passed ? 'passed' : 'FAILED'}`,
    '',
    `\`${r.source.file}\` → \`${r.optimized.file}\`${r.output ? '' : ' (not written)'}: ${what(r)}.`,
    '',
    markdownTable(
      ['gate', 'threshold', 'value', 'result'],
      r.gates.map((g) => gateRow(g, 'pass', '**FAIL**')),
    ),
    '',
    ...(t.metrics.length > 0 ? [markdownTable(['metric', 'before', 'after', 'drop'], t.metrics), ''] : []),
    `Agreement: ${agreementLine(r)}.`,
    '',
    markdownTable(['', 'source', 'optimized', 'ratio'], t.sides),
    '',
    ...(r.leftInFloat.length > 0 ? ['Left in float:', '', ...r.leftInFloat.map((l) => `- \`${l.node}\` (${l.op}): ${l.reason}`), ''] : []),
  ].join('\n');
}

export async function run(flags: OptimizeFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const task = ctx.reporter.task('Optimizing the model');
  let report: OptimizeReport;
  try {
    // A bad flag fails the task, as any other check of the optimization does.
    const options = optimizeOptions(flags, config, baseDir, ctx.cwd);
    report = await runOptimize({ cwd: ctx.cwd, projectDir: baseDir, config, env: ctx.env, ...options, onStep: (line) => task.update(line) });
  } catch (error) {
    task.fail();
    throw error;
  }
  if (report.passed) task.succeed(`Optimized in ${report.seconds} s`);
  else task.fail(`A gate failed (${report.seconds} s)`);
  const markdown = renderMarkdown(report);
  if (flags.markdown) await writeFileAtomic(path.resolve(ctx.cwd, flags.markdown), markdown);
  await appendStepSummary(ctx.env, markdown);
  ctx.reporter.result(report, renderHuman);
  return report.passed ? ExitCode.ok : ExitCode.gateFailed;
}
