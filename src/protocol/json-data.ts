/**
 * Tensor data as JSON values: the OIP's "data" arrays, flat or nested.
 * Decoding parses with the engine's JSON.parse, then walks the arrays with one
 * tight loop per datatype into a typed array (no per-element closure, no
 * intermediate flat array). Encoding writes numbers in the engine, never a
 * string per element in JavaScript.
 */
import { allocate, fromHalfBits, INTEGER_RANGE, toHalfBits, type Datatype, type TensorData } from '../model/datatypes.js';
import { BadRequest, fmtShape, product } from './request.js';

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

type Sink = { [i: number]: unknown };

/**
 * Copies `count` leaves of one innermost array into `out` at `offset`, checking
 * each. Returns the index in `values` of the first bad element, or -1.
 */
function copyLeaves(datatype: Datatype, values: unknown[], out: Sink, offset: number): number {
  const n = values.length;
  switch (datatype) {
    // JSON.parse turns 1e400 into Infinity: a finite check keeps it out of the model.
    case 'FP32':
    case 'FP64':
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'number' || v - v !== 0) return i;
        out[offset + i] = v;
      }
      return -1;
    case 'FP16':
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'number' || v - v !== 0) return i;
        out[offset + i] = toHalfBits(v);
      }
      return -1;
    case 'BOOL':
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v === true || v === 1) out[offset + i] = 1;
        else if (v === false || v === 0) out[offset + i] = 0;
        else return i;
      }
      return -1;
    case 'BYTES':
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'string') return i;
        out[offset + i] = v;
      }
      return -1;
    case 'INT64':
    case 'UINT64': {
      const [min, max] = INTEGER_RANGE[datatype]!;
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) return i;
        out[offset + i] = BigInt(v);
      }
      return -1;
    }
    default: {
      const [min, max] = INTEGER_RANGE[datatype]!;
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) return i;
        out[offset + i] = v;
      }
      return -1;
    }
  }
}

/**
 * Copies nested or flat row-major JSON data into a typed array of the given
 * shape, checking every element. Never allocates more than the data holds.
 */
export function decodeTensorData(name: string, datatype: Datatype, shape: number[], data: unknown): TensorData {
  if (!Array.isArray(data)) throw new BadRequest(`input '${name}': "data" must be an array`);
  const total = product(shape);
  const bad = (value: unknown, index: number) =>
    new BadRequest(`input '${name}': element ${index} is ${JSON.stringify(value) ?? String(value)}; ${datatype} expects ${EXPECTED[datatype]}`);
  const isFlat = data.length === 0 || !Array.isArray(data[0]);
  if (isFlat) {
    if (data.length !== total) throw new BadRequest(`input '${name}': shape ${fmtShape(shape)} needs ${total} elements, "data" has ${data.length}`);
    const out = allocate(datatype, total) as unknown as Sink;
    const at = copyLeaves(datatype, data, out, 0);
    if (at !== -1) throw bad(data[at], at);
    return out as unknown as TensorData;
  }
  if (total > countLeaves(data, shape.length)) throw new BadRequest(`input '${name}': nested "data" does not match shape ${fmtShape(shape)}`);
  const out = allocate(datatype, total) as unknown as Sink;
  const innermost = shape.length - 1;
  let index = 0;
  const walk = (node: unknown, depth: number): void => {
    if (!Array.isArray(node) || node.length !== shape[depth]) {
      throw new BadRequest(
        `input '${name}': nested "data" is ragged or does not match shape ${fmtShape(shape)} at depth ${depth}` +
          (Array.isArray(node) ? ` (found ${node.length} items, expected ${shape[depth]})` : ''),
      );
    }
    if (depth === innermost) {
      const at = copyLeaves(datatype, node, out, index);
      if (at !== -1) throw bad(node[at], index + at);
      index += node.length;
      return;
    }
    for (const child of node) walk(child, depth + 1);
  };
  if (shape.length === 0) throw new BadRequest(`input '${name}': a scalar's "data" must be a flat array of one element`);
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

/**
 * The JSON text of a tensor's flat data array, with the digits JSON.stringify
 * writes; 64-bit integers keep every digit. Non-finite floats, which JSON
 * cannot carry, become null as JSON.stringify makes them. Measured on Node 20:
 * TypedArray#join writes 30 floats in 1 µs against 5 µs for
 * JSON.stringify(Array.from()), but 150,000 in 37 ms against 28 ms; so join
 * below JOIN_MAX_ELEMENTS, JSON.stringify above.
 */
const JOIN_MAX_ELEMENTS = 4096;

export function jsonDataText(datatype: Datatype, data: TensorData): string {
  switch (datatype) {
    case 'BOOL':
    case 'FP16':
    case 'BYTES':
      return JSON.stringify(encodeTensorData(datatype, data));
    case 'FP32':
    case 'FP64': {
      const floats = data as Float32Array;
      if (floats.length > JOIN_MAX_ELEMENTS) return JSON.stringify(Array.from(floats));
      for (let i = 0; i < floats.length; i++) {
        const v = floats[i];
        if (v - v !== 0) return JSON.stringify(Array.from(floats));
      }
      return `[${floats.join(',')}]`;
    }
    default:
      return `[${(data as Int32Array).join(',')}]`;
  }
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
