/**
 * Tensor datatypes under their Open Inference Protocol names, and how each maps
 * to ONNX's TensorProto.DataType enum and to the typed arrays ONNX Runtime uses.
 */
export type Datatype = 'BOOL' | 'UINT8' | 'UINT16' | 'UINT32' | 'UINT64' | 'INT8' | 'INT16' | 'INT32' | 'INT64' | 'FP16' | 'FP32' | 'FP64' | 'BYTES';

/** ONNX TensorProto.DataType values (onnx/onnx.proto3). */
const ONNX_ELEMENT_TYPES: Record<number, string> = {
  1: 'FP32',
  2: 'UINT8',
  3: 'INT8',
  4: 'UINT16',
  5: 'INT16',
  6: 'INT32',
  7: 'INT64',
  8: 'BYTES',
  9: 'BOOL',
  10: 'FP16',
  11: 'FP64',
  12: 'UINT32',
  13: 'UINT64',
  14: 'COMPLEX64',
  15: 'COMPLEX128',
  16: 'BF16',
  17: 'FP8E4M3FN',
  18: 'FP8E4M3FNUZ',
  19: 'FP8E5M2',
  20: 'FP8E5M2FNUZ',
  21: 'UINT4',
  22: 'INT4',
};

export function onnxElementTypeName(elemType: number): string {
  return ONNX_ELEMENT_TYPES[elemType] ?? `UNKNOWN(${elemType})`;
}

const SERVABLE = new Set<string>(['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES']);

export function isServableDatatype(name: string): name is Datatype {
  return SERVABLE.has(name);
}

export type TensorData =
  Float32Array | Float64Array | Int8Array | Int16Array | Int32Array | Uint8Array | Uint16Array | Uint32Array | BigInt64Array | BigUint64Array | string[];

/** Elements start..end of a tensor's data, without a copy where the data is a typed array. */
export function sliceTensorData(data: TensorData, start: number, end: number): TensorData {
  return Array.isArray(data) ? data.slice(start, end) : (data.subarray(start, end) as TensorData);
}

/** Allocates the backing array onnxruntime-node expects for a datatype. */
export function allocate(datatype: Datatype, length: number): TensorData {
  switch (datatype) {
    case 'BOOL':
    case 'UINT8':
      return new Uint8Array(length);
    case 'UINT16':
    case 'FP16':
      return new Uint16Array(length);
    case 'UINT32':
      return new Uint32Array(length);
    case 'UINT64':
      return new BigUint64Array(length);
    case 'INT8':
      return new Int8Array(length);
    case 'INT16':
      return new Int16Array(length);
    case 'INT32':
      return new Int32Array(length);
    case 'INT64':
      return new BigInt64Array(length);
    case 'FP32':
      return new Float32Array(length);
    case 'FP64':
      return new Float64Array(length);
    case 'BYTES':
      return new Array<string>(length).fill('');
  }
}

export const INTEGER_RANGE: Partial<Record<Datatype, [number, number]>> = {
  UINT8: [0, 255],
  UINT16: [0, 65535],
  UINT32: [0, 4294967295],
  UINT64: [0, Number.MAX_SAFE_INTEGER],
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
  INT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

// IEEE 754 half precision <-> double, for FP16 models (ORT takes the raw bits).
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function toHalfBits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    let half = mantissa >> shift;
    if ((mantissa >> (shift - 1)) & 1 && (half & 1 || mantissa & ((1 << (shift - 1)) - 1))) half += 1;
    return sign | half;
  }
  let half = sign | (e << 10) | (mantissa >> 13);
  if (mantissa & 0x1000 && (half & 1 || mantissa & 0xfff)) half += 1;
  return half;
}

export function fromHalfBits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** Bytes per element in the binary tensor formats (OIP raw contents, Triton binary data); 0 for BYTES. */
export const ELEMENT_BYTES: Record<Datatype, number> = {
  BOOL: 1,
  UINT8: 1,
  INT8: 1,
  UINT16: 2,
  INT16: 2,
  FP16: 2,
  UINT32: 4,
  INT32: 4,
  FP32: 4,
  UINT64: 8,
  INT64: 8,
  FP64: 8,
  BYTES: 0,
};

type TypedArrayConstructor = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): Exclude<TensorData, string[]> };

const VIEWS: Record<Exclude<Datatype, 'BYTES'>, TypedArrayConstructor> = {
  BOOL: Uint8Array,
  UINT8: Uint8Array,
  INT8: Int8Array,
  UINT16: Uint16Array,
  INT16: Int16Array,
  FP16: Uint16Array,
  UINT32: Uint32Array,
  INT32: Int32Array,
  FP32: Float32Array,
  UINT64: BigUint64Array,
  INT64: BigInt64Array,
  FP64: Float64Array,
};

/**
 * Little-endian row-major bytes as the typed array ONNX Runtime takes: a view
 * when the bytes are aligned for the type, one copy when not (a binary request
 * puts tensor data right after a JSON header of any length). BYTES elements are
 * each a 4-byte little-endian length and that many bytes. Returns undefined
 * when the byte count does not fit `count` elements.
 */
export function tensorFromBytes(datatype: Datatype, bytes: Uint8Array, count: number): TensorData | undefined {
  if (datatype === 'BYTES') return stringsFromBytes(bytes, count);
  const size = ELEMENT_BYTES[datatype];
  if (bytes.byteLength !== count * size) return undefined;
  const View = VIEWS[datatype];
  if (bytes.byteOffset % size === 0) return new View(bytes.buffer, bytes.byteOffset, count);
  const copy = new View(new ArrayBuffer(count * size), 0, count);
  new Uint8Array(copy.buffer).set(bytes);
  return copy;
}

/** The tensor's bytes in the binary formats: a view of a typed array, or length-prefixed BYTES elements. */
export function tensorToBytes(datatype: Datatype, data: TensorData): Uint8Array {
  if (datatype === 'BYTES') return stringsToBytes(data as string[]);
  const typed = data as Exclude<TensorData, string[]>;
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
}

/** A BYTES element whose bytes are not UTF-8: ONNX Runtime's Node binding takes strings only, so it cannot reach the model as sent. */
export class NotUtf8Element extends Error {
  constructor(readonly index: number) {
    super(`element ${index} is not UTF-8 text`);
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The element's text, or NotUtf8Element: never U+FFFD in place of bytes the client sent. */
export function utf8Element(bytes: Uint8Array, index: number): string {
  try {
    return UTF8.decode(bytes);
  } catch {
    throw new NotUtf8Element(index);
  }
}

function stringsFromBytes(bytes: Uint8Array, count: number): string[] | undefined {
  // Each element takes at least its 4-byte length: a count the bytes cannot hold is refused before allocating.
  if (count * 4 > bytes.byteLength) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Array<string>(count);
  let offset = 0;
  for (let i = 0; i < count; i++) {
    if (offset + 4 > bytes.byteLength) return undefined;
    const length = view.getUint32(offset, true);
    offset += 4;
    if (offset + length > bytes.byteLength) return undefined;
    out[i] = utf8Element(bytes.subarray(offset, offset + length), i);
    offset += length;
  }
  return offset === bytes.byteLength ? out : undefined;
}

function stringsToBytes(strings: string[]): Uint8Array {
  const encoded = strings.map((s) => Buffer.from(s, 'utf8'));
  const out = Buffer.allocUnsafe(encoded.reduce((n, b) => n + 4 + b.length, 0));
  let offset = 0;
  for (const b of encoded) {
    out.writeUInt32LE(b.length, offset);
    b.copy(out, offset + 4);
    offset += 4 + b.length;
  }
  return out;
}
