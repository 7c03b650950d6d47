/**
 * The inference steps REST contracts share (decode, run, answer): an OIP v2 body, JSON or binary; raw
 * images and texts; {"instances": [...]}. The OIP, v1, SageMaker and Vertex AI routes call these.
 */
import type http from 'node:http';
import { decodeInstances, encodePredictions, instanceRow } from '../protocol/instances.js';
import { BadRequest } from '../protocol/request.js';
import { decodeParsedRestRequest, decodeRestRequest, decodeRestResponse, encodeRestResponse, headerLength } from '../protocol/rest.js';
import { copyTensors, encodeInferenceRecords } from '../monitor/inference-records.js';
import { utf8Text, type RawInput } from '../processing/plan.js';
import type { Tensors } from '../model/session.js';
import { OWNED, readBody, type BodyLimits } from './body.js';
import type { InferenceLog } from './inference-log.js';
import type { ModelRepository, ServedVersion } from './model-repository.js';
import { inferRaw, labelledAnswer, labelTensors, looksLikeImage, rawBodyKind, rawInstances, rawOipInputs, requestedTopK } from './processing.js';
import { requestId, sendInferResponse, sendJson, type BinaryFraming } from './rest-pipeline.js';
import { cacheRefused, inferCached, type ResponseCache } from './response-cache.js';

/** What every contract's routes share: the models, the limits, the deadline's clock. */
export interface RestContext {
  repository: ModelRepository;
  /** Off when undefined. */
  inferenceLog?: InferenceLog;
  bodyLimits: BodyLimits;
  /** performance.now() time by which a request whose body was just read must be answered. */
  deadline: () => number;
  /** Bodies larger than this are decoded, run and encoded whole in a worker thread. */
  offloadBytes: number;
  /** Opt-in (server.responseCache); undefined when off. */
  responseCache?: ResponseCache;
}

export type RestInference = ReturnType<typeof restInference>;

export function restInference(ctx: RestContext) {
  return {
    runInfer: runInfer.bind(null, ctx),
    runRaw: runRaw.bind(null, ctx),
    rawBody: rawBody.bind(null, ctx),
    readInferBody: readInferBody.bind(null, ctx),
    runInstances: runInstances.bind(null, ctx),
  };
}

const NO_SHADOWS: ServedVersion[] = [];
const NO_BINARY = new Set<string>();

/**
 * An OIP v2 request, JSON or binary, to the version `served`; `framing` says how a binary answer tells its
 * JSON length. `mirrored`: the split picked the version, so the model's shadows get a copy.
 */
async function runInfer(
  ctx: RestContext,
  served: ServedVersion,
  mirrored: boolean,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  body: Buffer,
  header: number | undefined,
  framing: BinaryFraming,
  parsed?: unknown,
) {
  const { repository, inferenceLog, deadline, responseCache } = ctx;
  const { engine, recordModel } = served;
  const { model } = engine;
  const logged = inferenceLog?.sampled() ?? false;
  const shadows = mirrored ? repository.shadowsOf(served) : NO_SHADOWS;
  // A model that takes images or texts, and a request that may carry them raw (before a large body goes
  // whole to a worker, which knows tensors only): the JSON head is read only when it names a BYTES input.
  const textForm = served.processing?.kind === 'text' && FORM_TYPE.test(req.headers['content-type'] ?? '');
  if (
    served.processing?.kind &&
    (parsed !== undefined ||
      header !== undefined ||
      textForm ||
      looksLikeImage(body) ||
      BYTES_INPUT.test(body.toString('latin1', 0, Math.min(body.byteLength, 4096))))
  ) {
    // An image file under another content type (curl --data-binary labels it a form): taken as the image.
    if (served.processing.kind === 'image' && parsed === undefined && header === undefined && looksLikeImage(body))
      return runRaw(ctx, served, req, res, [body], 'oip');
    // A sentence sent with curl -d (labelled a form) to a text model: what is not JSON is the text.
    if (textForm && parsed === undefined && header === undefined && body[0] !== 0x7b) {
      return runRaw(ctx, served, req, res, [utf8Text(body, 'the body')], 'oip');
    }
    // A BYTES input named for the image or text carries it raw.
    parsed ??= parseJsonBody(header === undefined ? body : body.subarray(0, header));
    const raw = rawOipInputs(served.processing, parsed, body, header);
    if (raw) return runRaw(ctx, served, req, res, raw, 'oip', parsed as { id?: unknown; parameters?: unknown });
  }
  if (engine.workers > 0 && body.byteLength > ctx.offloadBytes) {
    const log = logged ? (inferenceLog!.inputs ? 'with-inputs' : 'outputs') : undefined;
    // The body may move to the worker: the shadows get their own copy first (Buffer.slice would be a view of it).
    const copy = shadows.length > 0 ? { body: new Uint8Array(body), header } : undefined;
    const due = deadline();
    const reply = await engine.inferRest(body, header, OWNED.has(body.buffer), { id: requestId(req), log }, due);
    sendInferResponse(res, reply.body, reply.headerLength, framing);
    if (reply.logged) inferenceLog!.add(reply.logged, reply.rows);
    if (copy) repository.mirror(served, shadows, copy, reply.rows, () => decodeRestResponse(reply.body, reply.headerLength), due);
    return;
  }
  const request = parsed === undefined ? decodeRestRequest(body, header, model) : decodeParsedRestRequest(parsed, body, header, model);
  request.id ??= requestId(req);
  // Batching may hand the inputs' buffers to a worker thread: the log and the shadows keep a copy.
  const inputs = logged && inferenceLog!.inputs ? copyTensors(request.inputs) : undefined;
  const copy = shadows.length > 0 ? { tensors: copyTensors(request.inputs) } : undefined;
  // The client's own deadline (parameters.timeout) only ever shortens the server's.
  const due = request.timeoutMicros === undefined ? deadline() : Math.min(deadline(), performance.now() + request.timeoutMicros / 1000);
  const result = await inferCached(responseCache, cacheRefused(req.headers['cache-control']), engine, request, due);
  // A classifier with names: its labels beside the outputs, unless the request named the outputs it wants.
  const answer = request.outputs === undefined && served.processing ? labelledAnswer(served.processing, model, result) : undefined;
  const response = answer ? encodeRestResponse(answer.signature, answer.result, request) : encodeRestResponse(model, result, request);
  sendInferResponse(res, response.body, response.headerLength, framing);
  if (logged) inferenceLog!.add(encodeInferenceRecords({ id: request.id, rows: request.rows, model: recordModel }, result, inputs), request.rows);
  if (copy) repository.mirror(served, shadows, copy, request.rows, () => result, due);
}

