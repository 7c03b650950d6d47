import type { ChalkInstance } from 'chalk';
import path from 'node:path';
import { ExitCode, inputError } from '../errors.js';
import { describeGate, type GateResult } from '../metrics/gates.js';
import { emitFromProfile, runLabelled, runMonitor, type MonitorReport } from '../monitor/monitor.js';
import type { QualityReport } from '../monitor/quality.js';
import {
  byDrift,
  fmt,
  headline,
  percent,
  qualityHeadline,
  qualityRows,
  renderHtml,
  renderMarkdown,
  renderQualityMarkdown,
  skippedLines,
  versionRows,
} from '../monitor/report.js';
import { appendStepSummary, writeFileAtomic } from '../report/files.js';
import { renderTable } from '../ui/reporter.js';
import type { CommandContext } from './context.js';
import { perModelPath, selectModels } from '../config/models.js';
import { emitOptions, labelledOptions, monitorOptions, type MonitorFlags } from './monitor-flags.js';

/** The gates table and the coloured headline that end both reports. */
function verdictLines(r: { gates: GateResult[]; verdict: string; passed: boolean }, text: string, s: ChalkInstance): string[] {
  const lines: string[] = [];
  if (r.gates.length > 0) {
    const result = (passed: boolean) => (passed ? s.green('pass') : r.verdict === 'too-few-rows' ? s.yellow('not applied') : s.red('FAIL'));
    lines.push(
      '',
      renderTable(
        ['gate', 'value', 'result'],
        r.gates.map((g) => [describeGate(g), fmt(g.value), result(g.passed)]),
      ),
    );
  }
  lines.push('', r.verdict === 'passed' ? s.green.bold(text) : r.passed ? s.yellow.bold(text) : s.red.bold(text));
  return lines;
}

function renderHuman(r: MonitorReport, s: ChalkInstance): string {
  const lines = [
    `${s.bold('live')}      ${r.rows} rows: ${r.source.span}`,
    `${s.bold('reference')} ${r.reference.file ?? 'none'}${r.reference.rows !== null ? ` (${r.reference.rows} rows)` : ''}`,
  ];
  if (r.features.length > 0) {
    lines.push(
      '',
      renderTable(
        ['feature', 'psi', 'js', 'out of range', 'missing', 'drifted'],
        byDrift(r.features).map((f) => [f.name, fmt(f.psi), fmt(f.js), percent(f.outOfRange.rate), percent(f.missingRate), f.drifted ? s.red('yes') : 'no']),
      ),
    );
  }
  if (r.prediction)
    lines.push('', `${s.bold('prediction')} ${r.prediction.output} (${r.prediction.kind}): psi ${fmt(r.prediction.psi)}, js ${fmt(r.prediction.js)}`);
  if (r.versions) lines.push('', s.bold('versions'), renderTable(['version', 'role', 'rows', 'verdict'], versionRows(r.versions)));
  lines.push(...verdictLines(r, headline(r), s));
  return lines.join('\n');
}

function renderQualityHuman(r: QualityReport, s: ChalkInstance): string {
  const lines = [
    `${s.bold('model')}     ${r.model.name} ${r.model.version} (sha256 ${r.model.sha256.slice(0, 12)}), output ${r.output} (${r.outputKind})`,
    `${s.bold('labels')}    ${r.join.labels} in ${r.source.labels}; ${r.join.matched} matched a logged prediction (coverage ${percent(r.join.coverage)})`,
    `${s.bold('log')}       ${r.join.loggedRows} rows from ${r.source.logs.join(', ')}`,
    '',
    renderTable(['metric', 'live', r.baseline ? 'tested' : ''], qualityRows(r)),
  ];
  if (r.baseline) lines.push(`tested: ${r.baseline.from}`);
  const skipped = skippedLines(r);
  if (skipped.length > 0) lines.push('', s.bold('not scored'), ...skipped.map((l) => `  ${l}`));
  lines.push(...verdictLines(r, qualityHeadline(r), s));
  return lines.join('\n');
}

