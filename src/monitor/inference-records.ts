/**
 * The inference log's record: one JSON line per row the server answered,
 * written by the server (main thread or worker) and read back by
 * `mlops monitor --labels`. Tensors are written as in an Open Inference
 * Protocol response, one row each, so any JSON tool can read them.
 */
import { sliceTensorData, type Datatype } from '../model/datatypes.js';
import type { Tensor } from '../model/session.js';
import { jsonDataText } from '../protocol/json-data.js';

export const RECORD_TYPE = 'mlops.inference';
/** The CloudEvents `type` of each event the HTTP sink posts. */
export const CLOUDEVENT_TYPE = 'dev.mlops.inference.row';

export interface LoggedTensor {
  name: string;
  datatype: Datatype;
  shape: number[];
  data: unknown[];
}

export interface InferenceRecord {
  type: typeof RECORD_TYPE;
  /** The request's id (its own, or the one the server generated and answered with). */
  id: string;
  /** This row's index in the request, and the request's row count. */
  row: number;
  rows: number;
  time: string;
  model: string;
  version: string;
  sha256: string;
  outputs: LoggedTensor[];
  inputs?: LoggedTensor[];
}

export interface RecordModel {
  name: string;
  version: string;
  sha256: string;
}

interface Named {
  name: string;
  datatype: Datatype;
}

/** One row of a tensor as OIP JSON; a tensor without the request's rows (a scalar, a shared state) is written whole. */
function rowTensorText(spec: Named, tensor: Tensor, row: number, rows: number): string {
  const batched = tensor.dims[0] === rows && rows > 0;
  const width = batched ? tensor.data.length / rows : tensor.data.length;
  const shape = batched ? [1, ...tensor.dims.slice(1)] : tensor.dims;
  const data = batched ? sliceTensorData(tensor.data, row * width, (row + 1) * width) : tensor.data;
  return `{"name":${JSON.stringify(spec.name)},"datatype":"${spec.datatype}","shape":[${shape.join(',')}],"data":${jsonDataText(spec.datatype, data)}}`;
}

/** What every record of a model's server says of the model: built once per server (or worker). */
export function recordModelOf(model: { name: string; version: string; info: { sha256: string }; inputs: Named[]; outputs: Named[] }): RecordedRequest['model'] {
  return { name: model.name, version: model.version, sha256: model.info.sha256, inputs: model.inputs, outputs: model.outputs };
}

export interface RecordedRequest {
  id: string;
  /** The request's rows. */
  rows: number;
  /** The rows these tensors hold, when not all (a request run one instance at a time is logged in parts). */
  part?: { firstRow: number; rows: number };
  model: RecordModel & { inputs: Named[]; outputs: Named[] };
}

/** The log lines (newline-terminated) for the rows of one request that `outputs` (and `inputs`, when logged) hold. */
export function encodeInferenceRecords(request: RecordedRequest, outputs: Record<string, Tensor>, inputs?: Record<string, Tensor>): string {
  const { id, rows, model } = request;
  const { firstRow, rows: held } = request.part ?? { firstRow: 0, rows };
  const outputTensors = model.outputs.filter((o) => outputs[o.name]);
  const head = `{"type":"${RECORD_TYPE}","id":${JSON.stringify(id)},"rows":${rows},"time":"${new Date().toISOString()}","model":${JSON.stringify(model.name)},"version":${JSON.stringify(model.version)},"sha256":"${model.sha256}","row":`;
  let text = '';
  for (let r = 0; r < Math.max(held, 1); r++) {
    const out = outputTensors.map((o) => rowTensorText(o, outputs[o.name], r, held)).join(',');
    const inp = inputs
      ? `,"inputs":[${model.inputs
          .filter((i) => inputs[i.name])
          .map((i) => rowTensorText(i, inputs[i.name], r, held))
          .join(',')}]`
      : '';
    text += `${head}${firstRow + r},"outputs":[${out}]${inp}}\n`;
  }
  return text;
}

/** Copies of the tensors' data, for a log that outlives buffers handed to a worker thread. */
export function copyTensors(tensors: Record<string, Tensor>): Record<string, Tensor> {
  return Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, { data: t.data.slice(), dims: t.dims }]));
}

function isRecord(value: unknown): value is InferenceRecord {
  const r = value as InferenceRecord;
  return typeof r === 'object' && r !== null && r.type === RECORD_TYPE && typeof r.id === 'string' && Number.isInteger(r.row) && Array.isArray(r.outputs);
}

/**
 * The records in one line of a log: the file sink's lines, `docker logs` or
 * `kubectl logs --prefix` lines (anything before the first "{" is ignored),
 * and CloudEvents, alone or in a batch, from the HTTP sink. Other lines: none.
 */
export function recordsInLine(line: string): InferenceRecord[] {
  const start = line.search(/[[{]/);
  if (start === -1 || !line.includes(RECORD_TYPE)) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(line.slice(start));
  } catch {
    return [];
  }
  const items = Array.isArray(parsed) ? parsed : [parsed];
  const out: InferenceRecord[] = [];
  for (const item of items as unknown[]) {
    const data = (item as { specversion?: unknown; data?: unknown })?.specversion !== undefined ? (item as { data: unknown }).data : item;
    if (isRecord(data)) out.push(data);
  }
  return out;
}
