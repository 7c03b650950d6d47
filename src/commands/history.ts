import { ExitCode } from '../errors.js';
import { rebuildHistory } from '../targets/deploy.js';
import { readHistory } from '../targets/history.js';
import { selectTarget } from '../targets/index.js';
import { renderTable } from '../ui/reporter.js';
import type { CommandContext } from './context.js';

export interface HistoryFlags {
  target: string;
  rebuild?: boolean;
  force?: boolean;
}

export async function run(flags: HistoryFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const { name } = selectTarget(config, flags.target);
  const entries = flags.rebuild
    ? (
        await rebuildHistory({
          cwd: ctx.cwd,
          projectDir: baseDir,
          config,
          env: ctx.env,
          target: name,
          dryRun: false,
          force: Boolean(flags.force),
          log: (line) => ctx.reporter.info(line),
        })
      ).entries
    : await readHistory(baseDir, name);
  ctx.reporter.result({ target: name, entries }, (r) =>
    r.entries.length === 0
      ? `nothing deployed to ${r.target} yet`
      : renderTable(
          ['time', 'action', 'version', 'outcome', 'digest (or image)'],
          r.entries.map((e) => [
            e.at,
            e.action,
            e.version,
            e.outcome === 'rolled-back' ? `rolled back (${e.reason}) to ${e.restored}` : e.outcome === 'failed' ? `failed (${e.reason})` : e.outcome,
            e.digest ?? e.image,
          ]),
        ),
  );
  return ExitCode.ok;
}
