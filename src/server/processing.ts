/**
 * A served version's raw inputs and labels: the requests that carry an encoded image or a text
 * rather than tensors (a raw body, a BYTES input, v1 instances of {"b64"} or strings), turned into
 * feeds by the plan the model folder gives, and the answers that carry labels beside the outputs.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ServableModel, ServableTensor, Tensors } from '../model/session.js';
import { inputError } from '../errors.js';
import { BadRequest, type Signature } from '../protocol/request.js';
import type { GrpcInferRequest } from '../protocol/grpc.js';
import { instanceRow } from '../protocol/instances.js';
import type { InferenceEngine } from './engine.js';
import { topLabels, type LabelSettings, type ScoredLabel } from '../processing/labels.js';
import {
  createPreprocessor,
  loadProcessing,
  PROCESSING_FILE,
  rawInputKind,
  type ProcessingOverrides,
  type ProcessingPlan,
  type Preprocessor,
  type RawInput,
} from '../processing/plan.js';

/** The BYTES input names a client may send raw data under, besides the model input it fills. */
const RAW_NAMES = { image: ['image', 'images', 'bytes', 'b64'], text: ['text', 'texts', 'inputs', 'sentence'] };

/** Content types that are the raw input itself. */
const IMAGE_TYPES = /^(image\/[a-z0-9.+-]+|application\/x-image)$/;
const TEXT_TYPES = /^text\/plain$/;

export interface ServedProcessing {
  plan: ProcessingPlan;
  kind?: 'image' | 'text';
  preprocessor?: Preprocessor;
  labels?: LabelSettings;
  /** The model input a raw input fills (images), or the first of the text inputs. */
  filled: string[];
  /** The model's signature with `label` and `score` outputs after its own, for encoding answers. */
  answer: Signature;
}

export const LABEL_OUTPUT = 'label';
export const SCORE_OUTPUT = 'score';

/** The plan for a served model: the overrides given, else the file the build put beside the model. */
export async function serveProcessing(model: ServableModel, overrides?: ProcessingOverrides): Promise<ServedProcessing | undefined> {
  let given = overrides;
  if (!given) {
    const file = path.join(path.dirname(model.info.path), PROCESSING_FILE);
    const text = await readFile(file, 'utf8').catch(() => undefined);
    try {
      given = text ? (JSON.parse(text) as ProcessingOverrides) : {};
    } catch (error) {
      throw inputError(
        `${file}: not valid JSON (${(error as Error).message.split('\n')[0]})`,
        'rebuild the image with `mlops build`: it writes this file from model.preprocess and model.postprocess',
      );
    }
  }
  const plan = await loadProcessing(model.info.path, model, given);
  if (!plan) return undefined;
  const kind = rawInputKind(plan);
  const labelOutputs: ServableTensor[] = plan.labels
    ? [
        { name: LABEL_OUTPUT, datatype: 'BYTES', shape: [-1, -1], dims: ['batch', 'k'], isTensor: true },
        { name: SCORE_OUTPUT, datatype: 'FP32', shape: [-1, -1], dims: ['batch', 'k'], isTensor: true },
      ]
    : [];
  return {
    plan,
    kind,
    preprocessor: createPreprocessor(plan),
    labels: plan.labels,
    filled: plan.image ? [plan.image.input] : plan.text ? [plan.text.settings.inputs.ids.name] : [],
    answer: { name: model.name, version: model.version, inputs: model.inputs, outputs: [...model.outputs, ...labelOutputs] },
  };
}

/**
 * Images or texts one request may hold. A stranger's try sent 50,000 texts in one request (the event
 * loop tokenized them for 0.8 s) and 60 images of 49 megapixels (1.5 GB resident): requests beyond
 * this are refused before any is decoded; clients send more requests, which the batcher joins anyway.
 */
export const MAX_RAW_INPUTS = 256;