/**
 * Raw inputs (encoded images or texts) to the model and back: preprocessed as the model folder says,
 * run through the same engine (and batcher) as tensors, answered as OIP v2 with `label` and `score`
 * outputs, as v1 predictions (per instance a pipeline's [{label, score}]), or as a pipeline's bare list.
 */
async function runRaw(
  ctx: RestContext,
  served: ServedVersion,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  raw: RawInput[],
  answer: 'oip' | 'predictions' | 'pipeline',
  given: { id?: unknown; parameters?: unknown } = {},
) {
  const { inferenceLog, deadline } = ctx;
  const { engine, recordModel } = served;
  const processing = served.processing!;
  const { model } = engine;
  const k = requestedTopK(processing, given.parameters);
  const id = typeof given.id === 'string' ? given.id : requestId(req);
  const { feeds, results, rows } = await inferRaw(engine, processing, raw, deadline());
  const logged = inferenceLog?.sampled() ?? false;
  if (answer === 'oip') {
    if (results.length > 1) throw new BadRequest('this model takes one input a request (its batch dimension is 1): send one image or text per request');
    const labelled = labelledAnswer(processing, model, results[0], k);
    const response = encodeRestResponse(labelled.signature, labelled.result, { id, outputs: undefined, binaryOutputs: NO_BINARY });
    sendInferResponse(res, response.body, response.headerLength, 'header');
  } else {
    res.setHeader('x-request-id', id);
    const predictions = processing.labels ? results.flatMap((r) => labelTensors(processing, r, k).rows) : encodePredictions(model.outputs, results);
    sendJson(res, 200, answer === 'pipeline' ? (rows === 1 ? predictions[0] : predictions) : { predictions });
  }
  if (logged)
    inferenceLog!.add(
      results
        .map((r, i) =>
          encodeInferenceRecords(
            { id, rows, ...(results.length > 1 ? { part: { firstRow: i, rows: 1 } } : {}), model: recordModel },
            r,
            inferenceLog!.inputs ? copyTensors(results.length > 1 ? instanceRow(feeds, i, rows) : feeds) : undefined,
          ),
        )
        .join(''),
      rows,
    );
}

/**
 * A raw body (Content-Type image/* or text/plain) the version takes, or undefined. fetch() and many
 * HTTP clients label any string body text/plain: a body that parses as an OIP or instances request is
 * that request, passed on parsed.
 */
