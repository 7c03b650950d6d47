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
import { kernelExplainer, type BatchModel, type Explanation } from '../explain/kernel-shap.js';
import { occlude, spatialLayout } from '../explain/occlusion.js';
import { explainedOutputs, rowsAsTensorData } from '../explain/tabular.js';
import { fromHalfBits } from '../model/datatypes.js';
import {
  INFERENCE_NICE,
  now,
  sessionOptions,
  transferables,
  type ExplainSetup,
  type RowExplanation,
  type WorkerHello,
  type WorkerJob,
  type WorkerReply,
  type WorkerSetup,
} from './worker-protocol.js';

const setup = workerData as WorkerSetup;
/** Occluded variants a model call takes: large images are big rows, so a few at a time. */
const OCCLUSION_CHUNK = 16;
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
const explainer = setup.explain ? explainerFor(setup.explain) : undefined;
const profiledTransfer = (profiled: { indices: Uint8Array } | null | undefined) => (profiled ? [profiled.indices.buffer as ArrayBuffer] : []);

async function handle(job: WorkerJob): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
  switch (job.kind) {
    case 'run':
      return runJob(job);
    case 'rest':
      return restJob(job);
    case 'grpc':
      return grpcJob(job);
    case 'explain':
      return explainJob(job);
    case 'occlude':
      return occludeJob(job);
    case 'probe':
      return probeJob(job);
  }
}

/** Tensors from the batcher, run. */
async function runJob(job: Extract<WorkerJob, { kind: 'run' }>): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
  const startedAt = now();
  const result = await model.run(job.feeds);
  const seconds = (now() - startedAt) / 1000;
  const profiled = binner?.bin(job.feeds, result) ?? undefined;
  return { reply: { ok: true, kind: 'run', result, startedAt, seconds, profiled }, transfer: [...transferables(result), ...profiledTransfer(profiled)] };
}

/** A whole REST request decoded, run and encoded here, off the main thread. */
async function restJob(job: Extract<WorkerJob, { kind: 'rest' }>): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
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
  const { body, own } = movable(typeof response.body === 'string' ? Buffer.from(response.body) : response.body);
  return {
    reply: { ok: true, kind: 'rest', body, headerLength: response.headerLength, rows: request.rows, startedAt: ranAt, seconds, profiled, logged },
    transfer: [...own, ...profiledTransfer(profiled)],
  };
}

/** A whole gRPC ModelInferRequest decoded, run and encoded here. */
async function grpcJob(job: Extract<WorkerJob, { kind: 'grpc' }>): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
  // Loaded on the first gRPC job: grpc-js in every worker slowed REST jobs on image_cnn by half (measured
  // with mlops bench, rest-binary at concurrency 8, against the commit before it).
  const { decodeGrpcRequest, decodeModelInferBytes, encodeGrpcResponse, encodeModelInferResponse } = await import('../protocol/grpc.js');
  const message = decodeModelInferBytes(Buffer.from(job.body.buffer, job.body.byteOffset, job.body.byteLength));
  const request = decodeGrpcRequest(message, model);
  request.id ??= job.id;
  const ranAt = now();
  const result = await model.run(request.inputs);
  const seconds = (now() - ranAt) / 1000;
  const profiled = binner?.bin(request.inputs, result) ?? undefined;
  const { body, own } = movable(encodeModelInferResponse(encodeGrpcResponse(model, result, request)));
  return {
    reply: { ok: true, kind: 'grpc', body, rows: request.rows, startedAt: ranAt, seconds, profiled },
    transfer: [...own, ...profiledTransfer(profiled)],
  };
}

/** Kernel SHAP for each row, against the background the setup brought. */
async function explainJob(job: Extract<WorkerJob, { kind: 'explain' }>): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
  const startedAt = now();
  if (!explainer) throw new BadRequest('this server has no explanation background', 409);
  const rows: RowExplanation[] = [];
  let last: Explanation | undefined;
  for (let r = 0; r < job.count; r++) {
    last = await explainer.kernel.explain(job.rows.subarray(r * explainer.features, (r + 1) * explainer.features));
    rows.push({ output: Array.from(last.output), values: Array.from(last.values) });
  }
  const base = Array.from(await explainer.kernel.base());
  const coalitions = last?.coalitions ?? 0;
  const modelRows = job.count * (coalitions * explainer.kernel.backgroundRows + 1);
  return {
    reply: {
      ok: true,
      kind: 'explain',
      outputs: explainer.outputs,
      base,
      rows,
      coalitions,
      exact: last?.exact ?? true,
      modelRows,
      seconds: (now() - startedAt) / 1000,
    },
    transfer: [],
  };
}

