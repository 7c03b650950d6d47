/**
 * The Open Inference Protocol over HTTP: the JSON body, and Triton/KServe's
 * binary tensor data extension, where a JSON header of
 * `Inference-Header-Content-Length` bytes is followed by raw tensor bytes for
 * every input (and output) whose parameters carry `binary_data_size`.
 * Used by the server and by mlops' own clients.
 */
import { tensorFromBytes, tensorToBytes, type Datatype, type TensorData } from '../model/datatypes.js';
import type { ServableTensor, Tensors } from '../model/session.js';
import { decodeTensorData, jsonDataText } from './json-data.js';
import {
  BadRequest,
  bytesInput,
  describeInputs,
  finishInputs,
  fmtShape,
  product,
  resolveInput,
  resolveOutputs,
  wantedOutputs,
  type InferRequest,
  type Signature,
} from './request.js';

export const HEADER_LENGTH = 'inference-header-content-length';
export const BINARY_EXTENSION = 'binary_tensor_data';
/** The protocol extensions the server reports (GET /v2, gRPC ServerMetadata). */
export const SERVER_EXTENSIONS = [BINARY_EXTENSION];

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads the `Inference-Header-Content-Length` request header: undefined for a plain JSON body. */
export function headerLength(value: string | string[] | undefined, bodyBytes: number): number | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value[0] : value;
  // Plain decimal digits only: Number() would also take "113e0", "0x71" and " 113 ".
  const n = /^\d{1,15}$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n <= 0 || n > bodyBytes) {
    throw new BadRequest(`Inference-Header-Content-Length: ${String(value)} must be a whole number from 1 to the body's ${bodyBytes} bytes`);
  }
  return n;
}

function parseJson(body: Uint8Array, end: number): unknown {
  if (end === 0) throw new BadRequest('request body is empty; send a JSON object');
  const text = Buffer.from(body.buffer, body.byteOffset, end).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new BadRequest(`malformed JSON${end < body.byteLength ? ' header' : ''}: ${(error as Error).message}`);
  }
}

/** A non-negative whole number from a `parameters` entry, or undefined when absent. */
function sizeParameter(parameters: unknown, key: string, where: string): number | undefined {
  if (!isObject(parameters) || parameters[key] === undefined) return undefined;
  const value = parameters[key];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new BadRequest(`${where}: parameters.${key} must be a non-negative integer`);
  return value;
}

/** Decodes and checks an infer request body (JSON, or binary when `header` is the JSON header's length). */
export function decodeRestRequest(body: Uint8Array, header: number | undefined, signature: Signature): InferRequest {
  return decodeParsedRestRequest(parseJson(body, header ?? body.byteLength), body, header, signature);
}

/** The same, for a body whose JSON a caller already parsed (to tell an OIP body from another format). */
export function decodeParsedRestRequest(parsed: unknown, body: Uint8Array, header: number | undefined, signature: Signature): InferRequest {
  if (!isObject(parsed)) throw new BadRequest('request body must be a JSON object with an "inputs" array');
  const { id } = parsed;
  if (id !== undefined && typeof id !== 'string') throw new BadRequest('"id" must be a string');
  const { inputs } = signature;
  if (!Array.isArray(parsed.inputs) || parsed.inputs.length === 0) {
    throw new BadRequest(`"inputs" must be a non-empty array; this model takes ${describeInputs(inputs)}`);
  }
  const tensors: Tensors = {};
  let offset = header ?? body.byteLength;
  parsed.inputs.forEach((raw, i) => {
    if (!isObject(raw)) throw new BadRequest(`inputs[${i}] must be an object with a "name"`);
    const { spec, shape } = resolveInput(inputs, tensors, raw.name, raw.datatype, raw.shape, `inputs[${i}]`);
    const where = `input '${spec.name}'`;
    const size = sizeParameter(raw.parameters, 'binary_data_size', where);
    if (size === undefined) {
      tensors[spec.name] = { data: decodeTensorData(spec.name, spec.datatype, shape, raw.data), dims: shape };
      return;
    }
    if (header === undefined)
      throw new BadRequest(`${where}: parameters.binary_data_size needs the binary data extension; send the Inference-Header-Content-Length header`);
    if (raw.data !== undefined) throw new BadRequest(`${where}: gives both "data" and parameters.binary_data_size; send the tensor one way`);
    if (offset + size > body.byteLength) {
      throw new BadRequest(`${where}: binary_data_size ${size} runs past the end of the body (${body.byteLength - offset} bytes left)`);
    }
    const data = bytesInput(spec.datatype, body.subarray(offset, offset + size), product(shape), where);
    if (!data)
      throw new BadRequest(
        `${where}: ${size} bytes of binary data do not hold ${spec.datatype} ${fmtShape(shape)}${spec.datatype === 'BYTES' ? ' (each element is a 4-byte little-endian length and its bytes)' : ''}`,
      );
    tensors[spec.name] = { data, dims: shape };
    offset += size;
  });
  if (offset !== body.byteLength) {
    throw new BadRequest(`the body has ${body.byteLength - offset} bytes of binary data that no input's binary_data_size accounts for`);
  }
  const rows = finishInputs(inputs, tensors);
  const allBinary = isObject(parsed.parameters) && parsed.parameters.binary_data_output === true;
  const binaryOutputs = new Set<string>();
  let names: string[] | undefined;
  if (parsed.outputs !== undefined) {
    if (!Array.isArray(parsed.outputs)) throw new BadRequest('"outputs" must be an array of {"name": ...}');
    names = parsed.outputs.map((o, i) => {
      if (!isObject(o) || typeof o.name !== 'string') throw new BadRequest(`outputs[${i}] must be an object with a "name"`);
      const binary = isObject(o.parameters) ? o.parameters.binary_data : undefined;
      if (binary === true || (binary === undefined && allBinary)) binaryOutputs.add(o.name);
      return o.name;
    });
  }
  const outputs = resolveOutputs(signature.outputs, names);
  if (allBinary && !outputs) for (const o of signature.outputs) binaryOutputs.add(o.name);
  const timeoutMicros = sizeParameter(parsed.parameters, 'timeout', 'the request');
  if (timeoutMicros === 0) throw new BadRequest('the request: parameters.timeout must be a positive number of microseconds');
  return { id, inputs: tensors, rows, outputs, binaryOutputs, timeoutMicros };
}