async function rawBody(
  ctx: RestContext,
  served: ServedVersion,
  req: http.IncomingMessage,
): Promise<{ raw: RawInput[] } | { body: Buffer; parsed: unknown } | undefined> {
  const kind = rawBodyKind(served.processing, req.headers['content-type']);
  if (!kind) return undefined;
  const body = await readBody(req, ctx.bodyLimits);
  if (kind === 'text') {
    const request = jsonRequest(body);
    if (request) return { body, parsed: request };
    // Text to a model that takes images: said so, rather than read as malformed JSON.
    if (served.processing!.kind === 'image')
      throw new BadRequest('this model takes images, not text/plain; send an image (image/jpeg, image/png, ...) or tensors', 415);
  }
  return { raw: [kind === 'text' ? utf8Text(body, 'the body') : body] };
}

/** Reads a body whose binary data follows a JSON header of `declared` bytes, and checks that length. */
async function readInferBody(ctx: RestContext, req: http.IncomingMessage, declared: string | string[] | undefined) {
  // Only for placing the body in memory; headerLength() below checks the value and names what is wrong.
  const alignAfter = Number(declared);
  const body = await readBody(req, ctx.bodyLimits, Number.isInteger(alignAfter) && alignAfter > 0 ? alignAfter : 0);
  return { body, header: headerLength(declared, body.byteLength) };
}

/** {"instances": [...]} in, {"predictions": [...]} out: v1 :predict, Vertex AI, SageMaker JSON. */
async function runInstances(ctx: RestContext, served: ServedVersion, req: http.IncomingMessage, res: http.ServerResponse, parsed: unknown, where: string) {
  const { inferenceLog, deadline } = ctx;
  const { engine, recordModel } = served;
  const { model } = engine;
  const raw = rawInstances(served.processing, parsed, where);
  if (raw) return runRaw(ctx, served, req, res, raw, 'predictions', parsed as { parameters?: unknown });
  const { feeds, rows } = decodeInstances(model.inputs, parsed, where);
  // These answers have no id field: the id travels in the X-Request-Id header.
  const id = requestId(req);
  res.setHeader('x-request-id', id);
  const logged = inferenceLog?.sampled() ?? false;
  let records = '';
  // A model with a fixed batch of 1 is run one instance at a time.
  const perInstance = rows > 1 && model.inputs.some((s) => s.shape[0] === 1);
  const due = deadline();
  const results: Tensors[] = [];
  if (perInstance) {
    for (let i = 0; i < rows; i++) {
      const row = instanceRow(feeds, i, rows);
      const inputs = logged && inferenceLog!.inputs ? copyTensors(row) : undefined;
      results.push(await engine.infer(row, 1, due));
      if (logged) records += encodeInferenceRecords({ id, rows, part: { firstRow: i, rows: 1 }, model: recordModel }, results[i], inputs);
    }
  } else {
    const inputs = logged && inferenceLog!.inputs ? copyTensors(feeds) : undefined;
    results.push(await engine.infer(feeds, rows, due));
    if (logged) records = encodeInferenceRecords({ id, rows, model: recordModel }, results[0], inputs);
  }
  sendJson(res, 200, { predictions: encodePredictions(model.outputs, results) });
  if (logged) inferenceLog!.add(records, rows);
}

/** A raw body has no JSON for parameters: `?top_k=3` on the URL asks for them. */
export function queryParameters(req: http.IncomingMessage): { top_k?: number } | undefined {
  const at = req.url?.indexOf('?') ?? -1;
  if (at === -1) return undefined;
  const topK = new URLSearchParams(req.url!.slice(at + 1)).get('top_k');
  return topK === null ? undefined : { top_k: /^\d+$/.test(topK) ? Number(topK) : (topK as unknown as number) };
}

/** What curl -d and a bare --data-binary send unasked. */
const FORM_TYPE = /^\s*application\/x-www-form-urlencoded/i;

/** A JSON request naming a BYTES input, in its first few KB: what may carry an image or a text raw. */
const BYTES_INPUT = /"datatype"\s*:\s*"BYTES"/;

/** A body that is a JSON request (an object with "inputs" or "instances"), parsed; undefined otherwise. */
function jsonRequest(body: Buffer): object | undefined {
  let i = 0;
  while (i < body.length && (body[i] === 0x20 || body[i] === 0x0a || body[i] === 0x0d || body[i] === 0x09)) i++;
  if (body[i] !== 0x7b) return undefined;
  try {
    const parsed = JSON.parse(body.toString('utf8')) as unknown;
    return typeof parsed === 'object' && parsed !== null && ('inputs' in parsed || 'instances' in parsed) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

export function parseJsonBody(body: Buffer): unknown {
  if (body.byteLength === 0) throw new BadRequest('request body is empty; send a JSON object');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new BadRequest(`malformed JSON: ${(error as Error).message}`);
  }
}
