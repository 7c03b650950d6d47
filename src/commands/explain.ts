import type { ChalkInstance } from 'chalk';
import path from 'node:path';
import { ExitCode } from '../errors.js';
import { renderHtml, renderMarkdown, headline, method, TABLE_HEADER, tableRows } from '../explain/report.js';
import { runExplain, type ExplainFlags } from '../explain/run-explain.js';
import type { GlobalExplanation } from '../explain/global.js';
import { appendStepSummary, writeFileAtomic } from '../report/files.js';
import { renderTable } from '../ui/reporter.js';
import type { CommandContext } from './context.js';
import { perModelPath, selectModels } from '../config/models.js';

interface Flags extends ExplainFlags {
  markdown?: string;
  html?: string;
}

function renderHuman(r: GlobalExplanation, s: ChalkInstance): string {
  return [s.bold(headline(r)), '', renderTable(TABLE_HEADER, tableRows(r)), '', s.dim(method(r))].join('\n');
}

export async function run(flags: Flags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  // Several models: each explained over its own holdout, in turn.
  const selected = selectModels(config, flags.modelName);
  const several = selected.length > 1;
  const reports: GlobalExplanation[] = [];
  for (const one of selected) {
    const of = several ? ` ${one.name}` : '';
    const task = ctx.reporter.task(`Explaining the model${of}`);
    let report: GlobalExplanation;
    try {
      report = await runExplain({ cwd: ctx.cwd, projectDir: baseDir, config: one.config, env: ctx.env, flags: one.entry ? { ...flags, modelName: one.name } : flags, onProgress: (line) => task.progress(line) });
    } catch (error) {
      task.fail();
      throw error;
    }
    task.succeed(`Explained${of} in ${report.seconds} s`);
    if (flags.html) await writeFileAtomic(path.resolve(ctx.cwd, perModelPath(flags.html, one.name, several)), renderHtml(report));
    reports.push(report);
  }
  const markdown = reports.map(renderMarkdown).join('\n');
  if (flags.markdown) await writeFileAtomic(path.resolve(ctx.cwd, flags.markdown), markdown);
  await appendStepSummary(ctx.env, markdown);
  if (several) ctx.reporter.result({ models: reports }, (_d, s) => reports.map((r) => renderHuman(r, s)).join('\n\n'));
  else ctx.reporter.result(reports[0], renderHuman);
  return ExitCode.ok;
}
