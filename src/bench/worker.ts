/**
 * A load generator thread: HTTP load runs here so that the command's main
 * thread (Docker stats, metrics scraping) never slows the client down.
 */
import { encodeIntoCompressedBase64 } from 'hdr-histogram-js';
import { parentPort, workerData } from 'node:worker_threads';
import { grpcSender } from './grpc-send.js';
import { httpSender } from './http-send.js';
import { runLoad, type LoadPlan } from './load.js';
import type { ClientSecurity } from '../protocol/client-security.js';

/** What a load thread sends: prebuilt HTTP requests, or serialized gRPC ModelInfer messages. */
export type LoadTarget =
  | {
      kind: 'http';
      url: string;
      requests: { body: Uint8Array; headers: Record<string, string> }[];
      tls?: { ca?: Uint8Array; cert?: Uint8Array; key?: Uint8Array };
    }
  | { kind: 'grpc'; address: string; messages: Uint8Array[]; security?: ClientSecurity & { secure?: boolean } };

export interface WorkerJob {
  target: LoadTarget;
  plan: LoadPlan;
}

const job = workerData as WorkerJob;
// Buffers that crossed to this thread arrive as plain Uint8Arrays; grpc-js wants Buffers.
const asBuffers = (s: (ClientSecurity & { secure?: boolean }) | undefined) =>
  s && { ...s, ca: s.ca && Buffer.from(s.ca), cert: s.cert && Buffer.from(s.cert), key: s.key && Buffer.from(s.key) };
// Open loop: enough connections that the client never queues what the schedule sends.
const connections = job.plan.mode === 'closed' ? (job.plan.concurrency ?? 1) : 256;
const { send, close } =
  job.target.kind === 'http'
    ? httpSender(job.target.url, job.target.requests, connections, job.target.tls)
    : // HTTP/2 multiplexes calls on a connection: a few channels are enough.
      grpcSender(job.target.address, job.target.messages, Math.min(connections, 4), asBuffers(job.target.security));
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
