import { Pool } from 'undici';
import { createLatencyHistogram, recordMs, summarize, type LatencySummary } from './stats.js';

export interface ClosedLoopOptions {
  url: string;
  method?: 'GET' | 'POST';
  body?: Buffer;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
}

export interface LoadResult {
  requests: number;
  errors: number;
  errorsByKind: Record<string, number>;
  seconds: number;
  throughputRps: number;
  latencyMs: LatencySummary;
}

/**
 * Closed loop: `concurrency` clients each send a request as soon as the last
 * one answered, over keep-alive connections (undici: less client CPU per
 * request than node:http, so the client is less of a bottleneck).
 * Warm-up requests are not counted.
 */
export async function closedLoop(options: ClosedLoopOptions): Promise<LoadResult> {
  const target = new URL(options.url);
  const pool = new Pool(target.origin, { connections: options.concurrency, pipelining: 1 });
  const histogram = createLatencyHistogram();
  const errorsByKind: Record<string, number> = {};
  let requests = 0;
  let errors = 0;
  const method = options.method ?? 'POST';
  const headers = method === 'POST' ? { 'content-type': 'application/json' } : undefined;
  const send = async (): Promise<string | null> => {
    try {
      const res = await pool.request({ path: target.pathname, method, headers, body: options.body });
      await res.body.dump();
      return res.statusCode === 200 ? null : `http_${res.statusCode}`;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code ?? 'network';
    }
  };
  const loop = async (until: number, record: boolean) => {
    while (performance.now() < until) {
      const started = performance.now();
      const error = await send();
      if (!record) continue;
      requests++;
      if (error) {
        errors++;
        errorsByKind[error] = (errorsByKind[error] ?? 0) + 1;
      } else recordMs(histogram, performance.now() - started);
    }
  };
  const workers = (until: number, record: boolean) => Promise.all(Array.from({ length: options.concurrency }, () => loop(until, record)));
  await workers(performance.now() + options.warmupMs, false);
  const started = performance.now();
  await workers(started + options.durationMs, true);
  const seconds = (performance.now() - started) / 1000;
  await pool.close();
  const latencyMs = summarize(histogram);
  histogram.destroy();
  return { requests, errors, errorsByKind, seconds, throughputRps: requests / seconds, latencyMs };
}
