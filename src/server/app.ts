import { failureLogger } from './failure-log.js';
import { inferRaw, labelledAnswer, labelTensors, looksLikeImage, RAW_CONTENT_TYPE, rawBodyKind, rawInstances, rawOipInputs, requestedTopK } from './processing.js';
import { utf8Text, type RawInput } from '../processing/plan.js';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Tensors } from '../model/session.js';
import { fromHalfBits } from '../model/datatypes.js';
import { spatialMap } from '../explain/occlusion.js';
import { parse as parseCsv } from 'csv-parse/sync';
import { decodeInstances, encodePredictions, instanceRow } from '../protocol/instances.js';
import { BadRequest, boundErrorText } from '../protocol/request.js';
import { BINARY_EXTENSION, decodeParsedRestRequest, decodeRestResponse, decodeRestRequest, encodeRestResponse, HEADER_LENGTH, headerLength } from '../protocol/rest.js';
import { copyTensors, encodeInferenceRecords } from '../monitor/inference-records.js';
import type { InferenceLog } from './inference-log.js';
import { requestRecorder, type ServerMetrics } from './metrics.js';
import type { ModelRepository, ServedVersion } from './model-repository.js';
import { closeWithin, type ServingState } from './state.js';
import { accessRefusal, bearerToken, type AccessControl, type TrustedProxies } from './auth.js';
import { clientCertificateRefusal, httpsOptions, watchTls, type TlsOptions } from './tls.js';
import type { TLSSocket } from 'node:tls';
import https from 'node:https';
import { awaitContinue, type BodyBudget, OWNED, readBody, releaseRequest, setClient, ShuttingDown, SlowBody, uninvited, type BodyLimits } from './body.js';
import type { RequestMemory } from './memory-budget.js';

export interface RestServerOptions {
  repository: ModelRepository;
  /** POST /v2/repository/models/{name}/load and /unload; 403 when off. */
  repositoryControl: boolean;
  metrics: ServerMetrics;
  state: ServingState;
  maxBodyBytes: number;
  /** Bytes all bodies still arriving (REST and gRPC) may hold together, shared fairly between clients. */
  bodyBudget: BodyBudget;
  /** Where a client's address comes from behind a proxy (server.trustedProxies). */
  proxies: TrustedProxies;
  /** server.memoryBudget at run time; undefined without one. */
  requestMemory?: RequestMemory;
  /** A request not answered this long after its body was read gets 504. */
  inferenceTimeoutMs: number;
  /** Bodies larger than this are decoded, run and encoded whole in a worker thread. */
  offloadBytes: number;
  /** The mlops version, reported by GET /v2. */
  serverVersion: string;
  /** Off when undefined. */
  inferenceLog?: InferenceLog;
  /** Bearer tokens; off when undefined. */
  access?: AccessControl;
  /** HTTPS (and client certificates) when set. */
  tls?: TlsOptions;
  /** Routes a platform names (Vertex AI's AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE), served beside the others. */
  routes: PlatformRoutes;
  /** The most rows one explain request may hold. */
  explainMaxRows: number;
  log: (line: string) => void;
}

export interface PlatformRoutes {
  health?: string;
  predict?: string;
}

export interface RestServer {
  listen(port: number, host: string): Promise<{ url: string; port: number }>;
  /** No new connections, in-flight requests finish; forced after timeoutMs. */
  shutdown(timeoutMs: number): Promise<{ forced: boolean }>;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, params: RouteParams) => Promise<void> | void;
interface RouteParams {
  name?: string;
  version?: string;
}
interface Route {
  /** The metrics label: the route's template, never the raw URL. */
  label: string;
  pattern: RegExp;
  methods: Record<string, Handler>;
  /** Answered without a token when auth is on: health and readiness probes (and /metrics unless auth.metrics). */
  open?: boolean;
  /** A contract's route that names no model (SageMaker's, Vertex AI's): the first model answers, and its metrics say so. */
  firstModel?: boolean;
}

/** How a binary OIP answer tells the length of its JSON: its own header, or SageMaker's content-type parameter. */
type BinaryFraming = 'header' | 'sagemaker';
export const SAGEMAKER_BINARY = 'application/vnd.sagemaker-triton.binary+json';
/** What curl, fetch and `aws sagemaker-runtime invoke-endpoint` send when told nothing: read as JSON. */
const GENERIC_TYPES = new Set(['text/plain', 'application/octet-stream', 'application/x-www-form-urlencoded']);

