import type { ChalkInstance } from 'chalk';
import path from 'node:path';
import { ExitCode, inputError } from '../errors.js';
import {
  renderHtml,
  renderMarkdown,
  headline,
  method,
  TABLE_HEADER,
  tableRows,
  occlusionHeadline,
  occlusionMethod,
  OCCLUSION_HEADER,
  occlusionRows,
  renderOcclusionHtml,
  renderOcclusionMarkdown,
  renderTokenHtml,
  renderTokenMarkdown,
  tokenHeadline,
  tokenMethod,
  TOKEN_HEADER,
  tokenRows,
} from '../explain/report.js';
import type { TokenExplanation } from '../explain/tokens.js';
import type { GlobalOcclusion } from '../explain/global-occlusion.js';
import { runExplain, type RunExplainOptions } from '../explain/run-explain.js';
import type { GlobalExplanation } from '../explain/global.js';
import { appendStepSummary, writeFileAtomic } from '../report/files.js';
import { renderTable } from '../ui/reporter.js';
import type { CommandContext } from './context.js';
import { perModelPath, selectModels, type SelectedModel } from '../config/models.js';
import { targetOptions, type TargetFlags } from './target-flags.js';

export interface ExplainFlags extends TargetFlags {
  holdout?: string;
  labels?: string;
  /** Parsed by commander: NaN when not a number. */
  samples?: number;
  backgroundRows?: number;
  rows?: number;
  repeats?: number;
  metric?: string;
  markdown?: string;
  html?: string;
}

const count = (flag: string, value: number | undefined, min: number) => {
  if (value !== undefined && (!Number.isInteger(value) || value < min)) throw inputError(`${flag} ${value}: expected a whole number of at least ${min}`);
  return value;
};

/**
 * What the flags ask of one model's explanation, over its config: the counts, the holdout (--holdout, else
 * test.holdout, whose test.labelsFile goes with it), then where the model runs (in-process unless --image or --url).
 */
function explainOptions(flags: ExplainFlags, one: SelectedModel, ctx: CommandContext, projectDir: string): Omit<RunExplainOptions, 'onProgress'> {
  const { config } = one;
  const counts = {
    samples: count('--samples', flags.samples, 2),
    backgroundRows: count('--background-rows', flags.backgroundRows, 1),
    rows: count('--rows', flags.rows, 1),
    repeats: count('--repeats', flags.repeats, 1),
  };
  const holdoutFile = flags.holdout ?? (config.test.holdout ? path.relative(ctx.cwd, path.resolve(projectDir, config.test.holdout)) : undefined);
  if (!holdoutFile) throw inputError('no holdout given', 'pass --holdout <file> or set test.holdout in config');
  const labelsFromConfig = !flags.holdout && config.test.labelsFile ? path.relative(ctx.cwd, path.resolve(projectDir, config.test.labelsFile)) : undefined;
  const target = targetOptions(one.entry ? { ...flags, modelName: one.name } : flags, { cwd: ctx.cwd, projectDir, config, env: ctx.env, otherwise: 'local' });
  return { cwd: ctx.cwd, projectDir, config, env: ctx.env, target, holdoutFile, labelsFile: flags.labels ?? labelsFromConfig, ...counts, metric: flags.metric };
}

type Explanation = GlobalExplanation | GlobalOcclusion | TokenExplanation;
const isOcclusion = (r: Explanation): r is GlobalOcclusion => 'method' in r && r.method === 'occlusion';
const isTokens = (r: Explanation): r is TokenExplanation => 'method' in r && r.method === 'token-occlusion';

function renderHuman(r: Explanation, s: ChalkInstance): string {
  if (isTokens(r)) return [s.bold(tokenHeadline(r)), '', renderTable(TOKEN_HEADER, tokenRows(r)), '', s.dim(tokenMethod(r))].join('\n');
  if (isOcclusion(r)) return [s.bold(occlusionHeadline(r)), '', renderTable(OCCLUSION_HEADER, occlusionRows(r)), '', s.dim(occlusionMethod(r))].join('\n');
  return [s.bold(headline(r)), '', renderTable(TABLE_HEADER, tableRows(r)), '', s.dim(method(r))].join('\n');
}
const markdownOf = (r: Explanation) => (isTokens(r) ? renderTokenMarkdown(r) : isOcclusion(r) ? renderOcclusionMarkdown(r) : renderMarkdown(r));
const htmlOf = (r: Explanation) => (isTokens(r) ? renderTokenHtml(r) : isOcclusion(r) ? renderOcclusionHtml(r) : renderHtml(r));

export async function run(flags: ExplainFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  // Several models: each explained over its own holdout, in turn.
  const selected = selectModels(config, flags.modelName);
  const several = selected.length > 1;
  const reports: Explanation[] = [];
  for (const one of selected) {
    const of = several ? ` ${one.name}` : '';
    const task = ctx.reporter.task(`Explaining the model${of}`);
    let report: Explanation;
    try {
      report = await runExplain({ ...explainOptions(flags, one, ctx, baseDir), onProgress: (line) => task.progress(line) });
    } catch (error) {
      task.fail();
      throw error;
    }
    task.succeed(`Explained${of} in ${report.seconds} s`);
    if (flags.html) await writeFileAtomic(path.resolve(ctx.cwd, perModelPath(flags.html, one.name, several)), htmlOf(report));
    reports.push(report);
  }
  const markdown = reports.map(markdownOf).join('\n');
  if (flags.markdown) await writeFileAtomic(path.resolve(ctx.cwd, flags.markdown), markdown);
  await appendStepSummary(ctx.env, markdown);
  if (several) ctx.reporter.result({ models: reports }, (_d, s) => reports.map((r) => renderHuman(r, s)).join('\n\n'));
  else ctx.reporter.result(reports[0], renderHuman);
  return ExitCode.ok;
}