/** Content types that can be a raw image or text: only these requests look up the model's processing first. */
export const RAW_CONTENT_TYPE = /^\s*(image\/|application\/x-image|text\/plain|multipart\/form-data)/i;

/** The raw kind a request's content type says its body is, if it is one this model takes. */
export function rawBodyKind(processing: ServedProcessing | undefined, contentType: string | undefined): 'image' | 'text' | undefined {
  if (!processing?.kind || !contentType) return undefined;
  const mime = contentType.split(';')[0].trim().toLowerCase();
  if (IMAGE_TYPES.test(mime)) {
    if (processing.kind !== 'image') throw new BadRequest(`this model takes text, not ${mime}; send text/plain or tensors`, 415);
    return 'image';
  }
  if (TEXT_TYPES.test(mime)) return 'text';
  if (mime === 'multipart/form-data') {
    const send =
      processing.kind === 'image' ? "--data-binary @photo.jpg -H 'Content-Type: image/jpeg'" : "--data-binary @text.txt -H 'Content-Type: text/plain'";
    throw new BadRequest(`multipart uploads are not read: send the ${processing.kind} itself as the body (curl ${send})`, 415);
  }
  return undefined;
}

/** The top k a request asks for (its `top_k` parameter), within the classes there are. */
export function requestedTopK(processing: ServedProcessing, parameters: unknown): number {
  const asked = (parameters as { top_k?: unknown } | undefined)?.top_k;
  if (asked === undefined) return processing.labels?.topK ?? 1;
  if (typeof asked !== 'number' || !Number.isInteger(asked) || asked < 1)
    throw new BadRequest(`parameter top_k must be a whole number from 1, got ${JSON.stringify(asked)}`);
  return asked;
}

/**
 * What an inference answers: the model's outputs and, for a classifier with names, its labels; with the
 * signature that encodes them. The one place REST and gRPC, raw inputs and tensors, add labels.
 */
export function labelledAnswer(
  processing: ServedProcessing | undefined,
  model: Signature,
  result: Tensors,
  k?: number,
): { signature: Signature; result: Tensors } {
  if (!processing?.labels) return { signature: model, result };
  return { signature: processing.answer, result: { ...result, ...labelTensors(processing, result, k ?? processing.labels.topK).tensors } };
}

