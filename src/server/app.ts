import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Tensors } from '../model/session.js';
import { decodeTensorData, encodeTensorData, nest, nestedShape } from '../protocol/json-data.js';
import { BadRequest } from '../protocol/request.js';
import { BINARY_EXTENSION, decodeRestRequest, encodeRestResponse, HEADER_LENGTH, headerLength } from '../protocol/rest.js';
import { copyTensors, encodeInferenceRecords, recordModelOf } from '../monitor/inference-records.js';
import type { InferenceEngine } from './engine.js';
import type { InferenceLog } from './inference-log.js';
import type { ServerMetrics } from './metrics.js';
import type { ServerProfiling } from './profiling.js';
import { closeWithin, type ServingState } from './state.js';

export interface RestServerOptions {
  engine: InferenceEngine;
  metrics: ServerMetrics;
  state: ServingState;
  maxBodyBytes: number;
  /** Bodies larger than this are decoded, run and encoded whole in a worker thread. */
  offloadBytes: number;
  /** The mlops version, reported by GET /v2. */
  serverVersion: string;
  /** The live profile behind GET /v2/models/{name}/profile. */
  profiling: ServerProfiling;
  /** Off when undefined. */
  inferenceLog?: InferenceLog;
  log: (line: string) => void;
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
}

const MODEL_PATH = String.raw`/v2/models/([^/]+)(?:/versions/([^/]+))?`;
export const EXTENSIONS = [BINARY_EXTENSION];

/**
 * After an early 413 the client may still be writing its body. Closing at once
 * resets the connection and clients that write before they read (Python's
 * urllib and requests) never see the answer; like nginx's lingering close, the
 * rest of the body is read and dropped, within these bounds, before closing.
 */
const LINGER_MAX_BYTES = 256 * 2 ** 20;
const LINGER_MAX_MS = 10_000;