export interface RestResponse {
  /** A string for a JSON answer (node:http writes it in one piece with the headers), bytes for a binary one. */
  body: string | Buffer;
  /** Set when some output is binary: the JSON header's length, for the Inference-Header-Content-Length header. */
  headerLength?: number;
}

/** The response body: JSON, or a JSON header and the binary outputs after it. */
export function encodeRestResponse(signature: Signature, result: Tensors, request: Pick<InferRequest, 'id' | 'outputs' | 'binaryOutputs'>): RestResponse {
  const binary: Uint8Array[] = [];
  const outputs = wantedOutputs(signature, request).map((spec) => {
    const tensor = result[spec.name];
    const head = `{"name":${JSON.stringify(spec.name)},"datatype":"${spec.datatype}","shape":[${tensor.dims.join(',')}]`;
    if (!request.binaryOutputs.has(spec.name)) return `${head},"data":${jsonDataText(spec.datatype, tensor.data)}}`;
    const bytes = tensorToBytes(spec.datatype, tensor.data);
    binary.push(bytes);
    return `${head},"parameters":{"binary_data_size":${bytes.byteLength}}}`;
  });
  const id = request.id !== undefined ? `,"id":${JSON.stringify(request.id)}` : '';
  const json = `{"model_name":${JSON.stringify(signature.name)},"model_version":${JSON.stringify(signature.version)}${id},"outputs":[${outputs.join(',')}]}`;
  if (binary.length === 0) return { body: json };
  const head = Buffer.from(json);
  return { body: Buffer.concat([head, ...binary]), headerLength: head.length };
}

// ---- the client side -------------------------------------------------------

export interface TensorSpec {
  name: string;
  datatype: Datatype;
}

export interface RestRequest {
  body: Buffer;
  headers: Record<string, string>;
}

/** An infer request for `feeds`; with `binary`, every input and output travels as binary data. */
export function encodeRestRequest(inputs: TensorSpec[], feeds: Tensors, options: { binary: boolean; id?: string }): RestRequest {
  const id = options.id !== undefined ? `"id":${JSON.stringify(options.id)},` : '';
  if (!options.binary) {
    const parts = inputs.map(
      (spec) =>
        `{"name":${JSON.stringify(spec.name)},"datatype":"${spec.datatype}","shape":[${feeds[spec.name].dims.join(',')}],"data":${jsonDataText(spec.datatype, feeds[spec.name].data)}}`,
    );
    return { body: Buffer.from(`{${id}"inputs":[${parts.join(',')}]}`), headers: { 'content-type': 'application/json' } };
  }
  const bytes = inputs.map((spec) => tensorToBytes(spec.datatype, feeds[spec.name].data));
  const parts = inputs.map(
    (spec, i) =>
      `{"name":${JSON.stringify(spec.name)},"datatype":"${spec.datatype}","shape":[${feeds[spec.name].dims.join(',')}],"parameters":{"binary_data_size":${bytes[i].byteLength}}}`,
  );
  const head = Buffer.from(`{${id}"inputs":[${parts.join(',')}],"parameters":{"binary_data_output":true}}`);
  return {
    body: Buffer.concat([head, ...bytes]),
    headers: { 'content-type': 'application/octet-stream', [HEADER_LENGTH]: String(head.length) },
  };
}

export interface DecodedOutput {
  datatype: Datatype;
  dims: number[];
  /** Typed data for binary outputs; plain JSON values for JSON ones. */
  data: TensorData | unknown[];
}

/** Reads an infer response (JSON, or binary when `header` is set) into outputs by name. */
export function decodeRestResponse(body: Uint8Array, header: number | undefined): Record<string, DecodedOutput> {
  const parsed = parseJson(body, header ?? body.byteLength) as { outputs?: Record<string, unknown>[] };
  const out: Record<string, DecodedOutput> = {};
  let offset = header ?? body.byteLength;
  for (const t of parsed.outputs ?? []) {
    const name = String(t.name);
    const datatype = t.datatype as Datatype;
    const dims = (t.shape as number[]).map(Number);
    const size = sizeParameter(t.parameters, 'binary_data_size', `output '${name}'`);
    if (size === undefined) {
      out[name] = { datatype, dims, data: (t.data ?? []) as unknown[] };
      continue;
    }
    const data = tensorFromBytes(datatype, body.subarray(offset, offset + size), product(dims));
    if (!data) throw new BadRequest(`output '${name}': ${size} bytes of binary data do not hold ${datatype} ${fmtShape(dims)}`);
    out[name] = { datatype, dims, data };
    offset += size;
  }
  return out;
}

export type { ServableTensor };
