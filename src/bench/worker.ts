/**
 * A load generator thread: HTTP load runs here so that the command's main
 * thread (Docker stats, metrics scraping) never slows the client down.
 */
import { encodeIntoCompressedBase64 } from 'hdr-histogram-js';
import { parentPort, workerData } from 'node:worker_threads';
import { grpcSender } from './grpc-send.js';
import { httpSender } from './http-send.js';
import { runLoad, type LoadPlan } from './load.js';

/** What a load thread sends: prebuilt HTTP requests, or serialized gRPC ModelInfer messages. */
export type LoadTarget =
  | { kind: 'http'; url: string; requests: { body: Uint8Array; headers: Record<string, string> }[] }
  | { kind: 'grpc'; address: string; messages: Uint8Array[] };

export interface WorkerJob {
  target: LoadTarget;
  plan: LoadPlan;
}

const job = workerData as WorkerJob;
// Open loop: enough connections that the client never queues what the schedule sends.
const connections = job.plan.mode === 'closed' ? (job.plan.concurrency ?? 1) : 256;
const { send, close } =
  job.target.kind === 'http'
    ? httpSender(job.target.url, job.target.requests, connections)
    : // HTTP/2 multiplexes calls on a connection: a few channels are enough.
      grpcSender(job.target.address, job.target.messages, Math.min(connections, 4));
const outcome = await runLoad(job.plan, send);
await close();
parentPort!.postMessage({
  histogram: encodeIntoCompressedBase64(outcome.histogram),
  requests: outcome.requests,
  errors: outcome.errors,
  errorsByKind: outcome.errorsByKind,
  reasons: outcome.reasons,
  seconds: outcome.seconds,
  sendLagP99Ms: outcome.sendLagP99Ms,
  eventLoopUtilization: outcome.eventLoopUtilization,
});
outcome.histogram.destroy();
