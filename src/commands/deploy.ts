import type { ChalkInstance } from 'chalk';
import path from 'node:path';
import { ExitCode, inputError } from '../errors.js';
import { deployVersion, rollbackTarget, type DeployOptions, type DeployResult } from '../targets/deploy.js';
import type { CommandContext } from './context.js';

export interface DeployFlags {
  target?: string;
  dryRun?: boolean;
  output?: string;
  to?: string;
  lockTimeout?: string;
  force?: boolean;
}

function lockTimeoutSeconds(value: string | undefined): number {
  if (value === undefined) return 0;
  const seconds = Number(value);
  if (value.trim() === '' || !Number.isFinite(seconds) || seconds < 0)
    throw inputError(`--lock-timeout ${value}: expected seconds >= 0`, "how long to wait for another deploy's lock, e.g. --lock-timeout 300; 0 fails at once");
  return seconds;
}

export function exitCodeOf(result: DeployResult): number {
  const { status } = result.outcome;
  return status === 'rolled-back' ? ExitCode.rolledBack : status === 'failed' ? ExitCode.environment : ExitCode.ok;
}

export function renderDeploy(r: DeployResult, s: ChalkInstance): string {
  const o = r.outcome;
  const what = `${r.action === 'rollback' ? 'rollback to ' : ''}${o.release.version}`;
  switch (o.status) {
    case 'planned':
      return [
        `Plan for ${what} on ${r.target} (${r.type}); --dry-run, nothing was changed:`,
        ...r.plan.map((step) => (step.input ? `$ ${step.command} <<'EOF'\n${step.input.trimEnd()}\nEOF` : `$ ${step.command}`)),
      ].join('\n');
    case 'written':
      return `Wrote the manifests for ${o.release.version} (${o.release.image}):\n${o.files.map((f) => `  ${f}`).join('\n')}`;
    case 'deployed':
      return `${s.green('✔')} ${what} is serving on ${r.target} (${r.type})${o.url ? ` at ${o.url}` : ''}${o.previous ? `; it replaced ${o.previous.version}` : ''}`;
    case 'rolled-back':
      return [
        `${s.red('✖')} ${what} failed on ${r.target}: ${o.reason}: ${o.message}`,
        `${s.yellow('↩')} rolled back: ${o.restored.version} is serving again`,
        o.logs ? `logs of ${o.release.version}:\n${o.logs}` : '',
      ]
        .filter(Boolean)
        .join('\n');
    case 'failed':
      return [
        `${s.red('✖')} ${what} failed on ${r.target}: ${o.reason}: ${o.message}`,
        'nothing was restored (no earlier version served there)',
        o.logs ? `logs of ${o.release.version}:\n${o.logs}` : '',
      ]
        .filter(Boolean)
        .join('\n');
  }
}

/** Runs a deploy or a rollback inside a task, then reports it; the exit code says how it ended. */
async function report(title: string, work: (options: DeployOptions) => Promise<DeployResult>, flags: DeployFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const task = ctx.reporter.task(title);
  let result: DeployResult;
  try {
    result = await work({
      cwd: ctx.cwd,
      projectDir: baseDir,
      config,
      env: ctx.env,
      target: flags.target,
      dryRun: Boolean(flags.dryRun),
      outputDir: flags.output ? path.resolve(ctx.cwd, flags.output) : undefined,
      lockTimeoutSeconds: lockTimeoutSeconds(flags.lockTimeout),
      force: Boolean(flags.force),
      log: (line) => task.update(line),
    });
    if (exitCodeOf(result) === ExitCode.ok) task.succeed();
    else task.fail();
  } catch (error) {
    task.fail();
    throw error;
  }
  ctx.reporter.result({ ...result, dryRun: Boolean(flags.dryRun) }, renderDeploy);
  return exitCodeOf(result);
}

export function run(flags: DeployFlags, ctx: CommandContext, version: string | undefined): Promise<number> {
  const title = flags.output
    ? `Writing the manifests for ${flags.target} to ${flags.output}`
    : `${flags.dryRun ? 'Planning the deploy' : 'Deploying'} to ${flags.target}`;
  return report(title, (options) => deployVersion(options, version), flags, ctx);
}

export function runRollback(flags: DeployFlags, ctx: CommandContext): Promise<number> {
  return report(`Rolling back ${flags.target}`, (options) => rollbackTarget(options, flags.to), flags, ctx);
}
