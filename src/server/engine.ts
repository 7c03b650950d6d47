import { availableParallelism } from 'node:os';
import { loadModel, readServableModel, type LoadedModel, type ServableModel, type Tensors } from '../model/session.js';
import { probeFeeds } from '../model/random-feeds.js';
import { ModelRunError } from '../model/run-error.js';
import { profileMismatch, RowBinner } from '../monitor/profile.js';
import { BadRequest, DeadlineExceeded } from '../protocol/request.js';
import { Batcher, canBatch } from './batcher.js';
import { SlowRunJudge } from './slow-runs.js';
import { WorkerPool } from './worker-pool.js';
import { weightBytes, type MemoryLedger } from './memory-budget.js';
import { explainableInput, explainedOutputs } from '../explain/tabular.js';
import { now, sessionOptions, transferables, type RestLogging, type WorkerReply, type WorkerSetup } from './worker-protocol.js';

export interface EngineOptions extends WorkerSetup {
  /** Worker threads with a session each; 0 runs every request on the main thread. */
  workers: number;
  /** Batches the model runs faster than this (measured at start) run on the main thread, saving the hop to a worker. */
  inlineMaxMs: number;
  batching: { enabled: boolean; maxBatchSize: number; maxWaitMs: number };
  log: (line: string) => void;
  onRun: (rows: number, seconds: number) => void;
  onQueued: (seconds: number) => void;
  /** Bin indices of the rows each run served, for the live profile (only with setup.profile). */
  onProfiled?: (indices: Uint8Array, rows: number) => void;
  /** A request's deadline passed before its run started ('queued') or during it ('running': the worker was abandoned). */
  onDeadline?: (stage: 'queued' | 'running') => void;
  /** A worker thread was replaced: abandoned at a deadline, or it exited. */
  onWorkerReplaced?: (reason: 'deadline' | 'exited') => void;
  /** Kernel SHAP coalitions per explained row (the background comes from the reference profile). */
  explainSamples?: number;
  /** Occlusion patch size, in positions along height and width. */
  explainPatch?: number;
  /** server.memoryBudget, shared by every model the server loads: the start is refused when the sessions would not fit. */
  memory?: MemoryLedger;
}

export type ExplainReply = Extract<WorkerReply, { ok: true; kind: 'explain' }>;
export type OcclusionReply = Extract<WorkerReply, { ok: true; kind: 'occlude' }>;

/** What the explain route offers (Kernel SHAP for a tabular input, occlusion for a spatial one), or why it cannot and the HTTP status that says so. */
export type Explanations =
  | { method: 'kernel_shap'; input: string; features: string[]; samples: number; backgroundRows: number }
  | { method: 'occlusion'; input: string; patch: number }
  | { unavailable: string; status: number };

export interface RestReply {
  body: Uint8Array;
  headerLength?: number;
  rows: number;
  /** The request's inference log lines, when it asked for them. */
  logged?: string;
}

/** Where small batches run, and why: reported in the start-up log and on /metrics. */
export interface Placement {
  where: 'main-thread' | 'workers';
  reason: string;
}

/**
 * Runs the model for the server: the batching queue in front of a pool of
 * worker threads, or of the main thread's own session for models so fast that
 * the hop to a worker would cost more than the run (measured at start, and
 * abandoned at the first run that takes too long).
 */
