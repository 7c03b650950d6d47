import { CLASSIFICATION_METRICS, REGRESSION_METRICS } from '../metrics/names.js';
import type { ChalkInstance } from 'chalk';
import path from 'node:path';
import { ExitCode, inputError } from '../errors.js';
import { describeGate, readBaseline, runQualityTest, type RunTestOptions, type TestReport } from '../evaluate/quality-test.js';
import { parseGateFlag } from '../metrics/gates.js';
import { appendStepSummary, junitXml, markdownTable, writeFileAtomic } from '../report/files.js';
import { renderTable } from '../ui/reporter.js';
import type { CommandContext } from './context.js';
import { selectModels, type SelectedModel } from '../config/models.js';
import { targetOptions, type TargetFlags } from './target-flags.js';

export interface TestFlags extends TargetFlags {
  holdout?: string;
  labels?: string;
  gate: string[];
  baseline?: string;
  junit?: string;
  markdown?: string;
}

/**
 * What the flags ask of one model's test, over its config: the holdout (--holdout, else test.holdout), the gates,
 * the baseline, then where the model runs; each checked in that order, before a container starts.
 */
async function testOptions(flags: TestFlags, one: SelectedModel, ctx: CommandContext, projectDir: string): Promise<Omit<RunTestOptions, 'onProgress'>> {
  const { config } = one;
  const holdoutFile =
    flags.holdout ??
    (config.test.holdout && !path.isAbsolute(config.test.holdout)
      ? path.relative(ctx.cwd, path.resolve(projectDir, config.test.holdout))
      : config.test.holdout || undefined);
  if (!holdoutFile) throw inputError('no holdout given', 'pass --holdout <file> or set test.holdout in config');
  // test.labelsFile goes with test.holdout; a holdout named on the command line takes its --labels there too.
  const labelsFromConfig = !flags.holdout && config.test.labelsFile ? path.relative(ctx.cwd, path.resolve(projectDir, config.test.labelsFile)) : undefined;
  const gates = flags.gate.map(parseGateFlag);
  const baseline = flags.baseline ? await readBaseline(ctx.cwd, flags.baseline) : undefined;
  const target = targetOptions(one.entry ? { ...flags, modelName: one.name } : flags, { cwd: ctx.cwd, projectDir, config, env: ctx.env, otherwise: 'image' });
  return { cwd: ctx.cwd, projectDir, config, env: ctx.env, target, holdoutFile, labelsFile: flags.labels ?? labelsFromConfig, gates, baseline };
}

// Every metric but mape, the fraction mape_percent shows as a percentage.
const HEADLINE = new Set<string>([...CLASSIFICATION_METRICS, ...REGRESSION_METRICS].filter((m) => m !== 'mape'));
const fmt = (v: number | null | undefined) => (v === null || v === undefined ? 'n/a' : Number.isInteger(v) ? String(v) : v.toFixed(4));

function headlineMetrics(report: TestReport): [string, number][] {
  return Object.entries(report.metrics).filter(([k, v]) => HEADLINE.has(k) && typeof v === 'number') as [string, number][];
}

function parityLine(report: TestReport): string {
  const p = report.parity;
  if (!p) return 'not checked';
  const verdict = `${p.rows} rows, max |difference| ${p.maxAbsDiff.toExponential(2)} (tolerance ${p.tolerance})`;
  return p.passed
    ? verdict
    : `${verdict}; worst at ${p.worst?.row}, output '${p.worst?.output}'[${p.worst?.index}]: server ${p.worst?.server}, in-process ${p.worst?.local}`;
}

function renderHuman(r: TestReport, s: ChalkInstance): string {
  const lines = [
    `${s.bold('model')}   ${r.model}${r.image ? ` (${r.image})` : ''}, ${r.mode} mode`,
    `${s.bold('holdout')} ${r.holdout.file}: ${r.rows} rows, ${r.task}, output '${r.output}' (${r.outputKind}), ${r.rowsPerSecond} rows/s`,
    '',
    renderTable(
      ['metric', 'value'],
      headlineMetrics(r).map(([k, v]) => [k, fmt(v)]),
    ),
  ];
  if (r.gates.length > 0) {
    lines.push(
      '',
      renderTable(
        ['gate', 'threshold', 'value', 'result'],
        r.gates.map((g) => [
          g.metric,
          g.op === 'max_drop' ? `drop <= ${g.threshold} from ${fmt(g.baseline)}` : `${g.op} ${g.threshold}`,
          fmt(g.value),
          g.passed ? s.green('pass') : s.red('FAIL'),
        ]),
      ),
    );
  }
  lines.push('', `${s.bold('parity')}  ${r.parity ? (r.parity.passed ? s.green('pass') : s.red('FAIL')) : ''} ${parityLine(r)}`.replace(/ {2,}/g, ' '));
  lines.push('', r.passed ? s.green.bold('PASSED') : s.red.bold('FAILED'));
  return lines.join('\n');
}

