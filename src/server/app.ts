/**
 * The REST server: node:http (or HTTPS) in front of one request pipeline, with each contract's routes
 * from its own module: OIP v2, KServe v1, SageMaker's, Vertex AI's, explanations and /metrics.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TrustedProxies, AccessControl } from './auth.js';
import { awaitContinue, type BodyBudget, type BodyLimits } from './body.js';
import type { InferenceLog } from './inference-log.js';
import type { RequestMemory } from './memory-budget.js';
import type { ResponseCache } from './response-cache.js';
import type { ServerMetrics } from './metrics.js';
import type { ModelRepository } from './model-repository.js';
import { restInference, type RestContext } from './rest-inference.js';
import { restPipeline } from './rest-pipeline.js';
import { explainRoutes } from './routes/explain.js';
import { metricsRoutes } from './routes/metrics.js';
import { oipRoutes, readiness } from './routes/oip.js';
import { sagemakerRoutes } from './routes/sagemaker.js';
import { v1Routes } from './routes/v1.js';
import { vertexRoutes, type PlatformRoutes } from './routes/vertex.js';
import { closeWithin, type ServingState } from './state.js';
import { httpsOptions, watchTls, type TlsOptions } from './tls.js';

export type { PlatformRoutes } from './routes/vertex.js';
export { SAGEMAKER_BINARY } from './rest-pipeline.js';

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
  /** Opt-in (server.responseCache); undefined when off. */
  responseCache?: ResponseCache;
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

export interface RestServer {
  listen(port: number, host: string): Promise<{ url: string; port: number }>;
  /** No new connections, in-flight requests finish; forced after timeoutMs. */
  shutdown(timeoutMs: number): Promise<{ forced: boolean }>;
}

/** At shutdown, a body that has sent nothing for this long is answered 503 and closed, not waited for. */
const SHUTDOWN_BODY_IDLE_MS = 1000;

export function createRestServer(options: RestServerOptions): RestServer {
  const { repository, metrics, state, log, access } = options;
  const bodyLimits: BodyLimits = { maxBodyBytes: options.maxBodyBytes, budget: options.bodyBudget, memory: options.requestMemory };
  const ctx: RestContext = {
    repository,
    inferenceLog: options.inferenceLog,
    bodyLimits,
    deadline: () => performance.now() + options.inferenceTimeoutMs,
    offloadBytes: options.offloadBytes,
    responseCache: options.responseCache,
  };
  const inference = restInference(ctx);
  const ready = readiness(repository, state);
  // Matched in this order: a platform's own routes first (exact paths), then the probes and inference; explanations last.
  const routes = [
    ...vertexRoutes(ctx, inference, ready, options.routes),
    ...oipRoutes(ctx, inference, { state, repositoryControl: options.repositoryControl, serverVersion: options.serverVersion, log }),
    ...v1Routes(ctx, inference),
    ...sagemakerRoutes(ctx, inference, ready),
    ...metricsRoutes(metrics, !access?.options.metrics),
    ...explainRoutes(ctx, inference, options.explainMaxRows),
  ];
  const handle = restPipeline({
    routes,
    repository,
    state,
    metrics,
    access,
    proxies: options.proxies,
    mutualTls: Boolean(options.tls?.clientCa),
    log,
    onDrained: () => server.closeIdleConnections(),
  });
  // handle answers every error itself (the pipeline's catch): node:http has nothing to do with its promise.
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- see above; a wrapper would add a call to every request
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
