import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LoadedModel, Tensors } from '../model/session.js';
import { Batcher, canBatch } from './batcher.js';
import {
  BadRequest,
  decodeInferRequest,
  decodeTensorData,
  encodeInferResponse,
  encodeTensorData,
  nest,
  nestedShape,
} from './codec.js';
import { createServerMetrics, type ServerMetrics } from './metrics.js';

export interface InferenceServerOptions {
  model: LoadedModel;
  maxBodyBytes: number;
  batching: { enabled: boolean; maxBatchSize: number; maxWaitMs: number };
  /** The mlops version, reported by GET /v2. */
  serverVersion: string;
  log: (line: string) => void;
}

export interface InferenceServer {
  listen(port: number, host: string): Promise<{ url: string; port: number }>;
  /** Readiness off, no new connections, in-flight requests finish; forced after timeoutMs. */
  shutdown(timeoutMs: number): Promise<{ forced: boolean }>;
  readonly ready: boolean;
  readonly batching: boolean;
  readonly metrics: ServerMetrics;
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

export function createInferenceServer(options: InferenceServerOptions): InferenceServer {
  const { model, log } = options;
  const metrics = createServerMetrics({ name: model.name, version: model.version, sha256: model.info.sha256 });
  const batching = options.batching.enabled && canBatch(model.inputs, model.outputs);
  // Every run goes through one queue: onnxruntime-node runs sessions on this thread one at a time anyway.
  const batcher = new Batcher(model.run, model.inputs, {
    batching,
    maxBatchSize: options.batching.maxBatchSize,
    maxWaitMs: options.batching.maxWaitMs,
    onRun: (rows, seconds) => {
      metrics.batchSize.observe(rows);
      metrics.inferenceSeconds.observe(seconds);
    },
    onQueued: (seconds) => metrics.queueSeconds.observe(seconds),
  });
  const runModel = (feeds: Tensors): Promise<Tensors> => batcher.infer(feeds, model.inputs[0] ? (feeds[model.inputs[0].name].dims[0] ?? 1) : 1);

  let ready = false;
  let shuttingDown = false;
  let inFlight = 0;
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
    const body = await readJson(req, options.maxBodyBytes);
    const request = decodeInferRequest(body, model.inputs, model.outputs);
    const result = await runModel(request.inputs);
    sendJson(res, 200, encodeInferResponse(model, result, request));
  };

  const predict: Handler = async (req, res, params) => {
    checkModel(params);
    if (model.inputs.length !== 1) {
      throw new BadRequest(`:predict needs a single-input model; '${model.name}' has ${model.inputs.length} inputs: use /v2/models/${model.name}/infer`);
    }
    const body = await readJson(req, options.maxBodyBytes);
    const instances = (body as { instances?: unknown })?.instances;
    if (!Array.isArray(instances) || instances.length === 0) throw new BadRequest('body must be {"instances": [...]} with at least one instance');
    const spec = model.inputs[0];
    const rowShape = nestedShape(instances[0]);
    const shape = [instances.length, ...rowShape];
    const expected = spec.shape;
    if (expected.length > 0 && (expected.length !== shape.length || expected.slice(1).some((d, i) => d !== -1 && d !== rowShape[i]))) {
      throw new BadRequest(`instances: each instance must have shape [${expected.slice(1).join(', ')}], got [${rowShape.join(', ')}]`);
    }
    const data = decodeTensorData(spec.name, spec.datatype, shape, instances);
    // A model with a fixed batch of 1 is run one instance at a time.
    const perInstance = expected[0] === 1 && instances.length > 1;
    const results: Tensors[] = [];
    if (perInstance) {
      const rowSize = data.length / instances.length;
      for (let i = 0; i < instances.length; i++) {
        const row = { data: data.slice(i * rowSize, (i + 1) * rowSize), dims: [1, ...rowShape] } as Tensors[string];
        results.push(await runModel({ [spec.name]: row }));
      }
    } else {
      results.push(await runModel({ [spec.name]: { data, dims: shape } }));
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
  };

  const routes: Route[] = [
    { label: '/v2', pattern: /^\/v2\/?$/, methods: { GET: (_q, res) => sendJson(res, 200, { name: 'mlops', version: options.serverVersion, extensions: [] }) } },
    { label: '/v2/health/live', pattern: /^\/v2\/health\/live$/, methods: { GET: (_q, res) => sendJson(res, 200, { live: true }) } },
    { label: '/v2/health/ready', pattern: /^\/v2\/health\/ready$/, methods: { GET: (_q, res) => sendJson(res, ready ? 200 : 503, { ready }) } },
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
          sendJson(res, ready ? 200 : 503, { name: model.name, ready });
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
    inFlight++;
    metrics.inFlight.inc();
    if (shuttingDown) res.setHeader('connection', 'close');
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
        if (error.status === 413) res.setHeader('connection', 'close');
        sendJson(res, error.status, { error: error.message });
      } else {
        log(`error: ${req.method} ${path}: ${(error as Error)?.stack ?? String(error)}`);
        sendJson(res, 500, { error: `inference failed: ${(error as Error)?.message ?? String(error)}` });
      }
    } finally {
      inFlight--;
      metrics.inFlight.dec();
      metrics.requests.inc({ route: label, method: req.method ?? '', code: res.statusCode });
      metrics.requestSeconds.observe({ route: label }, (performance.now() - started) / 1000);
      if (shuttingDown && inFlight === 0) server.closeIdleConnections();
    }
  });
  // Slow or stuck clients must not hold the server open forever.
  server.requestTimeout = 60_000;
  server.headersTimeout = 15_000;

  return {
    get ready() {
      return ready;
    },
    batching,
    metrics,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          ready = true;
          const address = server.address() as AddressInfo;
          const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
          resolve({ url: `http://${shownHost}:${address.port}`, port: address.port });
        });
      });
    },
    shutdown(timeoutMs) {
      ready = false;
      shuttingDown = true;
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          server.closeAllConnections();
          resolve({ forced: true });
        }, timeoutMs);
        timer.unref();
        server.close(() => {
          clearTimeout(timer);
          resolve({ forced: false });
        });
        server.closeIdleConnections();
      });
    },
  };
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

function readJson(req: http.IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    return Promise.reject(new BadRequest(`request body is ${declared} bytes; the limit is ${limit} (server.maxBodyBytes)`, 413));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > limit) {
        done = true;
        reject(new BadRequest(`request body is over the limit of ${limit} bytes (server.maxBodyBytes)`, 413));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      const text = chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8');
      if (text.length === 0) return reject(new BadRequest('request body is empty; send a JSON object'));
      try {
        resolve(JSON.parse(text));
      } catch (error) {
        reject(new BadRequest(`malformed JSON: ${(error as Error).message}`));
      }
    });
    req.on('error', (error) => {
      if (!done) {
        done = true;
        reject(new BadRequest(`could not read the request body: ${error.message}`));
      }
    });
  });
}
