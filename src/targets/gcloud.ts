/** What the gcloud-driven adapters (cloudrun, vertex) share. */
import type { DeployContext, LogText } from './types.js';

/**
 * Inference log records from Cloud Logging, which parses each JSON line a container prints into
 * jsonPayload; `resource` narrows to one service or endpoint.
 */
export async function cloudLoggingRecords(ctx: DeployContext, project: string, resource: string[], since: Date | undefined, from: string): Promise<LogText[]> {
  const filter = [...resource, 'jsonPayload.type="mlops.inference"', ...(since ? [`timestamp>="${since.toISOString()}"`] : [])].join(' AND ');
  const result = await ctx.exec.run(
    'gcloud',
    ['logging', 'read', filter, '--project', project, '--format=json', '--order=asc', ...(since ? [] : ['--freshness=30d'])],
    { timeoutMs: 300_000 },
  );
  const entries = JSON.parse(result.stdout || '[]') as { jsonPayload?: unknown }[];
  return [{ from, text: entries.map((e) => JSON.stringify(e.jsonPayload ?? null)).join('\n') }];
}

/** A resource's last log lines, for a failure report. */
export async function cloudLoggingTail(ctx: DeployContext, project: string, resource: string[]): Promise<string> {
  const result = await ctx.exec.run(
    'gcloud',
    ['logging', 'read', resource.join(' AND '), '--project', project, '--limit', '20', '--format=value(textPayload)'],
    { allowFailure: true },
  );
  return result.stdout;
}