/** The labels of a run's result, as `label` (BYTES) and `score` (FP32) tensors of [rows, k]. */
export function labelTensors(processing: ServedProcessing, result: Tensors, k: number): { tensors: Tensors; rows: ScoredLabel[][] } {
  const labels = processing.labels!;
  const rows = topLabels(result[labels.output], labels, k);
  const width = rows[0]?.length ?? 0;
  const names: string[] = [];
  const scores = new Float32Array(rows.length * width);
  rows.forEach((row, r) => row.forEach((l, j) => (names.push(l.label), (scores[r * width + j] = l.score))));
  return { tensors: { [LABEL_OUTPUT]: { data: names, dims: [rows.length, width] }, [SCORE_OUTPUT]: { data: scores, dims: [rows.length, width] } }, rows };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function base64(value: string, where: string): Uint8Array {
  // A data URI (what a browser's FileReader gives) carries its base64 after the comma.
  const payload = value.startsWith('data:') ? value.slice(value.indexOf(',') + 1) : value;
  // Node's decoder skips what is not base64; a payload that is not base64 at all decodes to nothing.
  const bytes = Buffer.from(payload, 'base64');
  if (bytes.byteLength === 0 && value.length > 0) throw new BadRequest(`${where}: not base64`);
  return bytes;
}

/**
 * v1 instances that are raw inputs: `{"b64": "..."}` (TF Serving's binary convention), `{"image": {"b64"}}`
 * or a sentence (`"text"` or `{"text": "..."}`). Undefined when the instances are tensors.
 */
export function rawInstances(processing: ServedProcessing | undefined, body: unknown, where: string): RawInput[] | undefined {
  if (!processing?.kind) return undefined;
  const instances = isObject(body) ? (body.instances ?? body.inputs) : undefined;
  if (!Array.isArray(instances) || instances.length === 0) return undefined;
  const first: unknown = instances[0];
  const looksRaw = typeof first === 'string' || (isObject(first) && ('b64' in first || 'image' in first || 'text' in first));
  if (!looksRaw) return undefined;
  return instances.map((instance, i) => {
    const at = `${where}: instance ${i}`;
    if (typeof instance === 'string') {
      if (processing.kind === 'image') return base64(instance, at);
      return instance;
    }
    if (!isObject(instance)) throw new BadRequest(`${at}: expected ${processing.kind === 'image' ? '{"b64": "..."}' : 'a string'}`);
    const value = instance.b64 !== undefined ? instance : (instance.image ?? instance.text);
    if (isObject(value) && typeof value.b64 === 'string') {
      if (processing.kind === 'text') return Buffer.from(value.b64, 'base64').toString('utf8');
      return base64(value.b64, at);
    }
    if (typeof value === 'string') return processing.kind === 'image' ? base64(value, at) : value;
    throw new BadRequest(`${at}: expected ${processing.kind === 'image' ? '{"b64": "<base64 image>"}' : 'a string or {"text": "..."}'}`);
  });
}

/**
 * An OIP v2 request whose input is the raw data: a BYTES input named like the model input it fills, or
 * `image`/`text`. JSON carries an image as base64, a text as itself; the binary extension carries each
 * element as a 4-byte little-endian length and its bytes. Undefined when the request is tensors.
 */
export function rawOipInputs(processing: ServedProcessing | undefined, parsed: unknown, body: Uint8Array, header: number | undefined): RawInput[] | undefined {
  if (!processing?.kind || !isObject(parsed) || !Array.isArray(parsed.inputs)) return undefined;
  const names = [...processing.filled, ...RAW_NAMES[processing.kind]];
  const inputs = parsed.inputs as unknown[];
  const index = inputs.findIndex((i) => isObject(i) && i.datatype === 'BYTES' && typeof i.name === 'string' && names.includes(i.name));
  if (index === -1) return undefined;
  if (inputs.length > 1) throw new BadRequest(`input '${(inputs[index] as { name: string }).name}' is the raw ${processing.kind}: send it alone`);
  const input = inputs[index] as Record<string, unknown>;
  const where = `input '${input.name as string}'`;
  const count =
    Array.isArray(input.shape) && input.shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)
      ? (input.shape as number[]).reduce((n, d) => n * d, 1)
      : undefined;
  if (count === undefined) throw new BadRequest(`${where}: "shape" must be a list of whole numbers, like [1]`);
  const checked = (elements: RawInput[]) => {
    if (elements.length !== count)
      throw new BadRequest(
        `${where}: shape [${(input.shape as number[]).join(', ')}] holds ${count} element${count === 1 ? '' : 's'}, the data has ${elements.length}`,
      );
    return elements;
  };
  const size = isObject(input.parameters) ? input.parameters.binary_data_size : undefined;
  if (size !== undefined) {
    if (header === undefined || typeof size !== 'number')
      throw new BadRequest(`${where}: binary_data_size needs the binary extension's Inference-Header-Content-Length`);
    const data = body.subarray(header, header + size);
    if (data.byteLength !== size) throw new BadRequest(`${where}: binary_data_size is ${size}, but ${data.byteLength} bytes follow the JSON`);
    return checked(lengthPrefixed(data, where));
  }
  const data = Array.isArray(input.data) ? (input.data as unknown[]).flat(4) : undefined;
  if (!data || data.length === 0) throw new BadRequest(`${where}: "data" must hold at least one ${processing.kind === 'image' ? 'base64 image' : 'string'}`);
  return checked(
    data.map((value, i) => {
      if (typeof value !== 'string') throw new BadRequest(`${where}: element ${i} must be a string`);
      return processing.kind === 'image' ? base64(value, `${where}: element ${i}`) : value;
    }),
  );
}