export interface InferenceEngine {
  model: ServableModel;
  batching: boolean;
  workers: number;
  readonly placement: Placement;
  /** Runs abandoned at a deadline still inside ONNX Runtime, each holding a thread. */
  readonly abandonedRuns: number;
  /** False while no worker can take work (every one held by a run past its deadline): not ready. */
  readonly accepting: boolean;
  /** Requests (inferences and explanations) not yet answered. */
  readonly active: number;
  /** Why the reference profile given is not used (it does not fit the model), or null. */
  profileProblem: string | null;
  /** `deadline`: performance.now() time past which the request fails with DeadlineExceeded (504). */
  infer(feeds: Tensors, rows: number, deadline?: number): Promise<Tensors>;
  /** A whole REST request decoded, run and encoded in a worker; only when workers > 0. `owned`: no one else uses body's buffer. */
  inferRest(body: Uint8Array, header: number | undefined, owned: boolean, request: { id: string; log?: RestLogging }, deadline?: number): Promise<RestReply>;
  /** Rows answered from the response cache, counted in the live profile as if they had run. */
  countCached(feeds: Tensors, result: Tensors): void;
  /** A whole gRPC ModelInferRequest decoded, run and encoded in a worker; only when workers > 0. Resolves with the ModelInferResponse's bytes. */
  inferGrpc(body: Uint8Array, owned: boolean, request: { id: string }, deadline?: number): Promise<Uint8Array>;
  /** Resolves with the runs still inside ONNX Runtime in abandoned workers: the process cannot exit normally while any remain. */
  release(): Promise<{ abandonedRuns: number }>;
  readonly explanations: Explanations;
  /** Kernel SHAP for `count` rows of the tabular input, in a worker thread; at most workers - 1 explanations at once, so inference keeps a worker. */
  explain(rows: Float64Array, count: number, deadline?: number): Promise<ExplainReply>;
  /** Occlusion for `count` rows of a spatial input (each of shape `dims`), under the same limit. */
  occlude(data: Float64Array, dims: number[], count: number, deadline?: number): Promise<OcclusionReply>;
}

function replyOrThrow<K extends 'run' | 'rest' | 'grpc' | 'explain' | 'occlude'>(reply: WorkerReply, kind: K): Extract<WorkerReply, { ok: true; kind: K }> {
  if (!reply.ok)
    throw reply.status !== 500 ? new BadRequest(reply.message, reply.status) : reply.modelFailed ? new ModelRunError(reply.message) : new Error(reply.message);
  if (reply.kind !== kind) throw new Error(`inference worker answered a ${kind} job with ${reply.kind}`);
  return reply as Extract<WorkerReply, { ok: true; kind: K }>;
}

export async function startEngine(options: EngineOptions): Promise<InferenceEngine> {
  const { log } = options;
  const { setup, model, giveBack, profileProblem, explanations } = await prepareModel(options);
  const binner = setup.profile ? new RowBinner(setup.profile, model.inputs, model.outputs) : undefined;
  const profiled = (p: { indices: Uint8Array; rows: number } | null | undefined) => {
    if (p) options.onProfiled?.(p.indices, p.rows);
  };
  const batching = options.batching.enabled && canBatch(model.inputs, model.outputs);
  // The most rows the main thread may run at once: what the start-up probe measured. A larger request
  // costs more than was measured, so it goes to a worker, where a deadline can abandon it.
  const inlineRows = batching ? options.batching.maxBatchSize : 1;
  const started = await placeModel(options, setup, model, inlineRows, giveBack);
  const { pool, local } = started;
  let placement = started.placement;

  const judge = SlowRunJudge.forInlineLimit(options.inlineMaxMs);
  const runLocal = async (feeds: Tensors): Promise<Tensors> => {
    // onnxruntime-node defers session.run by one setImmediate, and the loop does other work (reading and
    // parsing requests) before it fires: timing the whole call would count that work as the model's.
    // An immediate queued first fires just before the native run; the await resumes just after it.
    let started = performance.now();
    setImmediate(() => (started = performance.now()));
    const result = await local!.run(feeds);
    const ms = performance.now() - started;
    if (binner) profiled(binner.bin(feeds, result));
    if (!pool || placement.where !== 'main-thread') return result;
    const reason = judge.record(ms);
    if (reason) {
      placement = { where: 'workers', reason };
      log(`inference moves to ${pool.size} worker thread(s): ${placement.reason}`);
      const released = local!;
      setImmediate(() => void released.release());
    }
    return result;
  };
  const runInWorker = async (feeds: Tensors, deadline: number): Promise<Tensors> => {
    const reply = replyOrThrow(await pool!.run({ kind: 'run', feeds }, transferables(feeds), deadline), 'run');
    profiled(reply.profiled);
    return reply.result;
  };
  // Without workers (server.workers 0) every run is local, however many rows: there is no worker to send a large one to.
  const run = (feeds: Tensors, rows: number, deadline: number) =>
    placement.where === 'main-thread' && (rows <= inlineRows || !pool) ? runLocal(feeds) : runInWorker(feeds, deadline);
  const batcher = batcherFor(run, model, options, batching, () => (placement.where === 'main-thread' ? 1 : pool!.size));
  const explaining = explainSlots(pool, explanations, options);
  const whole = wholeRequests(pool, options, profiled);
  const active = new ActiveRequests();
  return {
    model,
    batching,
    workers: pool?.size ?? 0,
    profileProblem,
    get placement() {
      return placement;
    },
    get abandonedRuns() {
      return pool?.abandonedRuns ?? 0;
    },
    get active() {
      return active.count;
    },
    get accepting() {
      return pool?.accepting ?? true;
    },
    infer: (feeds, rows, deadline) => active.counted(batcher.infer(feeds, rows, deadline)),
    explanations,
    explain: (rows, count, deadline) => active.counted(explaining.explain(rows, count, deadline)),
    occlude: (data, dims, count, deadline) => active.counted(explaining.occlude(data, dims, count, deadline)),
    inferRest: (body, header, owned, request, deadline) => active.counted(whole.inferRest(body, header, owned, request, deadline)),
    inferGrpc: (body, owned, request, deadline) => active.counted(whole.inferGrpc(body, owned, request, deadline)),
    countCached: (feeds, result) => {
      if (binner) profiled(binner.bin(feeds, result));
    },
    async release() {
      await pool?.close();
      if (placement.where === 'main-thread') await local?.release();
      giveBack?.();
      return { abandonedRuns: pool?.abandonedRuns ?? 0 };
    },
  };
}

