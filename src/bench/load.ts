import type { Histogram } from 'hdr-histogram-js';
import { createLatencyHistogram, recordMs } from './stats.js';

/** Sends request number i; resolves null on success, or the kind of error. */
export type Send = (i: number) => Promise<string | null>;

export interface LoadPlan {
  /** closed: `concurrency` clients back to back. open: `rate` requests a second on a fixed schedule. */
  mode: 'closed' | 'open';
  concurrency?: number;
  rate?: number;
  /** Stop after this long, or after `requests` requests, whichever is given. */
  durationMs?: number;
  requests?: number;
  warmupMs: number;
  /** Open loop: requests outstanding at once before further ones are dropped as client_overload. */
  maxOutstanding?: number;
}

export interface LoadOutcome {
  histogram: Histogram;
  requests: number;
  errors: number;
  errorsByKind: Record<string, number>;
  seconds: number;
  /** Open loop: how late requests were sent against their schedule, p99, in ms. */
  sendLagP99Ms: number;
  /** Share of the time the generator's event loop was busy (1 = saturated). */
  eventLoopUtilization: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs one load plan. Latency is measured from when a request was due: in an
 * open loop that is its scheduled time, not when it was sent, so a server that
 * stalls cannot hide the stall by slowing the client down (coordinated omission).
 */
export async function runLoad(plan: LoadPlan, send: Send): Promise<LoadOutcome> {
  if (plan.warmupMs > 0) await phase(plan, send, { durationMs: plan.warmupMs }, false);
  return phase(plan, send, { durationMs: plan.durationMs, requests: plan.requests }, true);
}

async function phase(plan: LoadPlan, send: Send, limit: { durationMs?: number; requests?: number }, record: boolean): Promise<LoadOutcome> {
  const histogram = createLatencyHistogram();
  const lag = createLatencyHistogram();
  const errorsByKind: Record<string, number> = {};
  let requests = 0;
  let errors = 0;
  const started = performance.now();
  const until = limit.durationMs !== undefined ? started + limit.durationMs : Infinity;
  const budget = limit.requests ?? Infinity;
  const elu = performance.eventLoopUtilization();
  const complete = (due: number, error: string | null) => {
    requests++;
    if (error) {
      errors++;
      errorsByKind[error] = (errorsByKind[error] ?? 0) + 1;
    } else recordMs(histogram, performance.now() - due);
  };

  if (plan.mode === 'closed') {
    let issued = 0;
    const client = async () => {
      while (performance.now() < until && issued < budget) {
        const i = issued++;
        const due = performance.now();
        complete(due, await send(i));
      }
    };
    await Promise.all(Array.from({ length: plan.concurrency ?? 1 }, client));
  } else {
    const rate = plan.rate ?? 1;
    const interval = 1000 / rate;
    const maxOutstanding = plan.maxOutstanding ?? 10_000;
    const inFlight = new Set<Promise<void>>();
    let next = 0;
    for (;;) {
      const due = started + next * interval;
      if (due >= until || next >= budget) break;
      const now = performance.now();
      if (due > now) {
        await sleep(due - now);
        continue;
      }
      // Everything due by now goes out in this turn.
      recordMs(lag, now - due);
      const i = next++;
      if (inFlight.size >= maxOutstanding) {
        complete(due, 'client_overload');
        continue;
      }
      const pending: Promise<void> = send(i).then((error) => {
        complete(due, error);
        inFlight.delete(pending);
      });
      inFlight.add(pending);
    }
    await Promise.all(inFlight);
  }
  const seconds = (performance.now() - started) / 1000;
  const usage = performance.eventLoopUtilization(elu);
  const sendLagP99Ms = lag.totalCount > 0 ? lag.getValueAtPercentile(99) / 1e6 : 0;
  lag.destroy();
  if (!record) histogram.destroy();
  return { histogram, requests, errors, errorsByKind, seconds, sendLagP99Ms, eventLoopUtilization: usage.utilization };
}
