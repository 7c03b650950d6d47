/**
 * The Open Inference Protocol over gRPC: the official proto, loaded with
 * @grpc/proto-loader, and the mapping between its messages and tensors.
 * Used by the server and by mlops' own gRPC client.
 */
import * as grpc from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { allocate, INTEGER_RANGE, tensorFromBytes, tensorToBytes, type Datatype, type TensorData } from '../model/datatypes.js';
import type { Tensors } from '../model/session.js';
import {
  BadRequest,
  bytesInput,
  describeInputs,
  finishInputs,
  fmtShape,
  product,
  resolveInput,
  resolveOutputs,
  textElement,
  wantedOutputs,
  type InferRequest,
  type Signature,
} from './request.js';

export const INFERENCE_SERVICE = 'inference.GRPCInferenceService';

/**
 * Where the proto file is: beside this module in src/ and dist/protocol/, and
 * beside the bundled server (dist/ and /app in an image). The build copies it there.
 */
function protoPath(): string {
  const candidates = ['./open_inference_grpc.proto', './protocol/open_inference_grpc.proto'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`open_inference_grpc.proto is missing; looked in ${candidates.join(', ')}`);
  return found;
}

// grpc-js writes its own log lines to stderr; mlops reports errors itself, one line each.
// GRPC_VERBOSITY (grpc-js's own variable) still turns them back on.
if (process.env.GRPC_VERBOSITY === undefined) grpc.setLogVerbosity(grpc.logVerbosity.NONE);

/** A gRPC error's message without grpc-js's diagnostics: "14 UNAVAILABLE: connect ECONNREFUSED 127.0.0.1:1". */
export function grpcErrorMessage(error: { code?: number; details?: string; message?: string }): string {
  const status = error.code !== undefined ? `${error.code} ${grpc.status[error.code] ?? ''}`.trim() : '';
  const cause = /Last error: (?:Error: )?([^\n]*?)\.? Resolution note/.exec(error.details ?? '')?.[1];
  const details = cause ?? (error.details || error.message || 'unknown error');
  return status ? `${status}: ${details}` : details;
}

let loaded: PackageDefinition | undefined;

/** The proto's package definition: 64-bit integers as JS numbers, bytes as Buffers, absent fields left out. */
export function inferenceProto(): PackageDefinition {
  loaded ??= loadSync(protoPath(), { keepCase: true, longs: Number, enums: String, defaults: false, oneofs: true });
  return loaded;
}

/** InferTensorContents' field for each datatype (FP16 has none: raw contents only). */
const CONTENTS_FIELD: Record<Datatype, string | undefined> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents',
  UINT16: 'uint_contents',
  UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
  FP16: undefined,
};

export interface GrpcTensor {
  name?: string;
  datatype?: string;
  shape?: (number | string)[];
  contents?: Record<string, unknown[] | undefined>;
}

export interface GrpcInferRequest {
  model_name?: string;
  model_version?: string;
  id?: string;
  inputs?: GrpcTensor[];
  outputs?: { name?: string }[];
  raw_input_contents?: Uint8Array[];
}

export interface GrpcInferResponse {
  model_name: string;
  model_version: string;
  id?: string;
  outputs: { name: string; datatype: string; shape: number[]; contents?: Record<string, unknown[]> }[];
  raw_output_contents?: Uint8Array[];
}

function fromContents(datatype: Datatype, values: unknown[], count: number, where: string): TensorData {
  if (values.length !== count) throw new BadRequest(`${where}: shape needs ${count} elements, contents has ${values.length}`);
  if (datatype === 'BYTES') return values.map((v, i) => textElement(v as Uint8Array, i, where));
  const out = allocate(datatype, count) as unknown as { [i: number]: unknown };
  const range = INTEGER_RANGE[datatype];
  for (let i = 0; i < count; i++) {
    const v = values[i];
    if (datatype === 'BOOL') out[i] = v ? 1 : 0;
    else if (datatype === 'INT64' || datatype === 'UINT64') out[i] = BigInt(v as number);
    else if (range && ((v as number) < range[0] || (v as number) > range[1]))
      throw new BadRequest(`${where}: element ${i} is ${String(v)}, out of range for ${datatype}`);
    else out[i] = v;
  }
  return out as unknown as TensorData;
}