/** The queue in front of `run`: batches as large as config allows, as many at once as there are places to run them. */
function batcherFor(
  run: ConstructorParameters<typeof Batcher>[0],
  model: ServableModel,
  options: EngineOptions,
  batching: boolean,
  concurrency: () => number,
): Batcher {
  return new Batcher(run, model.inputs, {
    concurrency,
    batching,
    maxBatchSize: options.batching.maxBatchSize,
    maxWaitMs: options.batching.maxWaitMs,
    onRun: options.onRun,
    onQueued: options.onQueued,
    onExpired: () => options.onDeadline?.('queued'),
  });
}

/** The model read and checked, its memory claimed, the reference profile and explanation background that fit it. */
async function prepareModel(options: EngineOptions) {
  const setup: WorkerSetup = {
    modelPath: options.modelPath,
    modelName: options.modelName,
    modelVersion: options.modelVersion,
    expectedSha256: options.expectedSha256,
    intraOpThreads: options.intraOpThreads,
    allowNonFinite: options.allowNonFinite,
  };
  const model = await readServableModel(sessionOptions(setup));
  const giveBack = options.memory?.claim({ weights: await weightBytes(model.info), workers: options.workers, modelName: model.name, version: model.version });
  const profileProblem = options.profile ? profileMismatch(options.profile, { sha256: model.info.sha256, inputs: model.inputs, outputs: model.outputs }) : null;
  if (options.profile && !profileProblem) setup.profile = options.profile;
  const explanations = explanationsFor(model, options, profileProblem);
  if ('method' in explanations && explanations.method === 'kernel_shap') {
    const background = options.profile!.explainBackground!;
    setup.explain = {
      input: background.input,
      features: explanations.features.length,
      background: background.rows.flat(),
      samples: explanations.samples,
      seed: 7,
    };
  }
  return { setup, model, giveBack, profileProblem, explanations };
}

/**
 * The worker pool started, and where runs go: the main thread's own session when a probe found the
 * model fast enough (or there are no workers), else the workers. Whatever started is stopped on failure.
 */