async function runQualityCheck(flags: MonitorFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  if (flags.emit !== undefined || flags.html || flags.output)
    throw inputError('--labels writes a Markdown report only', 'drop --emit, --html and --output; use --markdown');
  // A labels file is one model's truth: with several models, --model-name says which, and only its records are joined.
  const selected = selectModels(config, flags.modelName);
  if (selected.length > 1)
    throw inputError('--labels scores one model, and the config lists several', `pass --model-name (one of ${selected.map((m) => m.name).join(', ')})`);
  const [one] = selected;
  const report = await ctx.reporter.step(
    'Joining labels with the inference log',
    () => runLabelled(labelledOptions(flags, { ctx, projectDir: baseDir, one })),
    (r) => `Scored ${r.join.matched} labelled rows`,
  );
  if (report.warning) ctx.reporter.warn(report.warning);
  const markdown = renderQualityMarkdown(report);
  if (flags.markdown) await writeFileAtomic(path.resolve(ctx.cwd, flags.markdown), markdown);
  await appendStepSummary(ctx.env, markdown);
  ctx.reporter.result(report, renderQualityHuman);
  return report.passed ? ExitCode.ok : ExitCode.gateFailed;
}

export async function run(flags: MonitorFlags, ctx: CommandContext): Promise<number> {
  if (flags.labels !== undefined) return runQualityCheck(flags, ctx);
  const { config, baseDir } = await ctx.config();
  if (flags.emit === undefined && flags.output) throw inputError('--output goes with --emit', 'write reports with --markdown and --html');
  if (flags.emit !== undefined && (flags.markdown || flags.html))
    throw inputError('--emit writes one file, named by --output', '--markdown and --html report on live traffic');
  // Several models: each judged (or emitted for) against its own reference and gates; the verdict is every model's.
  const selected = selectModels(config, flags.modelName);
  const several = selected.length > 1;
  if (several && flags.reference)
    throw inputError(
      '--reference names one profile, and the config lists several models',
      `pass --model-name (one of ${selected.map((m) => m.name).join(', ')}) with it, or leave it out: each model's comes from the last build`,
    );
  const scope = (one: (typeof selected)[number]) => ({ ctx, projectDir: baseDir, one });
  if (flags.emit !== undefined) {
    const written: (ReturnType<typeof emitFromProfile> & { file: string | null })[] = [];
    for (const one of selected) {
      const emitted = emitFromProfile(await emitOptions(flags, scope(one)));
      const file = flags.output ? perModelPath(flags.output, one.name, several) : null;
      if (file) await writeFileAtomic(path.resolve(ctx.cwd, file), emitted.content);
      written.push({ ...emitted, file });
    }
    const show = (r: (typeof written)[number]) => (r.file ? `wrote ${r.emitted} for reference ${r.reference} to ${r.file}` : r.content.trimEnd());
    if (several) ctx.reporter.result({ models: written }, () => written.map(show).join('\n'));
    else ctx.reporter.result(written[0], show);
    return ExitCode.ok;
  }
  const reports: MonitorReport[] = [];
  for (const one of selected) {
    const of = several ? ` of ${one.name}` : '';
    const report = await ctx.reporter.step(
      `Reading live traffic counts${of}`,
      async () => runMonitor(await monitorOptions(flags, scope(one))),
      (r) => `Compared ${r.rows} live rows${of} with the reference`,
    );
    for (const warning of report.reference.warnings) ctx.reporter.warn(`reference${of}: ${warning}`);
    if (report.warning) ctx.reporter.warn(`${several ? `${one.name}: ` : ''}${report.warning}`);
    if (flags.html) await writeFileAtomic(path.resolve(ctx.cwd, perModelPath(flags.html, one.name, several)), renderHtml(report));
    reports.push(report);
  }
  const markdown = reports.map(renderMarkdown).join('\n');
  if (flags.markdown) await writeFileAtomic(path.resolve(ctx.cwd, flags.markdown), markdown);
  await appendStepSummary(ctx.env, markdown);
  const passed = reports.every((r) => r.passed);
  if (several)
    ctx.reporter.result({ passed, models: reports }, (_d, s) => reports.map((r) => `${s.bold(r.model?.name ?? '')}\n${renderHuman(r, s)}`).join('\n\n'));
  else ctx.reporter.result(reports[0], renderHuman);
  return passed ? ExitCode.ok : ExitCode.gateFailed;
}
