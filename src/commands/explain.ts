import type { ChalkInstance } from 'chalk';
import path from 'node:path';
import { ExitCode } from '../errors.js';
import { renderHtml, renderMarkdown, headline, method, TABLE_HEADER, tableRows } from '../explain/report.js';
import { runExplain, type ExplainFlags } from '../explain/run-explain.js';
import type { GlobalExplanation } from '../explain/global.js';
import { appendStepSummary, writeFileAtomic } from '../report/files.js';
import { renderTable } from '../ui/reporter.js';
import type { CommandContext } from './context.js';

interface Flags extends ExplainFlags {
  markdown?: string;
  html?: string;
}

function renderHuman(r: GlobalExplanation, s: ChalkInstance): string {
  return [s.bold(headline(r)), '', renderTable(TABLE_HEADER, tableRows(r)), '', s.dim(method(r))].join('\n');
}

export async function run(flags: Flags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const task = ctx.reporter.task('Explaining the model');
  let report: GlobalExplanation;
  try {
    report = await runExplain({ cwd: ctx.cwd, projectDir: baseDir, config, env: ctx.env, flags, onProgress: (line) => task.progress(line) });
  } catch (error) {
    task.fail();
    throw error;
  }
  task.succeed(`Explained in ${report.seconds} s`);
  const markdown = renderMarkdown(report);
  if (flags.markdown) await writeFileAtomic(path.resolve(ctx.cwd, flags.markdown), markdown);
  if (flags.html) await writeFileAtomic(path.resolve(ctx.cwd, flags.html), renderHtml(report));
  await appendStepSummary(ctx.env, markdown);
  ctx.reporter.result(report, renderHuman);
  return ExitCode.ok;
}
