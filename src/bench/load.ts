import type { Histogram } from 'hdr-histogram-js';
import { createLatencyHistogram, recordMs } from './stats.js';

/** A failed request: its kind (http_500, grpc_internal, inference_error, ...) and, when known, what the server or model said. */
export interface Failure {
  kind: string;
  message?: string;
}

/** Sends request number i; resolves null on success, or how it failed. */
export type Send = (i: number) => Promise<Failure | null>;

/** Distinct failure reasons kept a run; the rest are counted together, so a message that varies cannot grow the report without bound. */
export const MAX_REASONS = 10;
export const OTHER_REASONS = '(other reasons)';

/** One line a reason: white space folded, cut to a length a table can show. */
export function failureReason(failure: Failure): string {
  const message = failure.message?.replace(/\s+/g, ' ').trim();
  if (!message) return failure.kind;
  const line = `${failure.kind}: ${message}`;
  return line.length > 300 ? `${line.slice(0, 299)}…` : line;
}

/** Adds `count` of `reason` to a tally that keeps at most MAX_REASONS distinct reasons. */
export function tallyReason(reasons: Record<string, number>, reason: string, count = 1): void {
  const known = reason in reasons || Object.keys(reasons).filter((r) => r !== OTHER_REASONS).length < MAX_REASONS;
  const key = known ? reason : OTHER_REASONS;
  reasons[key] = (reasons[key] ?? 0) + count;
}

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
  /** Failed requests by distinct reason (kind and message), at most MAX_REASONS of them. */
  reasons: Record<string, number>;
  seconds: number;
  /** Open loop: how late requests were sent against their schedule, p99, in ms. */
  sendLagP99Ms: number;
  /** Share of the time the generator's event loop was busy (1 = saturated). */
  eventLoopUtilization: number;
}

const CLIENT_OVERLOAD: Failure = { kind: 'client_overload', message: 'too many requests outstanding; the client dropped it' };
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
  const reasons: Record<string, number> = {};
  let requests = 0;
  let errors = 0;
  const started = performance.now();
  const until = limit.durationMs !== undefined ? started + limit.durationMs : Infinity;
  const budget = limit.requests ?? Infinity;
  const elu = performance.eventLoopUtilization();
  const complete = (due: number, failure: Failure | null) => {
    requests++;
    // A failed request is never a latency sample: it would pass a latency gate at 0 ms.
    if (failure) {
      errors++;
      errorsByKind[failure.kind] = (errorsByKind[failure.kind] ?? 0) + 1;
      tallyReason(reasons, failureReason(failure));
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
        complete(due, CLIENT_OVERLOAD);
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
  return { histogram, requests, errors, errorsByKind, reasons, seconds, sendLagP99Ms, eventLoopUtilization: usage.utilization };
}
