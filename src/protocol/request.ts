/**
 * What every transport (REST JSON, REST binary, gRPC) decodes a request into,
 * and the checks against the model's signature that all of them share.
 */
import { NotUtf8Element, tensorFromBytes, utf8Element, type Datatype, type TensorData } from '../model/datatypes.js';
import { UNNAMED_DIM } from '../model/inspect.js';
import type { ServableTensor, Tensors } from '../model/session.js';

/** A request the client got wrong: a 4xx over REST, a gRPC status code over gRPC. */
/** Longest run of characters an error repeats from a request (a name, a shape), and longest error text. */
const MAX_ERROR_TOKEN = 80;
const MAX_ERROR_TEXT = 1024;

/**
 * Error text cut to a bound whatever the client sent: a long name or value becomes a marked excerpt
 * ("mmmm…[200000 chars]"), and the whole text at most 1 KiB. Over ~64 KB a gRPC status never reaches
 * the client and stalls the connection it shares; no one reads a shape of 20,000 dimensions anyway.
 */
export function boundErrorText(text: string): string {
  let bounded = text.length > MAX_ERROR_TOKEN ? text.replace(/\S{81,}/g, (token) => `${token.slice(0, 60)}…[${token.length} chars]`) : text;
  if (bounded.length > MAX_ERROR_TEXT) bounded = `${bounded.slice(0, MAX_ERROR_TEXT - 24)}…[${bounded.length} chars]`;
  return bounded;
}

export class BadRequest extends Error {
  readonly status: number;
  constructor(message: string, status = 400) {
    super(boundErrorText(message));
    this.status = status;
  }
}

/** Not answered within the server's inference timeout or the client's deadline: 504, DEADLINE_EXCEEDED over gRPC. */
export class DeadlineExceeded extends BadRequest {
  constructor(message: string) {
    super(message, 504);
  }
}

export interface InferRequest {
  id?: string;
  inputs: Tensors;
  /** Rows in the first dimension of the first input. */
  rows: number;
  /** Output names asked for, in the model's order; undefined means all. */
  outputs?: string[];
  /** Outputs to send back as binary data (REST binary extension); gRPC always answers raw. */
  binaryOutputs: Set<string>;
  /** The client's own deadline (parameters.timeout, in microseconds, as Triton takes it): it can only shorten the server's. */
  timeoutMicros?: number;
}

/** The signature a request is checked against: the model's, from either side of the wire. */
export interface Signature {
  name: string;
  version: string;
  inputs: ServableTensor[];
  outputs: ServableTensor[];
}

export const fmtShape = (shape: readonly number[]) => `[${shape.join(', ')}]`;

export function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function describeInputs(inputs: ServableTensor[]): string {
  return inputs.map((s) => `'${s.name}' (${s.datatype} ${fmtShape(s.shape)})`).join(', ');
}

const INPUTS_BY_NAME = new WeakMap<ServableTensor[], Map<string, ServableTensor>>();

/** The model's inputs by name, made once per signature rather than once per request. */
function inputsByName(inputs: ServableTensor[]): Map<string, ServableTensor> {
  let byName = INPUTS_BY_NAME.get(inputs);
  if (!byName) INPUTS_BY_NAME.set(inputs, (byName = new Map(inputs.map((s) => [s.name, s]))));
  return byName;
}

/** The input's spec and checked shape, from the name, datatype and shape a client sent. */
export function resolveInput(
  inputs: ServableTensor[],
  seen: Tensors,
  name: unknown,
  datatype: unknown,
  shape: unknown,
  where: string,
): { spec: ServableTensor; shape: number[] } {
  if (typeof name !== 'string') throw new BadRequest(`${where} must have a "name"`);
  const spec = inputsByName(inputs).get(name);
  if (!spec) throw new BadRequest(`unknown input '${name}'; this model takes ${describeInputs(inputs)}`);
  if (seen[spec.name]) throw new BadRequest(`input '${spec.name}' is given twice`);
  if (datatype !== spec.datatype) {
    throw new BadRequest(`input '${spec.name}': expected datatype ${spec.datatype}, got ${JSON.stringify(datatype)}`);
  }
  return { spec, shape: checkShape(spec, shape, `input '${spec.name}'`) };
}

/** Most dimensions an input the model declares no shape for may have (numpy's own limit is 64). */
export const MAX_RANK = 64;

