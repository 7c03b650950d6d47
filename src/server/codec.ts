import { allocate, fromHalfBits, INTEGER_RANGE, toHalfBits, type Datatype, type TensorData } from '../model/datatypes.js';
import type { ServableTensor, Tensor, Tensors } from '../model/session.js';

/** A request the client got wrong: becomes a 400 with this message. */
export class BadRequest extends Error {
  readonly status: number;
  constructor(message: string, status = 400) {
    super(message);
    this.status = status;
  }
}

export interface InferRequest {
  id?: string;
  inputs: Tensors;
  /** Rows in the batch dimension (first dimension), shared by every input. */
  rows: number;
  /** Output names asked for; undefined means all. */
  outputs?: string[];
}

const fmtShape = (shape: readonly number[]) => `[${shape.join(', ')}]`;

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

type Convert = (value: unknown) => number | bigint | string | undefined;

function converter(datatype: Datatype): Convert {
  switch (datatype) {
    // JSON.parse turns 1e400 into Infinity: a finite check keeps it out of the model.
    case 'FP32':
    case 'FP64':
      return (v) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
    case 'FP16':
      return (v) => (typeof v === 'number' && Number.isFinite(v) ? toHalfBits(v) : undefined);
    case 'BOOL':
      return (v) => (v === true || v === 1 ? 1 : v === false || v === 0 ? 0 : undefined);
    case 'BYTES':
      return (v) => (typeof v === 'string' ? v : undefined);
    case 'INT64':
    case 'UINT64': {
      const [min, max] = INTEGER_RANGE[datatype]!;
      return (v) => (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? BigInt(v) : undefined);
    }
    default: {
      const [min, max] = INTEGER_RANGE[datatype]!;
      return (v) => (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : undefined);
    }
  }
}

const EXPECTED: Record<Datatype, string> = {
  FP16: 'finite numbers',
  FP32: 'finite numbers',
  FP64: 'finite numbers',
  BOOL: 'true/false',
  BYTES: 'strings',
  INT8: 'integers from -128 to 127',
  INT16: 'integers from -32768 to 32767',
  INT32: 'integers from -2147483648 to 2147483647',
  INT64: 'integers (within ±2^53 in JSON)',
  UINT8: 'integers from 0 to 255',
  UINT16: 'integers from 0 to 65535',
  UINT32: 'integers from 0 to 4294967295',
  UINT64: 'integers from 0 to 2^53',
};

/**
 * Copies nested or flat row-major JSON data into a typed array of the given
 * shape, checking every element. Never allocates more than the data holds.
 */
export function decodeTensorData(name: string, datatype: Datatype, shape: number[], data: unknown): TensorData {
  if (!Array.isArray(data)) throw new BadRequest(`input '${name}': "data" must be an array`);
  const total = product(shape);
  const convert = converter(datatype);
  const bad = (value: unknown, index: number) =>
    new BadRequest(
      `input '${name}': element ${index} is ${JSON.stringify(value) ?? String(value)}; ${datatype} expects ${EXPECTED[datatype]}`,
    );
  const isFlat = data.length === 0 || !Array.isArray(data[0]);
  if (isFlat) {
    if (data.length !== total) {
      throw new BadRequest(`input '${name}': shape ${fmtShape(shape)} needs ${total} elements, "data" has ${data.length}`);
    }
    const out = allocate(datatype, total) as unknown as { [i: number]: unknown };
    for (let i = 0; i < total; i++) {
      const value = convert(data[i]);
      if (value === undefined) throw bad(data[i], i);
      out[i] = value;
    }
    return out as unknown as TensorData;
  }
  if (total > countLeaves(data, shape.length)) {
    throw new BadRequest(`input '${name}': nested "data" does not match shape ${fmtShape(shape)}`);
  }
  const out = allocate(datatype, total) as unknown as { [i: number]: unknown };
  let index = 0;
  const walk = (node: unknown, depth: number): void => {
    if (depth === shape.length) {
      const value = convert(node);
      if (value === undefined) throw bad(node, index);
      out[index++] = value;
      return;
    }
    if (!Array.isArray(node) || node.length !== shape[depth]) {
      throw new BadRequest(
        `input '${name}': nested "data" is ragged or does not match shape ${fmtShape(shape)} at depth ${depth}` +
          (Array.isArray(node) ? ` (found ${node.length} items, expected ${shape[depth]})` : ''),
      );
    }
    for (const child of node) walk(child, depth + 1);
  };
  walk(data, 0);
  return out as unknown as TensorData;
}

/** An upper bound on the leaves, cheap enough to refuse absurd shapes before allocating. */
function countLeaves(data: unknown[], depth: number): number {
  let n = 1;
  let node: unknown = data;
  for (let d = 0; d < depth && Array.isArray(node); d++) {
    n *= node.length;
    node = node[0];
  }
  return n;
}

