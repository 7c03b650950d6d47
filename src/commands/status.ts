import { ExitCode } from '../errors.js';
import { targetStatus } from '../targets/deploy.js';
import type { CommandContext } from './context.js';

export interface StatusFlags {
  target: string;
}

export async function run(flags: StatusFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const status = await targetStatus({ cwd: ctx.cwd, projectDir: baseDir, config, env: ctx.env, target: flags.target, dryRun: false, log: () => undefined });
  ctx.reporter.result(status, (r, s) =>
    [
      `${s.bold('target')}  ${r.target} (${r.type})`,
      `${s.bold('version')} ${r.version ?? '-'}`,
      `${s.bold('health')}  ${r.health === 'ready' ? s.green(r.health) : s.yellow(r.health)}`,
      `${s.bold('image')}   ${r.image ?? '-'}`,
      `${s.bold('url')}     ${r.url ?? '-'}`,
      ...(r.startedAt ? [`${s.bold('started')} ${r.startedAt}`] : []),
      ...Object.entries(r.detail).map(([k, v]) => `${k}: ${detailText(v)}`),
    ].join('\n'),
  );
  return ExitCode.ok;
}

/** A detail value on one line: lists joined, objects (a traffic split, cold starts) as key=value pairs. */
function detailText(value: unknown): string {
  if (Array.isArray(value)) return value.join(', ');
  if (value && typeof value === 'object')
    return Object.entries(value)
      .map(([k, v]) => `${k}=${detailText(v)}`)
      .join(', ');
  return String(value);
}
