import type { LambdaTarget, SageMakerTarget } from '../config/defaults.js';
import type { DeployContext, LogText } from './types.js';

type Region = Pick<SageMakerTarget | LambdaTarget, 'region'>;

async function filterLogEvents(
  ctx: DeployContext,
  target: Region,
  group: string,
  args: string[],
  options: { allowFailure?: boolean; timeoutMs?: number },
): Promise<string[] | null> {
  const result = await ctx.exec.run(
    'aws',
    ['logs', 'filter-log-events', '--log-group-name', group, ...args, '--region', target.region, '--output', 'json'],
    options,
  );
  if (result.exitCode !== 0) return null;
  return ((JSON.parse(result.stdout || '{}') as { events?: { message?: string }[] }).events ?? []).map((e) => e.message ?? '');
}

/** A log group's last lines, for a failure report; empty when they cannot be read. */
export async function recentLogLines(ctx: DeployContext, target: Region, group: string): Promise<string> {
  return ((await filterLogEvents(ctx, target, group, ['--start-time', String(Date.now() - 3_600_000), '--limit', '20'], { allowFailure: true })) ?? []).join(
    '\n',
  );
}

/** The inference records the server's stdout sink wrote to a log group since `since` (30 days when undefined). */
export async function inferenceRecords(ctx: DeployContext, target: Region, group: string, from: string, since: Date | undefined): Promise<LogText[]> {
  const start = (since ?? new Date(Date.now() - 30 * 86_400_000)).getTime();
  const lines = await filterLogEvents(ctx, target, group, ['--filter-pattern', '{ $.type = "mlops.inference" }', '--start-time', String(start)], {
    timeoutMs: 300_000,
  });
  return [{ from, text: (lines ?? []).join('\n') }];
}

/** Lines matching a filter pattern since a time; an error names why they could not be read. */
export async function matchingLogLines(ctx: DeployContext, target: Region, group: string, pattern: string, since: Date): Promise<string[] | { error: string }> {
  const result = await ctx.exec.run(
    'aws',
    [
      'logs',
      'filter-log-events',
      '--log-group-name',
      group,
      '--filter-pattern',
      pattern,
      '--start-time',
      String(since.getTime()),
      '--region',
      target.region,
      '--output',
      'json',
    ],
    { allowFailure: true, timeoutMs: 120_000 },
  );
  if (result.exitCode !== 0) return { error: result.stderr.trim().split('\n').at(-1) ?? `exit ${result.exitCode}` };
  return ((JSON.parse(result.stdout || '{}') as { events?: { message?: string }[] }).events ?? []).map((e) => e.message ?? '');
}
