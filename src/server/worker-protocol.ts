/** Messages between the server's main thread and its inference worker threads. */
import type { Tensors } from '../model/session.js';
import type { ReferenceProfile } from '../monitor/profile.js';

export interface WorkerSetup {
  modelPath: string;
  modelName: string;
  modelVersion: string;
  expectedSha256?: string;
  intraOpThreads: number;
  allowNonFinite?: boolean;
  /** The reference profile whose bins the workers count rows into; none: rows are not profiled. */
  profile?: ReferenceProfile;
  /** Kernel SHAP for the explain route: background rows of the one tabular input, row-major; none: no explanations. */
  explain?: ExplainSetup;
}

export interface ExplainSetup {
  input: string;
  features: number;
  background: number[];
  samples: number;
  seed: number;
}

/** One row's explanation: the outputs' values, and each feature's attribution to each output column ([feature * width + column]). */
export interface RowExplanation {
  output: number[];
  values: number[];
}

/** Rows x slots bin indices of a run, for the live profile (see RowBinner). */
export interface Profiled {
  rows: number;
  indices: Uint8Array;
}

export const sessionOptions = (setup: WorkerSetup) => ({
  path: setup.modelPath,
  name: setup.modelName,
  version: setup.modelVersion,
  expectedSha256: setup.expectedSha256,
  intraOpThreads: setup.intraOpThreads,
  allowNonFinite: setup.allowNonFinite,
});

export type RestLogging = 'outputs' | 'with-inputs';

export type WorkerJob =
  /** Run the model on feeds the main thread decoded (and batched). */
  | { kind: 'run'; feeds: Tensors }
  /**
   * A whole REST request: decode, run, encode here, off the main thread. `id`: the id to answer with when the
   * body has none; `log`: this request's rows go to the inference log, so the worker writes their lines too.
   */
  | { kind: 'rest'; body: Uint8Array; header?: number; id: string; log?: RestLogging }
  /** A whole gRPC ModelInferRequest's bytes: decode, run, encode the ModelInferResponse here. `id`: when the message has none. */
  | { kind: 'grpc'; body: Uint8Array; id: string }
  /** Time `rows` rows of random inputs, to choose where small batches run. */
  | { kind: 'probe'; rows: number }
  /** Kernel SHAP for `count` rows of the tabular input (row-major): one model call per row. */
  | { kind: 'explain'; rows: Float64Array; count: number }
  /** Occlusion for `count` rows of a spatial input, each of shape `dims`, in patches of `patch`. */
  | { kind: 'occlude'; data: Float64Array; dims: number[]; count: number; patch: number };

export type WorkerReply =
  | { ok: true; kind: 'run'; result: Tensors; startedAt: number; seconds: number; profiled?: Profiled }
  | { ok: true; kind: 'rest'; body: Uint8Array; headerLength?: number; rows: number; startedAt: number; seconds: number; profiled?: Profiled; logged?: string }
  | { ok: true; kind: 'grpc'; body: Uint8Array; rows: number; startedAt: number; seconds: number; profiled?: Profiled }
  | { ok: true; kind: 'probe'; ms: number | null; reason?: string }
  /** `outputs`: the attributed outputs and their columns, in the order the values run; `base`: the background's mean output. */
  | {
      ok: true;
      kind: 'explain';
      outputs: { name: string; width: number }[];
      base: number[];
      rows: RowExplanation[];
      coalitions: number;
      exact: boolean;
      modelRows: number;
      seconds: number;
    }
  /** Per row: the outputs' values and each patch's attribution to each column ([(i * grid[1] + j) * width + column]); `axes`: the spatial axes of the row shape. */
  | {
      ok: true;
      kind: 'occlude';
      outputs: { name: string; width: number }[];
      rows: { output: number[]; grid: [number, number]; patches: number[] }[];
      axes: [number, number];
      modelRows: number;
      seconds: number;
    }
  /** status: the HTTP status of a client error (400, ...); 500 for a failure of the model. */
  | { ok: false; status: number; message: string; modelFailed?: boolean };

export type WorkerHello = { ready: true } | { ready: false; message: string; hint?: string; exitCode: number };

/** The typed arrays' buffers that are theirs alone (exactly their size), so they can move instead of being copied. */
export function transferables(tensors: Tensors): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  for (const { data } of Object.values(tensors)) {
    if (Array.isArray(data)) continue;
    const buffer = data.buffer;
    if (buffer instanceof ArrayBuffer && buffer.byteLength === data.byteLength) out.add(buffer);
  }
  return [...out];
}

/** The nice value of inference threads: below the main thread's, so that it preempts them. */
export const INFERENCE_NICE = 10;

/** Wall-clock milliseconds comparable across threads (each thread's performance.now() has its own origin). */
export const now = () => performance.timeOrigin + performance.now();