export function renderMarkdown(r: TestReport): string {
  return [
    `## mlops test: ${r.passed ? 'passed' : 'FAILED'}`,
    '',
    `Model \`${r.model}\`${r.image ? ` (image \`${r.image}\`)` : ''}, ${r.mode} mode; holdout \`${r.holdout.file}\`, ${r.rows} rows, ${r.task}.`,
    '',
    r.gates.length > 0
      ? markdownTable(
          ['gate', 'threshold', 'value', 'result'],
          r.gates.map((g) => [
            g.metric,
            g.op === 'max_drop' ? `drop ≤ ${g.threshold}` : `${g.op} ${g.threshold}`,
            fmt(g.value),
            g.passed ? 'pass' : '**FAIL**',
          ]),
        )
      : '_No gates configured._',
    '',
    markdownTable(
      ['metric', 'value'],
      headlineMetrics(r).map(([k, v]) => [k, fmt(v)]),
    ),
    '',
    `Parity: ${r.parity ? `${r.parity.passed ? 'pass' : '**FAIL**'}, ${parityLine(r)}` : 'not checked'}.`,
    '',
  ].join('\n');
}

export async function run(flags: TestFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  // Several models: each judged with its own holdout and gates, in turn; the verdict is every model's.
  const selected = selectModels(config, flags.modelName);
  const reports: TestReport[] = [];
  for (const one of selected) {
    const of = selected.length > 1 ? ` of ${one.name}` : '';
    reports.push(
      await ctx.reporter.step(
        `Scoring the holdout${of}`,
        async (task) =>
          runQualityTest({
            ...(await testOptions(flags, one, ctx, baseDir)),
            onProgress: (rows) => task.update(`Scoring the holdout${of}: ${rows} rows`),
          }),
        (r) => `Scored ${r.rows} rows${of} in ${r.seconds} s`,
      ),
    );
  }
  const several = selected.length > 1;
  const named = (r: TestReport, text: string) => (several ? `${r.model}: ${text}` : text);
  const cases = reports.flatMap((report) => [
    ...report.gates.map((g) => ({ name: named(report, describeGate(g)), passed: g.passed, message: `${g.metric} = ${fmt(g.value)}` })),
    ...(report.parity
      ? [
          {
            name: named(report, `parity with in-process ONNX Runtime (tolerance ${report.parity.tolerance})`),
            passed: report.parity.passed,
            message: parityLine(report),
          },
        ]
      : []),
  ]);
  const passed = reports.every((r) => r.passed);
  const seconds = Math.round(reports.reduce((n, r) => n + r.seconds, 0) * 100) / 100;
  if (flags.junit) await writeFileAtomic(path.resolve(ctx.cwd, flags.junit), junitXml('mlops test', cases, seconds));
  const markdown = reports.map(renderMarkdown).join('\n');
  if (flags.markdown) await writeFileAtomic(path.resolve(ctx.cwd, flags.markdown), markdown);
  await appendStepSummary(ctx.env, markdown);
  // tag and push read the latest report of a build from here (several models: the verdict and rows of all).
  const document = several ? { passed, imageId: reports[0].imageId, rows: reports.reduce((n, r) => n + r.rows, 0), seconds, models: reports } : reports[0];
  await writeFileAtomic(path.join(baseDir, '.mlops', 'last-test.json'), JSON.stringify(document, null, 2) + '\n');
  if (several)
    ctx.reporter.result(document, (_d, s) =>
      [
        ...reports.map((r) => renderHuman(r, s)),
        '',
        passed
          ? s.green.bold(`PASSED (${reports.length} models)`)
          : s.red.bold(
              `FAILED (${reports
                .filter((r) => !r.passed)
                .map((r) => r.model)
                .join(', ')})`,
            ),
      ].join('\n\n'),
    );
  else ctx.reporter.result(reports[0], renderHuman);
  return passed ? ExitCode.ok : ExitCode.gateFailed;
}