export function checkShape(spec: ServableTensor, shape: unknown, where: string): number[] {
  if (!Array.isArray(shape)) throw new BadRequest(`${where}: "shape" must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  // The rank first, so that no later step walks a shape of 100,000 dimensions.
  const rank = spec.anyShape ? MAX_RANK : spec.shape.length;
  if (spec.anyShape ? shape.length > MAX_RANK : shape.length !== rank) {
    const expected = spec.anyShape ? `at most ${MAX_RANK} dimensions` : rank === 0 ? 'a scalar, shape []' : `shape ${fmtShape(spec.shape)} (-1 is any size)`;
    throw new BadRequest(
      `${where}: expected ${expected}, got ${shape.length} dimension${shape.length === 1 ? '' : 's'}${shape.length <= 8 ? ` ${fmtShape(shape)}` : ''}`,
    );
  }
  if (shape.some((d) => typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0)) {
    throw new BadRequest(`${where}: "shape" must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (!spec.anyShape && !spec.shape.every((d, i) => d === -1 || d === shape[i])) {
    throw new BadRequest(`${where}: expected shape ${fmtShape(spec.shape)} (-1 is any size), got ${fmtShape(shape)}`);
  }
  if (product(shape) === 0) throw new BadRequest(`${where}: shape ${fmtShape(shape)} has no elements; send at least one`);
  return shape as number[];
}

/** A BYTES element ONNX Runtime could not take as sent: its Node binding passes UTF-8 text, cut at the first NUL. */
const notText = (where: string, index: number, what: string) =>
  new BadRequest(
    `${where}: element ${index} ${what}; BYTES inputs reach the model as UTF-8 text, which onnxruntime-node ends at the first NUL, so it would not arrive as sent (encode binary data, e.g. as base64, in the model's own contract)`,
  );

/** A BYTES element's bytes as text, refused (never U+FFFD) when they are not UTF-8. */
export function textElement(bytes: Uint8Array, index: number, where: string): string {
  try {
    return utf8Element(bytes, index);
  } catch {
    throw notText(where, index, 'is not UTF-8');
  }
}

/** Binary tensor data (REST binary extension, gRPC raw contents) for an input; undefined when the bytes do not fit its shape. */
export function bytesInput(datatype: Datatype, bytes: Uint8Array, count: number, where: string): TensorData | undefined {
  try {
    return tensorFromBytes(datatype, bytes, count);
  } catch (error) {
    if (error instanceof NotUtf8Element) throw notText(where, error.index, 'is not UTF-8');
    throw error;
  }
}

// A UTF-16 surrogate without its pair: JSON can carry one ("\ud800"), UTF-8 cannot.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function refuseUnsendableText(spec: ServableTensor, strings: string[]): void {
  for (let i = 0; i < strings.length; i++) {
    const s = strings[i];
    if (s.includes('\0')) throw notText(`input '${spec.name}'`, i, 'holds a NUL byte');
    if (LONE_SURROGATE.test(s)) throw notText(`input '${spec.name}'`, i, 'is not UTF-8 (a lone surrogate)');
  }
}

/**
 * NaN and infinities refused on every path, after decoding: binary tensors and gRPC contents carry them
 * as they are, and JSON's 1e39 becomes Infinity only once it is an FP32 (server.allowNonFinite lets them in).
 */
function refuseNonFinite(spec: ServableTensor, tensor: Tensors[string]): void {
  if (spec.datatype !== 'FP32' && spec.datatype !== 'FP64' && spec.datatype !== 'FP16') return;
  const data = tensor.data as ArrayLike<number>;
  // FP16 tensors hold half-precision bits: exponent all ones is an infinity or NaN.
  if (spec.datatype === 'FP16') {
    for (let i = 0; i < data.length; i++) if ((data[i] & 0x7c00) === 0x7c00) throw nonFinite(spec, i, 'an infinity or NaN');
    return;
  }
  if (allFinite(data)) return;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v - v !== 0) throw nonFinite(spec, i, String(v));
  }
}

/**
 * True when no value is NaN or infinite: x * 0 is 0 for a finite x and NaN otherwise, so the sums stay 0
 * exactly when every value is finite. No branch a value and four sums at once: 135 µs for an image's
 * 150,528 floats where a compare-and-branch loop took 434 µs (measured for the review of issue 22).
 */
function allFinite(data: ArrayLike<number>): boolean {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  const n = data.length;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    s0 += data[i] * 0;
    s1 += data[i + 1] * 0;
    s2 += data[i + 2] * 0;
    s3 += data[i + 3] * 0;
  }
  for (; i < n; i++) s0 += data[i] * 0;
  return s0 + s1 + s2 + s3 === 0;
}

const nonFinite = (spec: ServableTensor, index: number, value: string) =>
  new BadRequest(
    `input '${spec.name}': element ${index} is ${value}; ${spec.datatype} inputs must be finite (a server started with server.allowNonFinite, MLOPS_ALLOW_NON_FINITE=true, takes NaN as "missing")`,
  );

/** After every input is decoded: none missing, and named dimensions shared by several inputs ("batch") agree. */
export function finishInputs(inputs: ServableTensor[], tensors: Tensors): number {
  const missing = inputs.filter((s) => !tensors[s.name]);
  if (missing.length > 0) throw new BadRequest(`missing input ${describeInputs(missing)}`);
  for (const spec of inputs) {
    if (spec.datatype === 'BYTES') refuseUnsendableText(spec, tensors[spec.name].data as string[]);
    else if (!spec.allowNonFinite) refuseNonFinite(spec, tensors[spec.name]);
  }
  const seen = new Map<string, { value: number; input: string }>();
  for (const spec of inputs) {
    spec.dims.forEach((dim, i) => {
      if (typeof dim !== 'string' || dim === UNNAMED_DIM) return;
      const value = tensors[spec.name].dims[i];
      const first = seen.get(dim);
      if (!first) seen.set(dim, { value, input: spec.name });
      else if (first.value !== value) {
        throw new BadRequest(`inputs '${first.input}' and '${spec.name}' disagree on dimension '${dim}': ${first.value} vs ${value}`);
      }
    });
  }
  return tensors[inputs[0].name]?.dims[0] ?? 1;
}

/** Output names asked for, checked against the model; undefined when the request names none. */
export function resolveOutputs(outputs: ServableTensor[], names: string[] | undefined): string[] | undefined {
  if (names === undefined || names.length === 0) return undefined;
  const known = new Set(outputs.map((o) => o.name));
  for (const name of names) {
    if (!known.has(name)) throw new BadRequest(`unknown output '${name}'; this model has ${[...known].join(', ')}`);
  }
  return names;
}

/** The model's outputs a request wants, in the model's order. */
export function wantedOutputs(signature: Pick<Signature, 'outputs'>, request: Pick<InferRequest, 'outputs'>): ServableTensor[] {
  return request.outputs ? signature.outputs.filter((o) => request.outputs!.includes(o.name)) : signature.outputs;
}

export type { Datatype };