const MODEL_PATH = String.raw`/v2/models/([^/]+)(?:/versions/([^/]+))?`;
export const EXTENSIONS = [BINARY_EXTENSION];

/**
 * After an early 413 the client may still be writing its body. Closing at once
 * resets the connection and clients that write before they read (Python's
 * urllib and requests) never see the answer; like nginx's lingering close, the
 * rest of the body is read and dropped, within these bounds, before closing.
 */
const LINGER_LIMIT = { bytes: 256 * 2 ** 20, ms: 10_000 };
/** After a refusal that is no mistake of size (401, 403, 404, 405, 429): enough for the answer to be read, little more. */
const REFUSED_LINGER = { bytes: 2 ** 20, ms: 2000 };
/** At shutdown, a body that has sent nothing for this long is answered 503 and closed, not waited for. */
const SHUTDOWN_BODY_IDLE_MS = 1000;

export function createRestServer(options: RestServerOptions): RestServer {
  const { repository, metrics, state, log, inferenceLog, access } = options;
  const mutualTls = Boolean(options.tls?.clientCa);
  const bodyLimits: BodyLimits = { maxBodyBytes: options.maxBodyBytes, budget: options.bodyBudget, memory: options.requestMemory };
  const { proxies } = options;
  const logFailure = failureLogger(log);
  const recordRequest = requestRecorder(metrics);
  const deadline = () => performance.now() + options.inferenceTimeoutMs;
  const NO_SHADOWS: ServedVersion[] = [];
  const NO_BINARY = new Set<string>();

  /**
   * An OIP v2 request, JSON or binary, to the version `served`; `framing` says how a binary answer tells its
   * JSON length. `mirrored`: the split picked the version, so the model's shadows get a copy.
   */
  const runInfer = async (served: ServedVersion, mirrored: boolean, req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, header: number | undefined, framing: BinaryFraming, parsed?: unknown) => {
    const { engine, recordModel } = served;
    const { model } = engine;
    const logged = inferenceLog?.sampled() ?? false;
    const shadows = mirrored ? repository.shadowsOf(served) : NO_SHADOWS;
    // A model that takes images or texts, and a request that may carry them raw (before a large body goes
    // whole to a worker, which knows tensors only): the JSON head is read only when it names a BYTES input.
    const textForm = served.processing?.kind === 'text' && FORM_TYPE.test(req.headers['content-type'] ?? '');
    if (served.processing?.kind && (parsed !== undefined || header !== undefined || textForm || looksLikeImage(body) || BYTES_INPUT.test(body.toString('latin1', 0, Math.min(body.byteLength, 4096))))) {
      // An image file under another content type (curl --data-binary labels it a form): taken as the image.
      if (served.processing.kind === 'image' && parsed === undefined && header === undefined && looksLikeImage(body)) return runRaw(served, req, res, [body], 'oip');
      // A sentence sent with curl -d (labelled a form) to a text model: what is not JSON is the text.
      if (textForm && parsed === undefined && header === undefined && body[0] !== 0x7b) {
        return runRaw(served, req, res, [utf8Text(body, 'the body')], 'oip');
      }
      // A BYTES input named for the image or text carries it raw.
      parsed ??= parseJsonBody(header === undefined ? body : body.subarray(0, header));
      const raw = rawOipInputs(served.processing, parsed, body, header);
      if (raw) return runRaw(served, req, res, raw, 'oip', parsed as { id?: unknown; parameters?: unknown });
    }
    if (engine.workers > 0 && body.byteLength > options.offloadBytes) {
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
    const due = deadline();
    const result = await engine.infer(request.inputs, request.rows, due);
    // A classifier with names: its labels beside the outputs, unless the request named the outputs it wants.
    const answer = request.outputs === undefined && served.processing ? labelledAnswer(served.processing, model, result) : undefined;
    const response = answer ? encodeRestResponse(answer.signature, answer.result, request) : encodeRestResponse(model, result, request);
    sendInferResponse(res, response.body, response.headerLength, framing);
    if (logged) inferenceLog!.add(encodeInferenceRecords({ id: request.id, rows: request.rows, model: recordModel }, result, inputs), request.rows);
    if (copy) repository.mirror(served, shadows, copy, request.rows, () => result, due);
  };

  /**
   * Raw inputs (encoded images or texts) to the model and back: preprocessed as the model folder says,
   * run through the same engine (and batcher) as tensors, answered as OIP v2 with `label` and `score`
   * outputs, as v1 predictions (per instance a pipeline's [{label, score}]), or as a pipeline's bare list.
   */
  const runRaw = async (served: ServedVersion, req: http.IncomingMessage, res: http.ServerResponse, raw: RawInput[], answer: 'oip' | 'predictions' | 'pipeline', given: { id?: unknown; parameters?: unknown } = {}) => {
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
    if (logged) inferenceLog!.add(results.map((r, i) => encodeInferenceRecords({ id, rows, ...(results.length > 1 ? { part: { firstRow: i, rows: 1 } } : {}), model: recordModel }, r, inferenceLog!.inputs ? copyTensors(results.length > 1 ? instanceRow(feeds, i, rows) : feeds) : undefined)).join(''), rows);
  };

  /**
   * A raw body (Content-Type image/* or text/plain) the version takes, or undefined. fetch() and many
   * HTTP clients label any string body text/plain: a body that parses as an OIP or instances request is
   * that request, passed on parsed.
   */
  const rawBody = async (served: ServedVersion, req: http.IncomingMessage): Promise<{ raw: RawInput[] } | { body: Buffer; parsed: unknown } | undefined> => {
    const kind = rawBodyKind(served.processing, req.headers['content-type']);
    if (!kind) return undefined;
    const body = await readBody(req, bodyLimits);
    if (kind === 'text') {
      const request = jsonRequest(body);
      if (request) return { body, parsed: request };
      // Text to a model that takes images: said so, rather than read as malformed JSON.
      if (served.processing!.kind === 'image') throw new BadRequest('this model takes images, not text/plain; send an image (image/jpeg, image/png, ...) or tensors', 415);
    }
    return { raw: [kind === 'text' ? utf8Text(body, 'the body') : body] };
  };

  /** Reads a body whose binary data follows a JSON header of `declared` bytes, and checks that length. */
  const readInferBody = async (req: http.IncomingMessage, declared: string | string[] | undefined) => {
    // Only for placing the body in memory; headerLength() below checks the value and names what is wrong.
    const alignAfter = Number(declared);
    const body = await readBody(req, bodyLimits, Number.isInteger(alignAfter) && alignAfter > 0 ? alignAfter : 0);
    return { body, header: headerLength(declared, body.byteLength) };
  };

  const infer: Handler = async (req, res, params) => {
    repository.check(params.name, params.version);
    // Only an image or text content type costs a look at the model's processing before the body is read.
    const raw = RAW_CONTENT_TYPE.test(req.headers['content-type'] ?? '') ? await rawBody(repository.route(params.name, params.version), req) : undefined;
    if (raw && 'raw' in raw) return runRaw(repository.route(params.name, params.version), req, res, raw.raw, 'oip', { parameters: queryParameters(req) });
    if (raw) return runInfer(repository.route(params.name, params.version), params.version === undefined, req, res, raw.body, undefined, 'header', raw.parsed);
    const { body, header } = await readInferBody(req, req.headers[HEADER_LENGTH]);
    return runInfer(repository.route(params.name, params.version), params.version === undefined, req, res, body, header, 'header');
  };

  /** {"instances": [...]} in, {"predictions": [...]} out: v1 :predict, Vertex AI, SageMaker JSON. */
  const runInstances = async (served: ServedVersion, req: http.IncomingMessage, res: http.ServerResponse, parsed: unknown, where: string) => {
    const { engine, recordModel } = served;
    const { model } = engine;
    const raw = rawInstances(served.processing, parsed, where);
    if (raw) return runRaw(served, req, res, raw, 'predictions', parsed as { parameters?: unknown });
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
  };

  const predict: Handler = async (req, res, params) => {
    repository.check(params.name);
    const parsed = parseJsonBody(await readBody(req, bodyLimits));
    await runInstances(repository.route(params.name), req, res, parsed, ':predict');
  };

  /**
   * SageMaker's inference route. The content type picks the format: JSON instances or an OIP v2 body,
   * OIP binary (SageMaker passes no custom headers, so its JSON length rides in the content type, as
   * SageMaker's Triton containers take it), or CSV rows without a header.
   */
  const invocations: Handler = async (req, res) => {
    // SageMaker's contract names no model: the first one answers (TargetModel, multi-model endpoints, is not served).
    repository.check(undefined);
    // The version is picked once the body has arrived: a load may have swapped it meanwhile.
    const served = () => repository.route(undefined);
    const [mime, ...parameters] = (req.headers['content-type'] || 'application/json').split(';').map((p) => p.trim().toLowerCase());
    if (mime === SAGEMAKER_BINARY) {
      const size = parameters.find((p) => p.startsWith('json-header-size='))?.slice('json-header-size='.length);
      if (size === undefined) throw new BadRequest(`content type ${SAGEMAKER_BINARY} needs its length parameter: ${SAGEMAKER_BINARY};json-header-size=<bytes of JSON before the binary data>`);
      const { body, header } = await readInferBody(req, size);
      return runInfer(served(), true, req, res, body, header, 'sagemaker');
    }
    if (req.headers[HEADER_LENGTH] !== undefined) {
      const { body, header } = await readInferBody(req, req.headers[HEADER_LENGTH]);
      return runInfer(served(), true, req, res, body, header, 'header');
    }
    // An image (image/*, SageMaker's application/x-image) or a text (text/plain) to a model that takes one.
    const raw = RAW_CONTENT_TYPE.test(mime) ? await rawBody(served(), req) : undefined;
    if (raw && 'raw' in raw) return runRaw(served(), req, res, raw.raw, 'pipeline', { parameters: queryParameters(req) });
    if (raw) {
      if ('instances' in (raw.parsed as object)) return runInstances(served(), req, res, raw.parsed, '/invocations');
      return runInfer(served(), true, req, res, raw.body, undefined, 'header', raw.parsed);
    }
    if (mime === 'text/csv') {
      const instances = csvRows(await readBody(req, bodyLimits));
      return runInstances(served(), req, res, { instances }, '/invocations (text/csv)');
    }
    if (mime === 'application/json' || mime.endsWith('+json') || GENERIC_TYPES.has(mime)) {
      const body = await readBody(req, bodyLimits);
      const parsed = parseJsonBody(body);
      if (typeof parsed === 'object' && parsed !== null && 'instances' in parsed) return runInstances(served(), req, res, parsed, '/invocations');
      return runInfer(served(), true, req, res, body, undefined, 'header', parsed);
    }
    throw new BadRequest(`/invocations does not take content type '${mime}': send application/json ({"instances": [...]} or an Open Inference Protocol v2 body), text/csv, or ${SAGEMAKER_BINARY};json-header-size=N`, 415);
  };

  /** What the explain routes offer; a server that cannot explain says why before reading the body. */
  const explanations = (served: ServedVersion) => {
    const offered = served.engine.explanations;
    if (!('method' in offered)) throw new BadRequest(offered.unavailable, offered.status);
    return offered;
  };

  /**
   * Explanations for the rows of a request, in a worker thread. The body is an OIP v2 request (explain)
   * or {"instances": [...]} (v1 :explain). A tabular input gets Kernel SHAP: each feature's attribution
   * to each floating-point output column, with the base value (the background's mean output), which
   * the attributions add up to the output from. A spatial input gets occlusion: a map of the input's
   * height and width, each position carrying how much the column fell when its patch was zeroed.
   */
  const runExplain = async (served: ServedVersion, res: http.ServerResponse, feeds: Tensors, rows: number, id: string) => {
    const { engine } = served;
    const { model } = engine;
    const offered = explanations(served);
    const cost = offered.method === 'kernel_shap' ? `${offered.samples} x ${offered.backgroundRows} model rows` : 'a model row per patch';
    if (rows > options.explainMaxRows) throw new BadRequest(`an explanation request may hold at most ${options.explainMaxRows} rows (explain.maxRows), and this one holds ${rows}: each row costs ${cost}`, 400);
    const tensor = feeds[offered.input];
    const data = tensor.data as ArrayLike<number | bigint>;
    const values = new Float64Array(data.length);
    const half = model.inputs[0].datatype === 'FP16';
    for (let i = 0; i < data.length; i++) values[i] = half ? fromHalfBits(Number(data[i])) : Number(data[i]);
    const head = { model_name: model.name, model_version: model.version, id };
    // The worker attributes every floating-point output at once, their columns side by side: split per output.
    const split = <R>(outputs: { name: string; width: number }[], each: (start: number, width: number, total: number) => R) => {
      const total = outputs.reduce((n, o) => n + o.width, 0);
      let next = 0;
      return outputs.map((o) => ({ name: o.name, ...each((next += o.width) - o.width, o.width, total) }));
    };
    if (offered.method === 'occlusion') {
      const dims = tensor.dims.slice(1);
      const reply = await engine.occlude(values, dims, rows, deadline());
      const [h, w] = [dims[reply.axes[0]], dims[reply.axes[1]]];
      const outputs = split(reply.outputs, (start, width, total) => ({
        rows: reply.rows.map((r) => {
          const own = r.output.slice(start, start + width);
          // The column mapped: the largest (the predicted class), or the value.
          const column = own.reduce((best, v, k) => (v > own[best] ? k : best), 0);
          return { values: own, column, map: spatialMap(r.patches, r.grid, total, start + column, [h, w], offered.patch) };
        }),
      }));
      return sendJson(res, 200, { ...head, method: 'occlusion', patch: offered.patch, baseline: 0, spatial_shape: [h, w], model_rows: reply.modelRows, outputs });
    }
    const reply = await engine.explain(values, rows, deadline());
    const outputs = split(reply.outputs, (start, width, total) => ({
      base_values: reply.base.slice(start, start + width),
      // Per row: the output's values, and per feature its attribution to each of them.
      rows: reply.rows.map((r) => ({
        values: r.output.slice(start, start + width),
        attributions: offered.features.map((_, f) => r.values.slice(f * total + start, f * total + start + width)),
      })),
    }));
    sendJson(res, 200, {
      ...head,
      method: 'kernel_shap',
      features: offered.features,
      coalitions: reply.coalitions,
      exact: reply.exact,
      background_rows: offered.backgroundRows,
      model_rows: reply.modelRows,
      outputs,
    });
  };

  // Explanations are of the version that would have answered: picked by the split like an inference.
  const explain: Handler = async (req, res, params) => {
    explanations(repository.route(params.name, params.version));
    const { body, header } = await readInferBody(req, req.headers[HEADER_LENGTH]);
    const served = repository.route(params.name, params.version);
    const request = decodeRestRequest(body, header, served.engine.model);
    await runExplain(served, res, request.inputs, request.rows, request.id ?? requestId(req));
  };
  const explainInstances: Handler = async (req, res, params) => {
    explanations(repository.route(params.name));
    const parsed = parseJsonBody(await readBody(req, bodyLimits));
    const served = repository.route(params.name);
    const { feeds, rows } = decodeInstances(served.engine.model.inputs, parsed, ':explain');
    const id = requestId(req);
    res.setHeader('x-request-id', id);
    await runExplain(served, res, feeds, rows, id);
  };

  /** The OIP repository extension's load and unload, when server.repositoryControl allows them. */
  const control = (action: 'load' | 'unload'): Handler => async (req, res, params) => {
    if (!options.repositoryControl) throw new BadRequest(`model ${action} is off on this server: set server.repositoryControl (MLOPS_REPOSITORY_CONTROL=true) to allow it`, 403);
    // The body (OIP allows {"parameters": {...}}) asks for nothing mlops reads; it is read and dropped.
    await readBody(req, bodyLimits);
    const name = params.name!;
    await (action === 'load' ? repository.load(name) : repository.unload(name));
    log(`model '${name}' ${action === 'load' ? 'loaded' : 'unloaded'} by POST /v2/repository/models/${name}/${action}`);
    sendJson(res, 200, {});
  };

  /** Vertex AI's predict route names no model: the first answers, picked once the body has arrived. */
  const vertexPredict: Handler = async (req, res) => {
    repository.check(undefined);
    const parsed = parseJsonBody(await readBody(req, bodyLimits));
    await runInstances(repository.route(undefined), req, res, parsed, options.routes.predict!);
  };

  const ready: Handler = (_q, res) => {
    const ready = state.ready && repository.accepting;
    sendJson(res, ready ? 200 : 503, { ready });
  };
  // Vertex AI names its own routes in AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE; they come first, matched exactly.
  const platformRoutes: Route[] = [
    ...(options.routes.health ? [{ label: '$AIP_HEALTH_ROUTE', pattern: exactPath(options.routes.health), methods: { GET: ready }, open: true }] : []),
    ...(options.routes.predict
      ? [{ label: '$AIP_PREDICT_ROUTE', pattern: exactPath(options.routes.predict), firstModel: true, methods: { POST: vertexPredict } }]
      : []),
  ];

  const routes: Route[] = [
    ...platformRoutes,
    { label: '/v2', pattern: /^\/v2\/?$/, methods: { GET: (_q, res) => sendJson(res, 200, { name: 'mlops', version: options.serverVersion, extensions: EXTENSIONS }) } },
    { label: '/v2/health/live', pattern: /^\/v2\/health\/live$/, methods: { GET: (_q, res) => sendJson(res, 200, { live: true }) }, open: true },
    { label: '/v2/health/ready', pattern: /^\/v2\/health\/ready$/, methods: { GET: ready }, open: true },
    {
      // Triton's model repository index: lets a client find the model on a server it knows nothing about.
      label: '/v2/repository/index',
      pattern: /^\/v2\/repository\/index$/,
      methods: {
        POST: (_q, res) => sendJson(res, 200, repository.index().map((m) => (state.ready || m.state !== 'READY' ? m : { ...m, state: 'UNAVAILABLE', reason: 'the server is not ready' }))),
      },
    },
    { label: '/v2/repository/models/{name}/load', pattern: /^\/v2\/repository\/models\/([^/]+)\/load$/, methods: { POST: control('load') } },
    { label: '/v2/repository/models/{name}/unload', pattern: /^\/v2\/repository\/models\/([^/]+)\/unload$/, methods: { POST: control('unload') } },
    {
      label: '/v2/models/{name}',
      pattern: new RegExp(`^${MODEL_PATH}$`),
      methods: {
        GET: (_q, res, p) => sendJson(res, 200, repository.metadata(p.name, p.version)),
      },
    },
    {
      label: '/v2/models/{name}/ready',
      pattern: new RegExp(`^${MODEL_PATH}/ready$`),
      open: true,
      methods: {
        GET: (_q, res, p) => {
          const model = repository.ready(p.name, p.version);
          const ready = state.ready && model.ready;
          sendJson(res, ready ? 200 : 503, { name: model.name, ready });
        },
      },
    },
    {
      // Counts only, never inputs: what `mlops monitor` compares with the reference.
      label: '/v2/models/{name}/profile',
      pattern: new RegExp(`^${MODEL_PATH}/profile$`),
      methods: {
        GET: (_q, res, p) => {
          const document = repository.primary(p.name, p.version).profiling.document();
          sendJson(res, 'error' in document ? 409 : 200, document);
        },
      },
    },
    { label: '/v2/models/{name}/infer', pattern: new RegExp(`^${MODEL_PATH}/infer$`), methods: { POST: infer } },
    { label: '/v1/models/{name}:predict', pattern: /^\/v1\/models\/([^/:]+):predict$/, methods: { POST: predict } },
    // SageMaker's container contract: GET /ping, POST /invocations.
    { label: '/ping', pattern: /^\/ping$/, methods: { GET: ready }, open: true },
    { label: '/invocations', pattern: /^\/invocations$/, firstModel: true, methods: { POST: invocations } },
    {
      label: '/metrics',
      pattern: /^\/metrics$/,
      open: !access?.options.metrics,
      methods: {
        GET: async (_q, res) => {
          const text = await metrics.registry.metrics();
          res.writeHead(200, { 'content-type': metrics.registry.contentType, 'content-length': Buffer.byteLength(text) });
          res.end(text);
        },
      },
    },
    // Last: the routes probes and inference take are matched before these rarer ones.
    { label: '/v2/models/{name}/explain', pattern: new RegExp(`^${MODEL_PATH}/explain$`), methods: { POST: explain } },
    { label: '/v1/models/{name}:explain', pattern: /^\/v1\/models\/([^/:]+):explain$/, methods: { POST: explainInstances } },
  ];

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const started = performance.now();
    state.inFlight++;
    metrics.inFlight.inc();
    if (state.draining) res.setHeader('connection', 'close');
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    let label = 'unmatched';
    let modelLabel = '';
    try {
      let route: Route | undefined;
      let match: RegExpExecArray | null = null;
      for (const candidate of routes) {
        match = candidate.pattern.exec(path);
        if (match) {
          route = candidate;
          break;
        }
      }
      if (!route || !match) throw new BadRequest(`no route ${req.method} ${path}; see GET /v2 and /v2/models/{name}`, 404);
      label = route.label;
      if (route.firstModel) modelLabel = repository.names[0];
      if (mutualTls && !route.open) {
        const refusal = clientCertificateRefusal(req.socket as TLSSocket);
        if (refusal) throw new BadRequest(refusal, 403);
      }
      if (access && !route.open) {
        const verdict = access.verifyHttp(req);
        if (!verdict.ok) {
          if (verdict.delayMs > 0) await new Promise((r) => setTimeout(r, verdict.delayMs));
          const { error, headers } = accessRefusal(verdict);
          for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
          throw error;
        }
        // Shares of the body budget are per identity: clients behind one address each have their own.
        setClient(req, `t:${bearerToken(req.headers.authorization)}`);
      } else if (proxies.count > 0) setClient(req, `a:${proxies.clientOf(req.socket.remoteAddress, req.headers)}`);
      const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
      const handler = route.methods[method];
      if (!handler) {
        res.setHeader('allow', Object.keys(route.methods).join(', '));
        throw new BadRequest(`method ${req.method} is not allowed on ${route.label}; use ${Object.keys(route.methods).join(' or ')}`, 405);
      }
      const params: RouteParams = {};
      if (match[1] !== undefined) {
        params.name = safeDecode(match[1]);
        if (repository.has(params.name)) modelLabel = params.name;
      }
      if (match[2] !== undefined) params.version = safeDecode(match[2]);
      await handler(req, res, params);
    } catch (error) {
      if (error instanceof BadRequest) {
        if (error.status === 503 && !res.hasHeader('retry-after')) res.setHeader('retry-after', '1');
        if (error instanceof ShuttingDown || error instanceof SlowBody || uninvited(req)) {
          // The rest of its body is not waited for (or, never invited with 100 Continue, it sent none): answered, then the connection closed.
          res.setHeader('connection', 'close');
          sendJson(res, error.status, { error: error.message });
          res.on('finish', () => req.socket.destroy());
        } else if (!req.complete) {
          // Refused before its body ended: the rest is read and dropped within bounds, never held, then the
          // connection is closed. A body over a limit may be a mistake worth a long linger; a refused token, a
          // wrong route or method gets a short one (after a 401 the body was read on, 7.3 GB in 15 s: issue 34).
          rejectLingering(req, res, error.status, error.message, error.status === 413 || error.status === 503 ? LINGER_LIMIT : REFUSED_LINGER);
        } else sendJson(res, error.status, { error: error.message });
      } else {
        logFailure(`${req.method} ${path}`, error);
        sendJson(res, 500, { error: boundErrorText(`inference failed: ${(error as Error)?.message ?? String(error)}`) });
      }
    } finally {
      releaseRequest(req);
      state.inFlight--;
      metrics.inFlight.dec();
      recordRequest('rest', label, req.method ?? '', res.statusCode, modelLabel, (performance.now() - started) / 1000);
      if (state.draining && state.inFlight === 0) server.closeIdleConnections();
    }
  };
  const server = options.tls ? https.createServer(httpsOptions(options.tls), handle) : http.createServer(handle);
  const stopWatchingTls = options.tls ? watchTls(options.tls, (context) => (server as https.Server).setSecureContext(context), log) : undefined;
  // `Expect: 100-continue` takes the same path as any request (route, token, slow-down, lock-out, limits):
  // readBody sends 100 Continue once the request would be taken, so a client that will be refused is never
  // invited to upload, and a probe without a body is answered as it would be without the header.
  server.on('checkContinue', (req, res) => {
    awaitContinue(req, () => res.writeContinue());
    void handle(req, res);
  });
  // Slow or stuck clients must not hold the server open forever.
  server.requestTimeout = 60_000;
  server.headersTimeout = 15_000;

  return {
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const address = server.address() as AddressInfo;
          const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
          resolve({ url: `${options.tls ? 'https' : 'http'}://${shownHost}:${address.port}`, port: address.port });
        });
      });
    },
    shutdown(timeoutMs) {
      return closeWithin(
        timeoutMs,
        (done) => {
          stopWatchingTls?.();
          server.close(() => done());
          server.closeIdleConnections();
          bodyLimits.budget.stopIdleReaders(SHUTDOWN_BODY_IDLE_MS);
        },
        () => server.closeAllConnections(),
      );
    },
  };
}