/** Occlusion for each row of a spatial input. */
async function occludeJob(job: Extract<WorkerJob, { kind: 'occlude' }>): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
  const startedAt = now();
  const layout = spatialLayout(job.dims);
  if (!layout) throw new BadRequest(`an input of shape [${job.dims.join(', ')}] per row has no spatial axes to occlude`, 400);
  const rowSize = job.dims.reduce((n, d) => n * d, 1);
  const rowsOf = rowsModel(job.dims);
  const out: { output: number[]; grid: [number, number]; patches: number[] }[] = [];
  let modelRows = 0;
  for (let r = 0; r < job.count; r++) {
    const result = await occlude(rowsOf.run, job.data.subarray(r * rowSize, (r + 1) * rowSize), layout, job.patch, rowsOf.chunk);
    out.push({ output: Array.from(result.output), grid: result.grid, patches: Array.from(result.patches) });
    modelRows += result.modelRows;
  }
  return {
    reply: { ok: true, kind: 'occlude', outputs: rowsOf.widths, rows: out, axes: layout.axes, modelRows, seconds: (now() - startedAt) / 1000 },
    transfer: [],
  };
}

/** The median of seven runs of a batch of random inputs: what the placement judges. */
async function probeJob(job: Extract<WorkerJob, { kind: 'probe' }>): Promise<{ reply: WorkerReply; transfer: ArrayBuffer[] }> {
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

/**
 * The model over rows of its one input (each of shape `rowDims`), every floating-point output's columns
 * side by side: what both explanation methods attribute. A fixed batch size is filled chunk by chunk,
 * the last chunk padded with its last row.
 */
function rowsModel(rowDims: number[]) {
  const input = model.inputs[0];
  const rowSize = rowDims.reduce((n, d) => n * d, 1);
  const fixed = input.shape[0] > 0 ? input.shape[0] : 0;
  const outputs = explainedOutputs(model.outputs);
  const widths: { name: string; width: number }[] = outputs.map((o) => ({ name: o.name, width: 0 }));
  const runChunk = async (rows: Float64Array, count: number, into: Float64Array | null, at: number) => {
    const sent = fixed || count;
    let values = rows;
    if (sent !== count) {
      values = new Float64Array(sent * rowSize);
      for (let r = 0; r < sent; r++) values.set(rows.subarray(Math.min(r, count - 1) * rowSize, (Math.min(r, count - 1) + 1) * rowSize), r * rowSize);
    }
    const result = await model.run({ [input.name]: { data: rowsAsTensorData(input.datatype, values, sent * rowSize), dims: [sent, ...rowDims] } });
    outputs.forEach((o, i) => (widths[i].width = result[o.name].data.length / sent));
    const width = widths.reduce((n, w) => n + w.width, 0);
    const data = into ?? new Float64Array(count * width);
    for (let r = 0; r < count; r++) {
      let k = (at + r) * width;
      for (const [i, o] of outputs.entries()) {
        const out = result[o.name].data as ArrayLike<number>;
        const w = widths[i].width;
        for (let j = 0; j < w; j++) data[k++] = o.datatype === 'FP16' ? fromHalfBits(out[r * w + j]) : out[r * w + j];
      }
    }
    return { data, width };
  };
  const run: BatchModel = async (rows, count) => {
    if (!fixed || count <= fixed) return runChunk(rows, count, null, 0);
    const first = await runChunk(rows.subarray(0, fixed * rowSize), fixed, null, 0);
    const data = new Float64Array(count * first.width);
    data.set(first.data);
    for (let from = fixed; from < count; from += fixed) {
      const n = Math.min(fixed, count - from);
      await runChunk(rows.subarray(from * rowSize, (from + n) * rowSize), n, data, from);
    }
    return { data, width: first.width };
  };
  return { run, widths, chunk: fixed || OCCLUSION_CHUNK };
}

/** An answer's bytes as posted back: moved when they fill a buffer of their own, copied otherwise. */
function movable(bytes: Buffer): { body: Uint8Array; own: ArrayBuffer[] } {
  const body = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { body, own: body.buffer instanceof ArrayBuffer && body.buffer.byteLength === body.byteLength ? [body.buffer] : [] };
}

/** Kernel SHAP over this worker's own session, against the background the setup carries. */
function explainerFor(explain: ExplainSetup) {
  const rows = rowsModel([explain.features]);
  const kernel = kernelExplainer(rows.run, Float64Array.from(explain.background), explain.features, { samples: explain.samples, seed: explain.seed });
  return { kernel, features: explain.features, outputs: rows.widths };
}

port.on('message', (job: WorkerJob) => {
  collectWhenIdle(job.kind === 'rest' || job.kind === 'grpc' ? job.body.byteLength : 0);
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