function checkShape(spec: ServableTensor, shape: unknown, where: string): number[] {
  if (!Array.isArray(shape) || shape.some((d) => typeof d !== 'number' || !Number.isInteger(d) || d < 0)) {
    throw new BadRequest(`${where}: "shape" must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (spec.dims.length > 0) {
    const matches = shape.length === spec.shape.length && spec.shape.every((d, i) => d === -1 || d === shape[i]);
    if (!matches) {
      throw new BadRequest(`${where}: expected shape ${fmtShape(spec.shape)} (-1 is any size), got ${fmtShape(shape)}`);
    }
  }
  if (product(shape) === 0) throw new BadRequest(`${where}: shape ${fmtShape(shape)} has no elements; send at least one`);
  return shape;
}

/** Symbolic dimensions shared by several inputs ("batch") must agree. */
function checkSymbolicDims(specs: ServableTensor[], tensors: Tensors): void {
  const seen = new Map<string, { value: number; input: string }>();
  for (const spec of specs) {
    spec.dims.forEach((dim, i) => {
      if (typeof dim !== 'string') return;
      const value = tensors[spec.name].dims[i];
      const first = seen.get(dim);
      if (!first) seen.set(dim, { value, input: spec.name });
      else if (first.value !== value) {
        throw new BadRequest(
          `inputs '${first.input}' and '${spec.name}' disagree on dimension '${dim}': ${first.value} vs ${value}`,
        );
      }
    });
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Validates an Open Inference Protocol v2 infer request against the model's signature. */
export function decodeInferRequest(body: unknown, inputs: ServableTensor[], outputs: ServableTensor[]): InferRequest {
  if (!isObject(body)) throw new BadRequest('request body must be a JSON object with an "inputs" array');
  const { id } = body;
  if (id !== undefined && typeof id !== 'string') throw new BadRequest('"id" must be a string');
  if (!Array.isArray(body.inputs) || body.inputs.length === 0) {
    throw new BadRequest(`"inputs" must be a non-empty array; this model takes ${describeInputs(inputs)}`);
  }
  const byName = new Map(inputs.map((s) => [s.name, s]));
  const tensors: Tensors = {};
  body.inputs.forEach((raw, i) => {
    if (!isObject(raw) || typeof raw.name !== 'string') throw new BadRequest(`inputs[${i}] must be an object with a "name"`);
    const spec = byName.get(raw.name);
    if (!spec) throw new BadRequest(`unknown input '${raw.name}'; this model takes ${describeInputs(inputs)}`);
    if (tensors[spec.name]) throw new BadRequest(`input '${spec.name}' is given twice`);
    if (raw.datatype !== spec.datatype) {
      throw new BadRequest(`input '${spec.name}': expected datatype ${spec.datatype}, got ${JSON.stringify(raw.datatype)}`);
    }
    const shape = checkShape(spec, raw.shape, `input '${spec.name}'`);
    tensors[spec.name] = { data: decodeTensorData(spec.name, spec.datatype, shape, raw.data), dims: shape };
  });
  const missing = inputs.filter((s) => !tensors[s.name]);
  if (missing.length > 0) {
    throw new BadRequest(`missing input ${missing.map((s) => `'${s.name}' (${s.datatype} ${fmtShape(s.shape)})`).join(', ')}`);
  }
  checkSymbolicDims(inputs, tensors);

  let wanted: string[] | undefined;
  if (body.outputs !== undefined) {
    if (!Array.isArray(body.outputs)) throw new BadRequest('"outputs" must be an array of {"name": ...}');
    const known = new Set(outputs.map((o) => o.name));
    wanted = body.outputs.map((o, i) => {
      const name = isObject(o) ? o.name : undefined;
      if (typeof name !== 'string') throw new BadRequest(`outputs[${i}] must be an object with a "name"`);
      if (!known.has(name)) throw new BadRequest(`unknown output '${name}'; this model has ${[...known].join(', ')}`);
      return name;
    });
  }
  const rows = tensors[inputs[0].name].dims[0] ?? 1;
  return { id, inputs: tensors, rows, outputs: wanted };
}

function describeInputs(inputs: ServableTensor[]): string {
  return inputs.map((s) => `'${s.name}' (${s.datatype} ${fmtShape(s.shape)})`).join(', ');
}

/** Output tensor data as plain JSON values, row-major. */
export function encodeTensorData(datatype: Datatype, data: TensorData): unknown[] {
  switch (datatype) {
    case 'INT64':
    case 'UINT64':
      return Array.from(data as BigInt64Array, Number);
    case 'BOOL':
      return Array.from(data as Uint8Array, (v) => v !== 0);
    case 'FP16':
      return Array.from(data as Uint16Array, fromHalfBits);
    case 'BYTES':
      return data as string[];
    default:
      return Array.from(data as Float32Array);
  }
}

export function encodeInferResponse(
  model: { name: string; version: string; outputs: ServableTensor[] },
  result: Tensors,
  request: Pick<InferRequest, 'id' | 'outputs'>,
): Record<string, unknown> {
  const specs = request.outputs ? model.outputs.filter((o) => request.outputs!.includes(o.name)) : model.outputs;
  return {
    model_name: model.name,
    model_version: model.version,
    ...(request.id !== undefined ? { id: request.id } : {}),
    outputs: specs.map((spec) => {
      const tensor = result[spec.name];
      return { name: spec.name, datatype: spec.datatype, shape: tensor.dims, data: encodeTensorData(spec.datatype, tensor.data) };
    }),
  };
}

/** The shape of nested JSON data, following first elements. */
export function nestedShape(value: unknown): number[] {
  const shape: number[] = [];
  let node = value;
  while (Array.isArray(node)) {
    shape.push(node.length);
    node = node[0];
  }
  return shape;
}

/** Row-major flat values back into nested arrays of the given shape. */
export function nest(flat: unknown[], dims: number[], offset = 0): unknown {
  if (dims.length === 0) return flat[offset];
  const [first, ...rest] = dims;
  const stride = product(rest);
  const out = new Array(first);
  for (let i = 0; i < first; i++) out[i] = nest(flat, rest, offset + i * stride);
  return out;
}

export type { Tensor };
