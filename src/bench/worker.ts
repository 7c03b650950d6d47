/**
 * A load generator thread: HTTP load runs here so that the command's main
 * thread (Docker stats, metrics scraping) never slows the client down.
 */
import { encodeIntoCompressedBase64 } from 'hdr-histogram-js';
import { parentPort, workerData } from 'node:worker_threads';
import { httpSender } from './http-send.js';
import { runLoad, type LoadPlan } from './load.js';

export interface WorkerJob {
  url: string;
  bodies: Uint8Array[];
  plan: LoadPlan;
}

const job = workerData as WorkerJob;
const { send, close } = httpSender(
  job.url,
  job.bodies.map((b) => Buffer.from(b)),
  // Open loop: enough connections that the client never queues what the schedule sends.
  job.plan.mode === 'closed' ? (job.plan.concurrency ?? 1) : 256,
);
const outcome = await runLoad(job.plan, send);
await close();
parentPort!.postMessage({
  histogram: encodeIntoCompressedBase64(outcome.histogram),
  requests: outcome.requests,
  errors: outcome.errors,
  errorsByKind: outcome.errorsByKind,
  seconds: outcome.seconds,
  sendLagP99Ms: outcome.sendLagP99Ms,
  eventLoopUtilization: outcome.eventLoopUtilization,
});
outcome.histogram.destroy();