async function placeModel(
  options: EngineOptions,
  setup: WorkerSetup,
  model: ServableModel,
  inlineRows: number,
  giveBack: (() => void) | undefined,
): Promise<{ pool: WorkerPool | undefined; local: LoadedModel | undefined; placement: Placement }> {
  // Unless set, the cores are shared out between the workers' sessions: ONNX Runtime's default of a thread
  // per core in every session oversubscribes the machine as soon as two workers run at once.
  const threadsEach = options.intraOpThreads || Math.max(1, Math.floor(availableParallelism() / Math.max(1, options.workers)));
  const pool =
    options.workers > 0
      ? await WorkerPool.start(options.workers, { ...setup, intraOpThreads: threadsEach }, options.log, {
          onDeadline: options.onDeadline,
          onReplaced: options.onWorkerReplaced,
        })
      : undefined;
  try {
    if (!pool) return { pool, local: await loadModel(sessionOptions(setup)), placement: { where: 'main-thread', reason: 'server.workers is 0' } };
    const placement = await probePlacement(pool, model, inlineRows, options.inlineMaxMs);
    if (placement.where !== 'main-thread') return { pool, local: undefined, placement };
    // One ONNX Runtime thread unless set: a batch runs in under server.inlineMaxMs, where a thread pool
    // only adds the hand-over and its threads spinning between runs (ORT's default is a thread per core).
    const local = await loadModel({ ...sessionOptions(setup), intraOpThreads: options.intraOpThreads || 1 });
    // A session's first runs allocate and are slow; they are not what the placement should judge.
    for (let i = 0; i < 3; i++) await local.run(probeFeeds(model.inputs, inlineRows, i)).catch(() => undefined);
    return { pool, local, placement };
  } catch (error) {
    await pool?.close();
    giveBack?.();
    throw error;
  }
}

/** Explanations in worker threads, at most all workers but one at once, so inference always keeps one (with one worker, they share it). */
function explainSlots(pool: WorkerPool | undefined, explanations: Explanations, options: EngineOptions) {
  const slots = Math.max(1, (pool?.size ?? 1) - 1);
  let explaining = 0;
  const waiting: (() => void)[] = [];
  const inSlot = async <T>(deadline: number, work: () => Promise<T>): Promise<T> => {
    if (!('method' in explanations)) throw new BadRequest(explanations.unavailable, explanations.status);
    while (explaining >= slots) await new Promise<void>((resolve) => waiting.push(resolve));
    // A slot that came too late is not used: the client has been answered by its deadline, or should be.
    if (performance.now() > deadline) {
      waiting.shift()?.();
      throw new DeadlineExceeded('the explanation did not start before the deadline: other explanations held the workers');
    }
    explaining++;
    try {
      return await work();
    } finally {
      explaining--;
      waiting.shift()?.();
    }
  };
  return {
    explain: (rows: Float64Array, count: number, deadline = Infinity) =>
      inSlot(deadline, async () => replyOrThrow(await pool!.run({ kind: 'explain', rows, count }, [rows.buffer as ArrayBuffer], deadline), 'explain')),
    occlude: (data: Float64Array, dims: number[], count: number, deadline = Infinity) =>
      inSlot(deadline, async () => {
        const job = { kind: 'occlude' as const, data, dims, count, patch: options.explainPatch ?? 8 };
        return replyOrThrow(await pool!.run(job, [data.buffer as ArrayBuffer], deadline), 'occlude');
      }),
  };
}

/** Whole requests (a REST body, a gRPC message) decoded, run and encoded in a worker: their queue time, run and profile counted as a batch's are. */
function wholeRequests(pool: WorkerPool | undefined, options: EngineOptions, profiled: (p: { indices: Uint8Array; rows: number } | null | undefined) => void) {
  const recordWhole = (queuedAt: number, reply: { startedAt: number; rows: number; seconds: number; profiled?: Parameters<typeof profiled>[0] }) => {
    options.onQueued((reply.startedAt - queuedAt) / 1000);
    options.onRun(reply.rows, reply.seconds);
    profiled(reply.profiled);
  };
  const inferRest: InferenceEngine['inferRest'] = async (body, header, owned, request, deadline) => {
    const queuedAt = now();
    // A buffer that is the body's alone moves to the worker; any other is copied.
    const transfer = owned && body.buffer instanceof ArrayBuffer ? [body.buffer] : [];
    const reply = replyOrThrow(await pool!.run({ kind: 'rest', body, header, ...request }, transfer, deadline), 'rest');
    recordWhole(queuedAt, reply);
    return { body: reply.body, headerLength: reply.headerLength, rows: reply.rows, logged: reply.logged };
  };
  const inferGrpc: InferenceEngine['inferGrpc'] = async (body, owned, request, deadline) => {
    const queuedAt = now();
    const transfer = owned && body.buffer instanceof ArrayBuffer && body.byteLength === body.buffer.byteLength ? [body.buffer] : [];
    const reply = replyOrThrow(await pool!.run({ kind: 'grpc', body, id: request.id }, transfer, deadline), 'grpc');
    recordWhole(queuedAt, reply);
    return reply.body;
  };
  return { inferRest, inferGrpc };
}

