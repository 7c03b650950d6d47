import { Pool } from 'undici';
import { environmentError } from '../errors.js';
import { isServableDatatype, type Datatype } from '../model/datatypes.js';
import { loadModel, type LoadedModel, type Tensors } from '../model/session.js';
import { encodeTensorData } from '../server/codec.js';

export interface TensorSignature {
  name: string;
  datatype: Datatype;
  shape: number[];
}

/** Output data as plain numbers (or strings), whatever ran the model. */
export type Outputs = Record<string, { data: ArrayLike<number> | string[]; dims: number[] }>;

/** Something that runs the model on a batch: ONNX Runtime in-process, or a server over HTTP. */
export interface Predictor {
  modelName: string;
  inputs: TensorSignature[];
  outputs: TensorSignature[];
  predict(feeds: Tensors): Promise<Outputs>;
  close(): Promise<void>;
}

function asNumbers(datatype: Datatype, data: Tensors[string]['data']): ArrayLike<number> | string[] {
  if (datatype === 'BYTES') return data as string[];
  if (datatype === 'INT64' || datatype === 'UINT64' || datatype === 'FP16' || datatype === 'BOOL') return encodeTensorData(datatype, data) as number[];
  return data as ArrayLike<number>;
}

export function localPredictor(model: LoadedModel): Predictor {
  return {
    modelName: model.name,
    inputs: model.inputs,
    outputs: model.outputs,
    async predict(feeds) {
      const result = await model.run(feeds);
      const out: Outputs = {};
      for (const spec of model.outputs) out[spec.name] = { data: asNumbers(spec.datatype, result[spec.name].data), dims: result[spec.name].dims };
      return out;
    },
    close: () => model.release(),
  };
}

export async function openLocalPredictor(modelPath: string, name?: string, cwd?: string): Promise<Predictor> {
  return localPredictor(await loadModel({ path: modelPath, name, cwd }));
}

interface ServerTensor {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown[];
}

/** A server speaking the Open Inference Protocol: ours, KServe, Triton. */
export async function remotePredictor(baseUrl: string, modelName: string): Promise<Predictor> {
  const base = new URL(baseUrl);
  const pool = new Pool(base.origin, { connections: 4 });
  const prefix = base.pathname.replace(/\/$/, '');
  const call = async (method: 'GET' | 'POST', path: string, body?: string) => {
    try {
      const res = await pool.request({ method, path: prefix + path, body, headers: body ? { 'content-type': 'application/json' } : undefined });
      const text = await res.body.text();
      return { status: res.statusCode, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
    } catch (error) {
      throw environmentError(`cannot reach the server at ${baseUrl}: ${(error as Error).message}`, 'check the URL and that the server is up', undefined, error);
    }
  };
  const meta = await call('GET', `/v2/models/${encodeURIComponent(modelName)}`);
  if (meta.status !== 200) {
    await pool.close();
    throw environmentError(
      `the server at ${baseUrl} does not serve model '${modelName}' (HTTP ${meta.status}${meta.json.error ? `: ${meta.json.error}` : ''})`,
      'set model.name in config to the name the server uses',
    );
  }
  const signature = (list: unknown, what: string): TensorSignature[] =>
    ((list as ServerTensor[]) ?? []).map((t) => {
      if (!isServableDatatype(t.datatype)) throw environmentError(`the server reports ${what} '${t.name}' with datatype ${t.datatype}, which mlops cannot send`);
      return { name: t.name, datatype: t.datatype, shape: t.shape.map(Number) };
    });
  const inputs = signature(meta.json.inputs, 'input');
  const outputs = signature(meta.json.outputs, 'output');
  return {
    modelName,
    inputs,
    outputs,
    async predict(feeds) {
      const body = JSON.stringify({
        inputs: inputs.map((spec) => ({
          name: spec.name,
          datatype: spec.datatype,
          shape: feeds[spec.name].dims,
          data: encodeTensorData(spec.datatype, feeds[spec.name].data),
        })),
      });
      const res = await call('POST', `/v2/models/${encodeURIComponent(modelName)}/infer`, body);
      if (res.status !== 200) {
        throw environmentError(`the server answered HTTP ${res.status} to an inference request: ${String(res.json.error ?? 'no error message')}`);
      }
      const out: Outputs = {};
      for (const t of (res.json.outputs as ServerTensor[]) ?? []) out[t.name] = { data: (t.data ?? []) as number[], dims: t.shape };
      return out;
    },
    close: () => pool.close(),
  };
}