export function createRestServer(options: RestServerOptions): RestServer {
  const { engine, metrics, state, log, inferenceLog } = options;
  const { model } = engine;
  const recordModel = recordModelOf(model);
  const modelMetadata = {
    name: model.name,
    versions: [model.version],
    platform: 'onnxruntime_onnx',
    inputs: model.inputs.map(({ name, datatype, shape }) => ({ name, datatype, shape })),
    outputs: model.outputs.map(({ name, datatype, shape }) => ({ name, datatype, shape })),
  };

  const checkModel = (params: RouteParams) => {
    if (params.name !== model.name) throw new BadRequest(`unknown model '${params.name}'; this server serves '${model.name}'`, 404);
    if (params.version !== undefined && params.version !== model.version) {
      throw new BadRequest(`model '${model.name}' has no version '${params.version}'; it has version '${model.version}'`, 404);
    }
  };

  const infer: Handler = async (req, res, params) => {
    checkModel(params);
    const declared = req.headers[HEADER_LENGTH];
    // Only for placing the body in memory; headerLength() below checks the value and names what is wrong.
    const alignAfter = Number(declared);
    const body = await readBody(req, options.maxBodyBytes, Number.isInteger(alignAfter) && alignAfter > 0 ? alignAfter : 0);
    const header = headerLength(declared, body.byteLength);
    const logged = inferenceLog?.sampled() ?? false;
    if (engine.workers > 0 && body.byteLength > options.offloadBytes) {
      const log = logged ? (inferenceLog!.inputs ? 'with-inputs' : 'outputs') : undefined;
      const reply = await engine.inferRest(body, header, OWNED.has(body.buffer), { id: requestId(req), log });
      sendInferResponse(res, reply.body, reply.headerLength);
      if (reply.logged) inferenceLog!.add(reply.logged, reply.rows);
      return;
    }
    const request = decodeRestRequest(body, header, model);
    request.id ??= requestId(req);
    // Batching may hand the inputs' buffers to a worker thread: the log keeps a copy.
    const inputs = logged && inferenceLog!.inputs ? copyTensors(request.inputs) : undefined;
    const result = await engine.infer(request.inputs, request.rows);
    const response = encodeRestResponse(model, result, request);
    sendInferResponse(res, response.body, response.headerLength);
    if (logged) inferenceLog!.add(encodeInferenceRecords({ id: request.id, rows: request.rows, model: recordModel }, result, inputs), request.rows);
  };

  const predict: Handler = async (req, res, params) => {
    checkModel(params);
    if (model.inputs.length !== 1) {
      throw new BadRequest(`:predict needs a single-input model; '${model.name}' has ${model.inputs.length} inputs: use /v2/models/${model.name}/infer`);
    }
    const instances = (parseJsonBody(await readBody(req, options.maxBodyBytes)) as { instances?: unknown })?.instances;
    if (!Array.isArray(instances) || instances.length === 0) throw new BadRequest('body must be {"instances": [...]} with at least one instance');
    const spec = model.inputs[0];
    const rowShape = nestedShape(instances[0]);
    const shape = [instances.length, ...rowShape];
    const expected = spec.shape;
    if (expected.length > 0 && (expected.length !== shape.length || expected.slice(1).some((d, i) => d !== -1 && d !== rowShape[i]))) {
      throw new BadRequest(`instances: each instance must have shape [${expected.slice(1).join(', ')}], got [${rowShape.join(', ')}]`);
    }
    const data = decodeTensorData(spec.name, spec.datatype, shape, instances);
    // v1 answers have no id field: the id travels in the X-Request-Id header.
    const id = requestId(req);
    res.setHeader('x-request-id', id);
    const logged = inferenceLog?.sampled() ?? false;
    let records = '';
    // A model with a fixed batch of 1 is run one instance at a time.
    const perInstance = expected[0] === 1 && instances.length > 1;
    const results: Tensors[] = [];
    if (perInstance) {
      const rowSize = data.length / instances.length;
      for (let i = 0; i < instances.length; i++) {
        const row = { data: data.slice(i * rowSize, (i + 1) * rowSize), dims: [1, ...rowShape] } as Tensors[string];
        const inputs = logged && inferenceLog!.inputs ? copyTensors({ [spec.name]: row }) : undefined;
        results.push(await engine.infer({ [spec.name]: row }, 1));
        if (logged) records += encodeInferenceRecords({ id, rows: instances.length, part: { firstRow: i, rows: 1 }, model: recordModel }, results[i], inputs);
      }
    } else {
      const feeds = { [spec.name]: { data, dims: shape } };
      const inputs = logged && inferenceLog!.inputs ? copyTensors(feeds) : undefined;
      results.push(await engine.infer(feeds, instances.length));
      if (logged) records = encodeInferenceRecords({ id, rows: instances.length, model: recordModel }, results[0], inputs);
    }
    const predictions: unknown[] = [];
    for (const result of results) {
      const perOutput = model.outputs.map((o) => {
        const t = result[o.name];
        const flat = encodeTensorData(o.datatype, t.data);
        const rows = t.dims[0] ?? 1;
        return Array.from({ length: rows }, (_, r) => nest(flat, t.dims.slice(1), (r * flat.length) / rows));
      });
      const rows = perOutput[0].length;
      for (let r = 0; r < rows; r++) {
        predictions.push(model.outputs.length === 1 ? perOutput[0][r] : Object.fromEntries(model.outputs.map((o, i) => [o.name, perOutput[i][r]])));
      }
    }
    sendJson(res, 200, { predictions });
    if (logged) inferenceLog!.add(records, instances.length);
  };

  const routes: Route[] = [
    { label: '/v2', pattern: /^\/v2\/?$/, methods: { GET: (_q, res) => sendJson(res, 200, { name: 'mlops', version: options.serverVersion, extensions: EXTENSIONS }) } },
    { label: '/v2/health/live', pattern: /^\/v2\/health\/live$/, methods: { GET: (_q, res) => sendJson(res, 200, { live: true }) } },
    { label: '/v2/health/ready', pattern: /^\/v2\/health\/ready$/, methods: { GET: (_q, res) => sendJson(res, state.ready ? 200 : 503, { ready: state.ready }) } },
    {
      // Triton's model repository index: lets a client find the model on a server it knows nothing about.
      label: '/v2/repository/index',
      pattern: /^\/v2\/repository\/index$/,
      methods: { POST: (_q, res) => sendJson(res, 200, [{ name: model.name, version: model.version, state: state.ready ? 'READY' : 'UNAVAILABLE' }]) },
    },
    {
      label: '/v2/models/{name}',
      pattern: new RegExp(`^${MODEL_PATH}$`),
      methods: {
        GET: (_q, res, p) => {
          checkModel(p);
          sendJson(res, 200, modelMetadata);
        },
      },
    },
    {
      label: '/v2/models/{name}/ready',
      pattern: new RegExp(`^${MODEL_PATH}/ready$`),
      methods: {
        GET: (_q, res, p) => {
          checkModel(p);
          sendJson(res, state.ready ? 200 : 503, { name: model.name, ready: state.ready });
        },
      },
    },
    {
      // Counts only, never inputs: what `mlops monitor` compares with the reference.
      label: '/v2/models/{name}/profile',
      pattern: new RegExp(`^${MODEL_PATH}/profile$`),
      methods: {
        GET: (_q, res, p) => {
          checkModel(p);
          const document = options.profiling.document();
          sendJson(res, 'error' in document ? 409 : 200, document);
        },
      },
    },
    { label: '/v2/models/{name}/infer', pattern: new RegExp(`^${MODEL_PATH}/infer$`), methods: { POST: infer } },
    { label: '/v1/models/{name}:predict', pattern: /^\/v1\/models\/([^/:]+):predict$/, methods: { POST: predict } },
    {
      label: '/metrics',
      pattern: /^\/metrics$/,
      methods: {
        GET: async (_q, res) => {
          const text = await metrics.registry.metrics();
          res.writeHead(200, { 'content-type': metrics.registry.contentType, 'content-length': Buffer.byteLength(text) });
          res.end(text);
        },
      },
    },
  ];

  const server = http.createServer(async (req, res) => {
    const started = performance.now();
    state.inFlight++;
    metrics.inFlight.inc();
    if (state.draining) res.setHeader('connection', 'close');
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    let label = 'unmatched';
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
      const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
      const handler = route.methods[method];
      if (!handler) {
        res.setHeader('allow', Object.keys(route.methods).join(', '));
        throw new BadRequest(`method ${req.method} is not allowed on ${route.label}; use ${Object.keys(route.methods).join(' or ')}`, 405);
      }
      const params: RouteParams = {};
      if (match[1] !== undefined) params.name = safeDecode(match[1]);
      if (match[2] !== undefined) params.version = safeDecode(match[2]);
      await handler(req, res, params);
    } catch (error) {
      if (error instanceof BadRequest) {
        if (error.status === 413) rejectLingering(req, res, error.message);
        else sendJson(res, error.status, { error: error.message });
      } else {
        log(`error: ${req.method} ${path}: ${(error as Error)?.stack ?? String(error)}`);
        sendJson(res, 500, { error: `inference failed: ${(error as Error)?.message ?? String(error)}` });
      }
    } finally {
      state.inFlight--;
      metrics.inFlight.dec();
      metrics.requests.inc({ protocol: 'rest', route: label, method: req.method ?? '', code: res.statusCode });
      metrics.requestSeconds.observe({ protocol: 'rest', route: label }, (performance.now() - started) / 1000);
      if (state.draining && state.inFlight === 0) server.closeIdleConnections();
    }
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
          resolve({ url: `http://${shownHost}:${address.port}`, port: address.port });
        });
      });
    },
    shutdown(timeoutMs) {
      return closeWithin(
        timeoutMs,
        (done) => {
          server.close(() => done());
          server.closeIdleConnections();
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

function sendInferResponse(res: http.ServerResponse, body: Uint8Array | string, header: number | undefined): void {
  const length = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
  if (header === undefined) res.writeHead(200, { 'content-type': 'application/json', 'content-length': length });
  else res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': length, [HEADER_LENGTH]: header });
  res.end(body);
}

function rejectLingering(req: http.IncomingMessage, res: http.ServerResponse, message: string): void {
  const text = JSON.stringify({ error: message });
  if (res.headersSent) return void res.end();
  res.writeHead(413, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), connection: 'close' });
  // Written now, ended (and so closed) once the client has finished sending: clients that read while writing see it at once.
  res.write(text);
  let dropped = 0;
  const close = () => {
    clearTimeout(timer);
    if (!res.writableEnded) res.end();
  };
  const timer = setTimeout(() => req.socket.destroy(), LINGER_MAX_MS);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > LINGER_MAX_BYTES) req.socket.destroy();
  });
  req.on('end', close);
  req.on('close', () => clearTimeout(timer));
  req.resume();
}