/** Requests inside the engine: a model swapped out by a load is released only once they are answered. */
class ActiveRequests {
  count = 0;
  private readonly settled = () => void this.count--;
  counted<T>(work: Promise<T>): Promise<T> {
    this.count++;
    work.then(this.settled, this.settled);
    return work;
  }
}

/**
 * Whether the explain route can run, and how: Kernel SHAP for one tabular input (with a background in the
 * profile that fits), occlusion for one spatial input; a worker to run in and an output to attribute either way.
 */
function explanationsFor(model: ServableModel, options: EngineOptions, profileProblem: string | null): Explanations {
  const [input] = model.inputs;
  const spatial = model.inputs.length === 1 && input.datatype !== 'BYTES' && input.datatype !== 'BOOL' && input.shape.length >= 3;
  if (!explainableInput(model.inputs) && !spatial) {
    return {
      unavailable: `explanations take one numeric input, [batch, features] (Kernel SHAP) or image-like (occlusion); model '${model.name}' has ${model.inputs.map((i) => `${i.name} ${i.datatype} [${i.shape.join(', ')}]`).join(', ')}`,
      status: 400,
    };
  }
  if (explainedOutputs(model.outputs).length === 0) return { unavailable: `model '${model.name}' has no floating-point output to attribute`, status: 400 };
  if (options.workers === 0) return { unavailable: 'explanations run in worker threads, and this server has server.workers 0', status: 503 };
  if (spatial) return { method: 'occlusion', input: input.name, patch: options.explainPatch ?? 8 };
  const background = options.profile?.explainBackground;
  if (!background || profileProblem)
    return {
      unavailable: `this server has no explanation background: ${profileProblem ? `the reference profile does not fit the model (${profileProblem})` : 'rebuild the image with reference data (monitor.reference or test.holdout) and explain.backgroundRows above 0'}`,
      status: 409,
    };
  if (background.input !== input.name || background.rows.some((r) => r.length !== input.shape[1]))
    return { unavailable: "the explanation background does not fit the model's input: rebuild the image", status: 409 };
  return {
    method: 'kernel_shap',
    input: background.input,
    features: background.features,
    samples: options.explainSamples ?? 256,
    backgroundRows: background.rows.length,
  };
}

/** Runs a full batch of random inputs in a worker: fast enough, and small batches run on the main thread. */
async function probePlacement(pool: WorkerPool, model: ServableModel, rows: number, inlineMaxMs: number): Promise<Placement> {
  if (inlineMaxMs <= 0) return { where: 'workers', reason: 'server.inlineMaxMs is 0' };
  // A loop count or a branch taken from an input: one request can cost any time, so none runs where it cannot be abandoned.
  const { controlFlow } = model.info;
  if (controlFlow.length > 0) return { where: 'workers', reason: `the model has ${controlFlow.join(', ')}, whose cost can depend on its inputs' values` };
  // Strings, or sizes the client picks beyond the batch: a probe cannot tell what a real request costs.
  const varying = model.inputs.find((s) => s.datatype === 'BYTES' || s.shape.slice(1).some((d) => d < 0));
  if (varying)
    return {
      where: 'workers',
      reason: `input '${varying.name}' has ${varying.datatype === 'BYTES' ? 'strings' : 'dynamic dimensions beyond the first'}, so the cost of a run cannot be measured ahead`,
    };
  const reply = await pool.run({ kind: 'probe', rows });
  if (!reply.ok || reply.kind !== 'probe' || reply.ms === null) {
    return { where: 'workers', reason: `the start-up probe did not run (${reply.ok && reply.kind === 'probe' ? reply.reason : 'failed'})` };
  }
  const measured = `a batch of ${rows} took ${reply.ms.toFixed(3)} ms`;
  return reply.ms < inlineMaxMs
    ? { where: 'main-thread', reason: `${measured} (under server.inlineMaxMs ${inlineMaxMs} ms): the hop to a worker would cost more` }
    : { where: 'workers', reason: `${measured} (over server.inlineMaxMs ${inlineMaxMs} ms)` };
}