/** Decodes and checks a ModelInferRequest: raw contents, typed contents, or a mix is refused as the spec says. */
export function decodeGrpcRequest(message: GrpcInferRequest, signature: Signature): InferRequest {
  const { inputs } = signature;
  const list = message.inputs ?? [];
  if (list.length === 0) throw new BadRequest(`"inputs" must be non-empty; this model takes ${describeInputs(inputs)}`);
  const raw = message.raw_input_contents ?? [];
  if (raw.length > 0 && raw.length !== list.length) {
    throw new BadRequest(`raw_input_contents has ${raw.length} entries for ${list.length} inputs; send one per input, in order`);
  }
  const tensors: Tensors = {};
  list.forEach((t, i) => {
    const shape = (t.shape ?? []).map(Number);
    const { spec } = resolveInput(inputs, tensors, t.name, t.datatype, shape, `inputs[${i}]`);
    const where = `input '${spec.name}'`;
    const count = product(shape);
    if (raw.length > 0) {
      if (t.contents && Object.values(t.contents).some((v) => v && v.length > 0))
        throw new BadRequest(`${where}: contents and raw_input_contents exclude each other`);
      const data = bytesInput(spec.datatype, raw[i], count, where);
      if (!data) throw new BadRequest(`${where}: ${raw[i].byteLength} raw bytes do not hold ${spec.datatype} ${fmtShape(shape)}`);
      tensors[spec.name] = { data, dims: shape };
      return;
    }
    const field = CONTENTS_FIELD[spec.datatype];
    if (!field) throw new BadRequest(`${where}: ${spec.datatype} has no typed contents field; send it in raw_input_contents`);
    tensors[spec.name] = { data: fromContents(spec.datatype, t.contents?.[field] ?? [], count, where), dims: shape };
  });
  const rows = finishInputs(inputs, tensors);
  const names = message.outputs?.map((o, i) => {
    if (typeof o.name !== 'string' || o.name === '') throw new BadRequest(`outputs[${i}] must have a name`);
    return o.name;
  });
  return { id: message.id || undefined, inputs: tensors, rows, outputs: resolveOutputs(signature.outputs, names), binaryOutputs: new Set() };
}

/** A ModelInferResponse with every output in raw_output_contents, as Triton answers. */
export function encodeGrpcResponse(signature: Signature, result: Tensors, request: Pick<InferRequest, 'id' | 'outputs'>): GrpcInferResponse {
  const specs = wantedOutputs(signature, request);
  return {
    model_name: signature.name,
    model_version: signature.version,
    ...(request.id ? { id: request.id } : {}),
    outputs: specs.map((spec) => ({ name: spec.name, datatype: spec.datatype, shape: result[spec.name].dims })),
    raw_output_contents: specs.map((spec) => tensorToBytes(spec.datatype, result[spec.name].data)),
  };
}

// ---- the client side -------------------------------------------------------

/** A ModelInferRequest carrying every input as raw contents. */
export function encodeGrpcRequest(modelName: string, inputs: { name: string; datatype: Datatype }[], feeds: Tensors): GrpcInferRequest {
  return {
    model_name: modelName,
    inputs: inputs.map((spec) => ({ name: spec.name, datatype: spec.datatype, shape: feeds[spec.name].dims })),
    raw_input_contents: inputs.map((spec) => tensorToBytes(spec.datatype, feeds[spec.name].data)),
  };
}

/** Outputs of a ModelInferResponse, raw or typed. */
export function decodeGrpcResponse(message: GrpcInferResponse): Record<string, { datatype: Datatype; dims: number[]; data: TensorData }> {
  const out: Record<string, { datatype: Datatype; dims: number[]; data: TensorData }> = {};
  const raw = message.raw_output_contents ?? [];
  message.outputs.forEach((t, i) => {
    const datatype = t.datatype as Datatype;
    const dims = (t.shape ?? []).map(Number);
    const count = product(dims);
    const field = CONTENTS_FIELD[datatype];
    const data =
      raw.length > 0 ? tensorFromBytes(datatype, raw[i], count) : fromContents(datatype, (field && t.contents?.[field]) || [], count, `output '${t.name}'`);
    if (!data) throw new BadRequest(`output '${t.name}': raw contents do not hold ${datatype} ${fmtShape(dims)}`);
    out[t.name] = { datatype, dims, data };
  });
  return out;
}

/** ModelInfer's serialisers from the proto: the server's own for its method, used in a worker thread as well. */
function modelInferMethod(): grpc.MethodDefinition<GrpcInferRequest, GrpcInferResponse> {
  return (inferenceProto()[INFERENCE_SERVICE] as unknown as Record<string, grpc.MethodDefinition<GrpcInferRequest, GrpcInferResponse>>).ModelInfer;
}

/** A ModelInferRequest's bytes, decoded; a BadRequest naming protobufjs' reason when they are not one. */
export function decodeModelInferBytes(bytes: Buffer): GrpcInferRequest {
  try {
    return modelInferMethod().requestDeserialize(bytes);
  } catch (error) {
    throw new BadRequest(`malformed ModelInfer request: ${String((error as Error)?.message ?? error).split('\n')[0]}`);
  }
}

export function encodeModelInferResponse(response: GrpcInferResponse): Buffer {
  return modelInferMethod().responseSerialize(response);
}

/**
 * model_name (field 1) and model_version (field 2) of a ModelInferRequest's bytes, read without decoding
 * the rest: which model's worker is to decode a large message. Fields it cannot read are left out (the
 * full decode then says what is wrong).
 */
export function peekModel(bytes: Uint8Array): { model_name?: string; model_version?: string } {
  const found: { model_name?: string; model_version?: string } = {};
  let at = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; shift < 64 && at < bytes.length; shift += 7) {
      const b = bytes[at++];
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
    return -1;
  };
  while (at < bytes.length && (found.model_name === undefined || found.model_version === undefined)) {
    const key = varint();
    if (key < 0) break;
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) varint();
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else if (wire === 2) {
      const length = varint();
      if (length < 0 || at + length > bytes.length) break;
      if (field === 1 || field === 2)
        found[field === 1 ? 'model_name' : 'model_version'] = Buffer.from(bytes.buffer, bytes.byteOffset + at, length).toString('utf8');
      at += length;
    } else break;
  }
  return found;
}
