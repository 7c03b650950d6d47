/**
 * The REST request path, one pipeline for every route of every contract, as fastify splits its request
 * path: match the route, then authentication (client certificate and token, with the slow-down and
 * lock-out) before a byte of the body is read, then the route's handler, which reads the body under the
 * limits (size, fair shares of the pending budget, the minimum rate, the memory budget; an
 * `Expect: 100-continue` is invited there, so it takes this same path), decodes and answers. Errors are
 * rendered once, here, and a refused body is never read on.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { BadRequest, boundErrorText } from '../protocol/request.js';
import { HEADER_LENGTH } from '../protocol/rest.js';
import { accessRefusal, bearerToken, type AccessControl, type TrustedProxies } from './auth.js';
import { releaseRequest, setClient, ShuttingDown, SlowBody, uninvited } from './body.js';
import { failureLogger } from './failure-log.js';
import { requestRecorder, type ServerMetrics } from './metrics.js';
import type { ModelRepository } from './model-repository.js';
import type { ServingState } from './state.js';
import { clientCertificateRefusal } from './tls.js';

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, params: RouteParams) => Promise<void> | void;
export interface RouteParams {
  name?: string;
  version?: string;
}
/** A route of a contract, as data: each contract's module lists its own. */
export interface Route {
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
export type BinaryFraming = 'header' | 'sagemaker';
export const SAGEMAKER_BINARY = 'application/vnd.sagemaker-triton.binary+json';
/** The model routes' path: a name, and maybe a version. */
export const MODEL_PATH = String.raw`/v2/models/([^/]+)(?:/versions/([^/]+))?`;

/**
 * After an early 413 the client may still be writing its body. Closing at once
 * resets the connection and clients that write before they read (Python's
 * urllib and requests) never see the answer; like nginx's lingering close, the
 * rest of the body is read and dropped, within these bounds, before closing.
 */
const LINGER_LIMIT = { bytes: 256 * 2 ** 20, ms: 10_000 };
/** After a refusal that is no mistake of size (401, 403, 404, 405, 429): enough for the answer to be read, little more. */
const REFUSED_LINGER = { bytes: 2 ** 20, ms: 2000 };

export interface PipelineOptions {
  /** In the order they are matched. */
  routes: Route[];
  repository: Pick<ModelRepository, 'names' | 'has'>;
  state: ServingState;
  metrics: ServerMetrics;
  /** Bearer tokens; off when undefined. */
  access?: AccessControl;
  proxies: TrustedProxies;
  /** Client certificates are asked for on every route but the open ones. */
  mutualTls: boolean;
  log: (line: string) => void;
  /** The last request in flight ended while draining: idle connections can close. */
  onDrained: () => void;
}

/** The request handler for node:http: every request, of every route, through the same steps. */
export function restPipeline(options: PipelineOptions): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> {
  const { routes, repository, state, metrics, access, proxies, mutualTls, onDrained } = options;
  const logFailure = failureLogger(options.log);
  const recordRequest = requestRecorder(metrics);
  return async (req: http.IncomingMessage, res: http.ServerResponse) => {
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
      } else if (proxies.count > 0) setClient(req, proxies.clientOf(req.socket.remoteAddress, req.headers));
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
      if (state.draining && state.inFlight === 0) onDrained();
    }
  };
}

/** The request's X-Request-Id (set by gateways such as Envoy), or a new one: every answer carries an id. */
export function requestId(req: http.IncomingMessage): string {
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

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendInferResponse(res: http.ServerResponse, body: Uint8Array | string, header: number | undefined, framing: BinaryFraming): void {
  const length = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
  if (header === undefined) res.writeHead(200, { 'content-type': 'application/json', 'content-length': length });
  else if (framing === 'sagemaker') res.writeHead(200, { 'content-type': `${SAGEMAKER_BINARY};json-header-size=${header}`, 'content-length': length });
  else res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': length, [HEADER_LENGTH]: header });
  res.end(body);
}

function rejectLingering(req: http.IncomingMessage, res: http.ServerResponse, status: number, message: string, limit: { bytes: number; ms: number }): void {
  const text = JSON.stringify({ error: message });
  if (res.headersSent) return void res.end();
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    connection: 'close',
    ...(status === 503 ? { 'retry-after': '1' } : {}),
  });
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

/** A route a platform names, matched exactly. */
export const exactPath = (route: string) => new RegExp(`^${route.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
