import * as ort from 'onnxruntime-node';
import { inputError } from '../errors.js';
import { isServableDatatype, type Datatype, type TensorData } from './datatypes.js';
import { defaultModelName, inspectModel, type ModelInfo, type TensorSpec } from './inspect.js';
import { ModelRunError, ortCause } from './run-error.js';

// ONNX Runtime's own log lines (an error line per failed run, thousands a benchmark) never reach the
// user: failures come back as exceptions, which mlops reports itself, each distinct one once.
ort.env.logLevel = 'fatal';

export interface ServableTensor extends TensorSpec {
  datatype: Datatype;
  shape: number[];
  dims: (number | string)[];
  /** The model declares no shape: any rank (up to a bound) is taken, and ONNX Runtime judges. */
  anyShape?: boolean;
  /** Requests may carry NaN and infinities in this (floating-point) input: a model that reads NaN as "missing". */
  allowNonFinite?: boolean;
}

export interface Tensor {
  data: TensorData;
  dims: number[];
}

export type Tensors = Record<string, Tensor>;

export interface LoadedModel {
  info: ModelInfo;
  name: string;
  version: string;
  inputs: ServableTensor[];
  outputs: ServableTensor[];
  run(feeds: Tensors): Promise<Tensors>;
  release(): Promise<void>;
}

export interface LoadModelOptions {
  path: string;
  cwd?: string;
  name?: string;
  version?: string;
  /** When set, the file must have this sha256 or loading is refused. */
  expectedSha256?: string;
  intraOpThreads?: number;
  /** Accept NaN and infinities in floating-point inputs (server.allowNonFinite); refused by default. */
  allowNonFinite?: boolean;
}

function servable(spec: TensorSpec, role: 'input' | 'output', file: string): ServableTensor {
  if (!spec.isTensor) {
    const zipmap = role === 'output' && spec.datatype.startsWith('seq(map(');
    throw inputError(
      `${file}: ${role} '${spec.name}' is a ${spec.datatype}, not a tensor; only tensor ${role}s can be served`,
      zipmap
        ? "this is scikit-learn's ZipMap output: convert with skl2onnx options={id(model): {'zipmap': False}}"
        : `re-export the model so that '${spec.name}' is a plain tensor`,
    );
  }
  if (!isServableDatatype(spec.datatype)) {
    throw inputError(
      `${file}: ${role} '${spec.name}' has datatype ${spec.datatype}, which the server cannot exchange as JSON`,
      'cast it to FP32/FP16/INT64 (or another standard type) in the exported graph',
    );
  }
  // A tensor without a declared shape is treated as rank-unknown: any shape accepted.
  return { ...spec, datatype: spec.datatype, shape: spec.shape ?? [], dims: spec.dims ?? [], ...(spec.shape === null ? { anyShape: true } : {}) };
}

/** A model's servable signature, without a session: what a server's main thread needs when workers run it. */
export interface ServableModel {
  info: ModelInfo;
  name: string;
  version: string;
  inputs: ServableTensor[];
  outputs: ServableTensor[];
}

/** Reads and checks a model for serving: the file, its sha256 and a signature of plain tensors. */
export async function readServableModel(options: LoadModelOptions): Promise<ServableModel> {
  const info = await inspectModel(options.path, { cwd: options.cwd });
  if (options.expectedSha256 && info.sha256 !== options.expectedSha256.toLowerCase()) {
    throw inputError(
      `${options.path}: sha256 is ${info.sha256} but ${options.expectedSha256} was expected; refusing to serve a different model`,
      'rebuild the image, or pass the sha256 of the model you meant to serve',
    );
  }
  return {
    info,
    name: options.name || defaultModelName(options.path),
    version: options.version || '1',
    inputs: info.inputs.map((s) => ({ ...servable(s, 'input', options.path), ...(options.allowNonFinite ? { allowNonFinite: true } : {}) })),
    outputs: info.outputs.map((s) => servable(s, 'output', options.path)),
  };
}

/** Loads and checks a model for serving: signature, sha256, then the ONNX Runtime session. */
export async function loadModel(options: LoadModelOptions): Promise<LoadedModel> {
  const { info, inputs, outputs, name, version } = await readServableModel(options);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(info.path, {
      graphOptimizationLevel: 'all',
      logSeverityLevel: 4,
      ...(options.intraOpThreads ? { intraOpNumThreads: options.intraOpThreads } : {}),
    });
  } catch (error) {
    throw inputError(
      `${options.path}: ONNX Runtime cannot load this model: ${(error as Error).message.split('\n')[0]}`,
      'check the opset and operators against onnxruntime-node ' + ort.env.versions.common,
      error,
    );
  }
  const outputNames = outputs.map((o) => o.name);
  return {
    info,
    name,
    version,
    inputs,
    outputs,
    async run(feeds) {
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const spec of inputs) {
        const tensor = feeds[spec.name];
        ortFeeds[spec.name] = new ort.Tensor(ORT_TYPES[spec.datatype], tensor.data, tensor.dims);
      }
      let results: ort.InferenceSession.OnnxValueMapType;
      try {
        results = await session.run(ortFeeds, outputNames);
      } catch (error) {
        throw new ModelRunError(ortCause(String((error as Error)?.message ?? error)));
      }
      const out: Tensors = {};
      for (const name of outputNames) {
        const t = results[name];
        out[name] = { data: t.data, dims: t.dims.map(Number) };
      }
      return out;
    },
    release: () => session.release(),
  };
}

/** ONNX Runtime's name for each datatype. */
export const ORT_TYPES: Record<Datatype, ort.Tensor.Type> = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
};