/** The request's X-Request-Id (set by gateways such as Envoy), or a new one: every answer carries an id. */
function requestId(req: http.IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && given !== '' ? given : randomUUID();
}

function safeDecode(segment: string): string {
  if (!segment.includes('%')) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendInferResponse(res: http.ServerResponse, body: Uint8Array | string, header: number | undefined, framing: BinaryFraming): void {
  const length = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
  if (header === undefined) res.writeHead(200, { 'content-type': 'application/json', 'content-length': length });
  else if (framing === 'sagemaker') res.writeHead(200, { 'content-type': `${SAGEMAKER_BINARY};json-header-size=${header}`, 'content-length': length });
  else res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': length, [HEADER_LENGTH]: header });
  res.end(body);
}

function rejectLingering(req: http.IncomingMessage, res: http.ServerResponse, status: number, message: string, limit: { bytes: number; ms: number }): void {
  const text = JSON.stringify({ error: message });
  if (res.headersSent) return void res.end();
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), connection: 'close', ...(status === 503 ? { 'retry-after': '1' } : {}) });
  // Written now, ended (and so closed) once the client has finished sending: clients that read while writing see it at once.
  res.write(text);
  let dropped = 0;
  const close = () => {
    clearTimeout(timer);
    if (!res.writableEnded) res.end();
  };
  const timer = setTimeout(() => req.socket.destroy(), limit.ms);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > limit.bytes) req.socket.destroy();
  });
  req.on('end', close);
  req.on('close', () => clearTimeout(timer));
  req.resume();
}

