import type { ChalkInstance } from 'chalk';
import path from 'node:path';
import { ExitCode } from '../errors.js';
import { deployVersion, rollbackTarget, type DeployResult } from '../targets/deploy.js';
import type { CommandContext } from './context.js';

export interface DeployFlags {
  target?: string;
  dryRun?: boolean;
  output?: string;
  to?: string;
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
      return [`${s.red('✖')} ${what} failed on ${r.target}: ${o.reason}: ${o.message}`, `${s.yellow('↩')} rolled back: ${o.restored.version} is serving again`, o.logs ? `logs of ${o.release.version}:\n${o.logs}` : ''].filter(Boolean).join('\n');
    case 'failed':
      return [`${s.red('✖')} ${what} failed on ${r.target}: ${o.reason}: ${o.message}`, 'nothing was restored (no earlier version served there)', o.logs ? `logs of ${o.release.version}:\n${o.logs}` : ''].filter(Boolean).join('\n');
  }
}

export async function run(version: string | undefined, flags: DeployFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const task = ctx.reporter.task(flags.dryRun ? `Planning the deploy to ${flags.target ?? '?'}` : `Deploying to ${flags.target ?? '?'}`);
  let result: DeployResult;
  try {
    result = await deployVersion(
      {
        cwd: ctx.cwd,
        projectDir: baseDir,
        config,
        env: ctx.env,
        target: flags.target,
        dryRun: Boolean(flags.dryRun),
        outputDir: flags.output ? path.resolve(ctx.cwd, flags.output) : undefined,
        log: (line) => task.update(line),
      },
      version,
    );
    if (result.outcome.status === 'deployed' || result.outcome.status === 'planned' || result.outcome.status === 'written') task.succeed();
    else task.fail();
  } catch (error) {
    task.fail();
    throw error;
  }
  ctx.reporter.result({ ...result, dryRun: Boolean(flags.dryRun) }, renderDeploy);
  return exitCodeOf(result);
}

export async function runRollback(flags: DeployFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const task = ctx.reporter.task(`Rolling back ${flags.target ?? '?'}`);
  let result: DeployResult;
  try {
    result = await rollbackTarget(
      { cwd: ctx.cwd, projectDir: baseDir, config, env: ctx.env, target: flags.target, dryRun: Boolean(flags.dryRun), log: (line) => task.update(line) },
      flags.to,
    );
    if (result.outcome.status === 'deployed' || result.outcome.status === 'planned') task.succeed();
    else task.fail();
  } catch (error) {
    task.fail();
    throw error;
  }
  ctx.reporter.result({ ...result, dryRun: Boolean(flags.dryRun) }, renderDeploy);
  return exitCodeOf(result);
}