function parseJsonBody(body: Buffer): unknown {
  if (body.byteLength === 0) throw new BadRequest('request body is empty; send a JSON object');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new BadRequest(`malformed JSON: ${(error as Error).message}`);
  }
}

const tooLarge = (size: string, limit: number) =>
  new BadRequest(`request body is ${size}; the limit is ${limit} bytes (server.maxBodyBytes): send large tensors as binary data (Inference-Header-Content-Length) or over gRPC, which carry them in a third of the bytes`, 413);

/**
 * Bodies this large are read into one buffer of their own, which can move to a
 * worker thread, placed so that the binary data after a JSON header of
 * `alignAfter` bytes starts 8-byte aligned: typed arrays then view the tensor
 * bytes where they are instead of copying them.
 */
const OWN_BUFFER_BYTES = 16 * 1024;
const OWNED = new WeakSet<ArrayBufferLike>();

function readBody(req: http.IncomingMessage, limit: number, alignAfter = 0): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge(`${declared} bytes`, limit));
  const known = Number.isInteger(declared) && declared >= OWN_BUFFER_BYTES;
  const shift = known ? (8 - (alignAfter % 8)) % 8 : 0;
  const whole = known ? Buffer.allocUnsafeSlow(declared + shift) : undefined;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      if (size + chunk.length > limit || (whole && size + chunk.length > declared)) {
        done = true;
        reject(tooLarge('over the limit', limit));
        return;
      }
      if (whole) chunk.copy(whole, shift + size);
      else chunks.push(chunk);
      size += chunk.length;
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      if (whole) {
        OWNED.add(whole.buffer);
        resolve(whole.subarray(shift, shift + size));
      }
      else resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
    req.on('error', (error) => {
      if (!done) {
        done = true;
        reject(new BadRequest(`could not read the request body: ${error.message}`));
      }
    });
  });
}