/**
 * Raw inputs through the preprocessing and the engine (and its batcher) as one run, or one run per
 * input for a model whose batch dimension is fixed at 1.
 */
export async function inferRaw(
  engine: Pick<InferenceEngine, 'infer' | 'model'>,
  processing: ServedProcessing,
  raw: RawInput[],
  deadline: number,
): Promise<{ feeds: Tensors; results: Tensors[]; rows: number }> {
  if (raw.length > MAX_RAW_INPUTS) {
    throw new BadRequest(
      `${raw.length} ${processing.kind}s in one request, over the ${MAX_RAW_INPUTS} a request may hold: each is decoded or tokenized before the model runs; send them in several requests`,
      413,
    );
  }
  const { feeds } = await processing.preprocessor!.toFeeds(raw, (i) => (raw.length === 1 ? processing.kind! : `${processing.kind} ${i}`));
  const rows = raw.length;
  const results: Tensors[] = [];
  if (rows > 1 && engine.model.inputs.some((s) => s.shape[0] === 1))
    for (let i = 0; i < rows; i++) results.push(await engine.infer(instanceRow(feeds, i, rows), 1, deadline));
  else results.push(await engine.infer(feeds, rows, deadline));
  return { feeds, results, rows };
}

/** A gRPC ModelInferRequest whose input is the raw data: `bytes_contents`, or raw contents of length-prefixed elements. */
export function rawGrpcInputs(processing: ServedProcessing | undefined, message: GrpcInferRequest): RawInput[] | undefined {
  if (!processing?.kind) return undefined;
  const names = [...processing.filled, ...RAW_NAMES[processing.kind]];
  const inputs = message.inputs ?? [];
  const index = inputs.findIndex((i) => i.datatype === 'BYTES' && typeof i.name === 'string' && names.includes(i.name));
  if (index === -1) return undefined;
  if (inputs.length > 1) throw new BadRequest(`input '${inputs[index].name}' is the raw ${processing.kind}: send it alone`);
  const where = `input '${inputs[index].name}'`;
  const raw = message.raw_input_contents?.[0];
  if (raw) return lengthPrefixed(raw, where);
  const contents = (inputs[index].contents?.bytes_contents ?? []) as Uint8Array[];
  if (contents.length === 0) throw new BadRequest(`${where}: bytes_contents holds no ${processing.kind}`);
  return contents;
}

/** BYTES elements as the binary extension and gRPC raw contents carry them: a 4-byte little-endian length, then the bytes. */
function lengthPrefixed(data: Uint8Array, where: string): RawInput[] {
  const out: RawInput[] = [];
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let at = 0; at < data.byteLength;) {
    if (at + 4 > data.byteLength) throw new BadRequest(`${where}: element ${out.length} has no complete 4-byte length`);
    const length = view.getUint32(at, true);
    if (at + 4 + length > data.byteLength) throw new BadRequest(`${where}: element ${out.length} declares ${length} bytes, past the end of the data`);
    out.push(data.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  if (out.length === 0) throw new BadRequest(`${where}: no elements`);
  return out;
}

/**
 * The body is an image file by its first bytes (JPEG, PNG, GIF, WebP, TIFF, AVIF/HEIF): what
 * `curl --data-binary @photo.jpg` sends labelled as a form, or a client as application/octet-stream.
 */
export function looksLikeImage(body: Uint8Array): boolean {
  const b = body;
  if (b.length < 12) return false;
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return true;
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return true;
  const ascii = (from: number, to: number) => String.fromCharCode(...b.subarray(from, to));
  if (ascii(0, 4) === 'GIF8') return true;
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return true;
  if ((b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a && b[3] === 0) || (b[0] === 0x4d && b[1] === 0x4d && b[2] === 0 && b[3] === 0x2a)) return true;
  return ascii(4, 8) === 'ftyp';
}
