/**
 * An inference worker thread: its own ONNX Runtime session, so that a long
 * session.run (synchronous in onnxruntime-node) blocks this thread, never the
 * server's event loop. Whole large REST requests are decoded and encoded here.
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { isMlopsError } from '../errors.js';
import { ModelRunError } from '../model/run-error.js';
import { loadModel, type LoadedModel } from '../model/session.js';
import { BadRequest } from '../protocol/request.js';
import { decodeRestRequest, encodeRestResponse } from '../protocol/rest.js';
import { probeFeeds } from '../model/random-feeds.js';
import { encodeInferenceRecords, recordModelOf } from '../monitor/inference-records.js';
import { RowBinner } from '../monitor/profile.js';
import { collectWhenIdle } from './idle-gc.js';
import { INFERENCE_NICE, now, sessionOptions, transferables, type WorkerHello, type WorkerJob, type WorkerReply, type WorkerSetup } from './worker-protocol.js';

const setup = workerData as WorkerSetup;
const port = parentPort!;

// Inference yields the CPU to the main thread (I/O, routing, health checks): this thread, and the ONNX
// Runtime threads it starts (Linux threads inherit it), run at a lower priority. Lowering needs no privilege;
// where /proc/thread-self is missing (not Linux) the worker runs at the normal priority.
try {
  setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), INFERENCE_NICE);
} catch {
  // not Linux: no per-thread priority
}

let model: LoadedModel;
try {
  model = await loadModel(sessionOptions(setup));
} catch (error) {
  const hello: WorkerHello = isMlopsError(error)
    ? { ready: false, message: error.message, hint: error.hint, exitCode: error.exitCode }
    : { ready: false, message: String((error as Error)?.message ?? error), exitCode: 70 };
  port.postMessage(hello);
  process.exit(0);
}
port.postMessage({ ready: true } satisfies WorkerHello);
// Rows are binned here, beside the run, so the main thread only adds up indices.
const binner = setup.profile ? new RowBinner(setup.profile, model.inputs, model.outputs) : undefined;
const recordModel = recordModelOf(model);
const profiledTransfer = (profiled: { indices: Uint8Array } | null | undefined) => (profiled ? [profiled.indices.buffer as ArrayBuffer] : []);

async function handle(job: WorkerJob): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
  const startedAt = now();
  switch (job.kind) {
    case 'run': {
      const result = await model.run(job.feeds);
      const seconds = (now() - startedAt) / 1000;
      const profiled = binner?.bin(job.feeds, result) ?? undefined;
      return { reply: { ok: true, kind: 'run', result, startedAt, seconds, profiled }, transfer: [...transferables(result), ...profiledTransfer(profiled)] };
    }
    case 'rest': {
      const request = decodeRestRequest(job.body, job.header, model);
      request.id ??= job.id;
      const ranAt = now();
      const result = await model.run(request.inputs);
      const seconds = (now() - ranAt) / 1000;
      const profiled = binner?.bin(request.inputs, result) ?? undefined;
      const response = encodeRestResponse(model, result, request);
      const logged = job.log
        ? encodeInferenceRecords({ id: request.id, rows: request.rows, model: recordModel }, result, job.log === 'with-inputs' ? request.inputs : undefined)
        : undefined;
      const bytes = typeof response.body === 'string' ? Buffer.from(response.body) : response.body;
      const body = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const own = body.buffer instanceof ArrayBuffer && body.buffer.byteLength === body.byteLength ? [body.buffer] : [];
      return { reply: { ok: true, kind: 'rest', body, headerLength: response.headerLength, rows: request.rows, startedAt: ranAt, seconds, profiled, logged }, transfer: [...own, ...profiledTransfer(profiled)] };
    }
    case 'probe': {
      const times: number[] = [];
      try {
        for (let i = 0; i < 7; i++) {
          const feeds = probeFeeds(model.inputs, job.rows, i);
          const t = performance.now();
          await model.run(feeds);
          times.push(performance.now() - t);
        }
      } catch (error) {
        return { reply: { ok: true, kind: 'probe', ms: null, reason: `random inputs failed: ${(error as Error).message.split('\n')[0]}` }, transfer: [] };
      }
      times.sort((a, b) => a - b);
      return { reply: { ok: true, kind: 'probe', ms: times[3] }, transfer: [] };
    }
  }
}

port.on('message', (job: WorkerJob) => {
  collectWhenIdle(job.kind === 'rest' ? job.body.byteLength : 0);
  handle(job).then(
    ({ reply, transfer }) => port.postMessage(reply, transfer),
    (error: unknown) => {
      const reply: WorkerReply =
        error instanceof BadRequest
          ? { ok: false, status: error.status, message: error.message }
          : { ok: false, status: 500, message: String((error as Error)?.message ?? error), modelFailed: error instanceof ModelRunError };
      port.postMessage(reply);
    },
  );
});
port.on('close', () => void model.release());