const exactPath = (route: string) => new RegExp(`^${route.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);

/**
 * Numeric CSV rows without a header, as SageMaker's built-in algorithms send them. A body without
 * quotes is split directly: csv-parse costs about 110 µs a call even for one row (measured in
 * `npm run bench`, dataplane contracts part), three times the whole /invocations JSON path.
 */
function csvRows(body: Buffer): number[][] {
  const text = body.toString('utf8');
  let records: string[][];
  try {
    records = text.includes('"')
      ? parseCsv(text, { skip_empty_lines: true, trim: true })
      : text.split('\n').map((line) => line.trim()).filter((line) => line !== '').map((line) => line.split(','));
  } catch (error) {
    throw new BadRequest(`text/csv: ${(error as Error).message}`);
  }
  if (records.length === 0) throw new BadRequest('text/csv: the body has no rows');
  return records.map((record, r) =>
    record.map((cell, c) => {
      // Decimal numbers only (an exponent allowed, as numpy writes them): Number() would also read "0x10" as 16.
      const value = DECIMAL.test(cell) ? Number(cell) : NaN;
      if (!Number.isFinite(value)) throw new BadRequest(`text/csv: row ${r + 1}, column ${c + 1} is '${cell.trim()}', not a number (send rows of numbers, no header line)`);
      return value;
    }),
  );
}

/** A raw body has no JSON for parameters: `?top_k=3` on the URL asks for them. */
function queryParameters(req: http.IncomingMessage): { top_k?: number } | undefined {
  const at = req.url?.indexOf('?') ?? -1;
  if (at === -1) return undefined;
  const topK = new URLSearchParams(req.url!.slice(at + 1)).get('top_k');
  return topK === null ? undefined : { top_k: /^\d+$/.test(topK) ? Number(topK) : (topK as unknown as number) };
}

/** What curl -d and a bare --data-binary send unasked. */
const FORM_TYPE = /^\s*application\/x-www-form-urlencoded/i;

/** A JSON request naming a BYTES input, in its first few KB: what may carry an image or a text raw. */
const BYTES_INPUT = /"datatype"\s*:\s*"BYTES"/;

const DECIMAL = /^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$/;

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

function parseJsonBody(body: Buffer): unknown {
  if (body.byteLength === 0) throw new BadRequest('request body is empty; send a JSON object');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new BadRequest(`malformed JSON: ${(error as Error).message}`);
  }
}

