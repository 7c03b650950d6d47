import { environmentError } from '../errors.js';
import { VERSION } from '../version.js';
import { createRestServer } from './app.js';
import { AccessControl, TokenSet, TrustedProxies } from './auth.js';
import { BodyBudget } from './body.js';
import { ResponseCache } from './response-cache.js';
import { loadTlsFiles, tlsEnabled } from './tls.js';
import type { Placement } from './engine.js';
import { MemoryLedger, RequestMemory } from './memory-budget.js';
import { ModelRepository } from './model-repository.js';
import { readRepositoryFile } from './repository-file.js';
import { createGrpcServer, type GrpcServer } from './grpc.js';
import { createServerMetrics, placementMetrics } from './metrics.js';
import { servedSpecs, type ServeOptions } from './options.js';
import { describeSink, InferenceLog } from './inference-log.js';
import type { ServingState } from './state.js';

export interface RunningServer {
  url: string;
  port: number;
  /** host:port of the gRPC endpoint; undefined when gRPC is off. */
  grpcAddress?: string;
  grpcPort?: number;
  /** The first model's name, and every model's. */
  modelName: string;
  models: string[];
  batching: boolean;
  workers: number;
  readonly placement: Placement;
  readonly ready: boolean;
  metrics: ReturnType<typeof createServerMetrics>;
  /** Shuts down gracefully (both protocols) and releases the model. */
  stop(): Promise<{ forced: boolean; abandonedRuns: number }>;
}

function listenError(host: string, port: number, flag: string, zero: string, error: unknown) {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  const inUse = code === 'EADDRINUSE' || /address already in use|EADDRINUSE|No address added/i.test(String((error as Error)?.message));
  return environmentError(
    `cannot listen on ${host}:${port}: ${inUse ? 'the port is in use' : (error as Error).message}`,
    inUse ? `pick another port with ${flag} (${zero})` : undefined,
  );
}

export async function startServer(options: ServeOptions, log: (line: string) => void): Promise<RunningServer> {
  const state: ServingState = { ready: false, draining: false, inFlight: 0 };
  // Tokens and certificates first: a bad file stops the start before the model loads (exit 2).
  const tokens = TokenSet.load(options.auth, log);
  const tls = tlsEnabled(options.tls) ? options.tls : undefined;
  if (tls) loadTlsFiles(tls);
  const proxies = new TrustedProxies(options.trustedProxies, options.auth.clientAddressHeader);
  const memory = MemoryLedger.from(options.memoryBudget);
  const specs = options.repositoryFile ? await readRepositoryFile(options.repositoryFile, options) : servedSpecs(options);
  const { repository, metrics } = await startRepository(options, specs, memory, log);
  const [first] = repository.loaded;
  const inferenceLog = await openInferenceLog(options, first, metrics, repository, log);
  logServedModels(repository, options, log);

  const { access, bodyBudget, requestMemory, responseCache } = admission(options, tokens, proxies, memory, metrics, log, tls);
  const shared = {
    repository,
    metrics,
    state,
    serverVersion: VERSION,
    log,
    inferenceLog,
    inferenceTimeoutMs: options.inferenceTimeoutMs,
    access,
    tls,
    bodyBudget,
    proxies,
    requestMemory,
    responseCache,
  };
  const rest = createRestServer({
    ...shared,
    repositoryControl: options.repositoryControl,
    explainMaxRows: options.explain.maxRows,
    maxBodyBytes: options.maxBodyBytes,
    offloadBytes: options.offloadBytes,
    routes: options.routes,
  });
  const grpcOptions = { ...shared, maxMessageBytes: options.maxBodyBytes, offloadBytes: options.offloadBytes };
  const { address, grpc, grpcPort } = await listenBoth(options, rest, grpcOptions, () => cleanUp(inferenceLog, repository, access));
  state.ready = true;
  grpc?.setServing(true);
  const grpcHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    ...address,
    grpcAddress: grpcPort !== undefined ? `${grpcHost}:${grpcPort}` : undefined,
    grpcPort,
    modelName: first.spec.name,
    models: repository.names,
    batching: first.engine.batching,
    workers: first.engine.workers,
    // The first model's engine now: a load may have replaced the one it started with.
    get placement() {
      return (repository.loaded[0] ?? first).engine.placement;
    },
    get ready() {
      return state.ready;
    },
    metrics,
    async stop() {
      state.ready = false;
      state.draining = true;
      grpc?.setServing(false);
      const outcomes = await Promise.all([rest.shutdown(options.shutdownTimeoutMs), grpc?.shutdown(options.shutdownTimeoutMs) ?? { forced: false }]);
      const { abandonedRuns } = await repository.release();
      access?.close();
      // The rows of the last requests reach the sink, if it answers soon.
      await inferenceLog?.close(2000);
      return { forced: outcomes.some((o) => o.forced), abandonedRuns };
    },
  };
}

/** REST, then gRPC when on, listening; a port that cannot be had stops whatever started. */
async function listenBoth(
  options: ServeOptions,
  rest: ReturnType<typeof createRestServer>,
  shared: Parameters<typeof createGrpcServer>[0],
  cleanUp: () => Promise<void>,
): Promise<{ address: { url: string; port: number }; grpc: GrpcServer | undefined; grpcPort: number | undefined }> {
  try {
    const address = await rest.listen(options.port, options.host).catch((error) => {
      throw listenError(options.host, options.port, '--port', '0 picks a free one', error);
    });
    if (options.grpcPort <= 0) return { address, grpc: undefined, grpcPort: undefined };
    const grpc = createGrpcServer(shared);
    const listening = await grpc.listen(options.grpcPort, options.host).catch(async (error) => {
      await rest.shutdown(0);
      throw listenError(options.host, options.grpcPort, '--grpc-port', '0 turns gRPC off', error);
    });
    return { address, grpc, grpcPort: listening.port };
  } catch (error) {
    await cleanUp();
    throw error;
  }
}

/** What a start that failed had opened: the inference log, the models, the token file watcher. */
async function cleanUp(inferenceLog: InferenceLog | undefined, repository: ModelRepository, access: AccessControl | undefined): Promise<void> {
  await inferenceLog?.close(0);
  await repository.release();
  access?.close();
}

/** The models loaded, with the metrics their engines report into (made first; what they list comes once the models are in). */
async function startRepository(
  options: ServeOptions,
  specs: Awaited<ReturnType<typeof readRepositoryFile>>,
  memory: MemoryLedger | undefined,
  log: (line: string) => void,
) {
  let loaded: ModelRepository | undefined;
  const metrics = createServerMetrics(() => loaded?.heldVersions() ?? []);
  const repository = (loaded = await ModelRepository.start(
    specs,
    {
      intraOpThreads: options.intraOpThreads,
      allowNonFinite: options.allowNonFinite,
      inlineMaxMs: options.inlineMaxMs,
      explain: options.explain,
      memory,
      drainMs: options.inferenceTimeoutMs,
    },
    metrics,
    log,
  ));
  placementMetrics(metrics.registry, () => {
    // One model: its placement. Several: workers summed, "workers" when any model runs in them.
    const loaded = repository.loaded;
    return {
      where: loaded.some((v) => v.engine.placement.where === 'workers') ? 'workers' : 'main-thread',
      workers: loaded.reduce((n, v) => n + v.engine.workers, 0),
      abandoned: loaded.reduce((n, v) => n + v.engine.abandonedRuns, 0),
    };
  });
  return { repository, metrics };
}

/** The inference log when sampling is on; the models are released if its sink cannot be opened. */
async function openInferenceLog(
  options: ServeOptions,
  first: ModelRepository['loaded'][number],
  metrics: ReturnType<typeof createServerMetrics>,
  repository: ModelRepository,
  log: (line: string) => void,
): Promise<InferenceLog | undefined> {
  if (options.inferenceLog.sample <= 0) return undefined;
  let inferenceLog: InferenceLog;
  try {
    inferenceLog = new InferenceLog(options.inferenceLog, first.recordModel, metrics.registry, log);
  } catch (error) {
    await repository.release();
    throw error;
  }
  const share = Math.round(inferenceLog.sample * 1e6) / 1e4;
  log(`inference log: ${share}% of requests, ${inferenceLog.inputs ? 'outputs and inputs' : 'outputs only'}, to ${describeSink(inferenceLog.sink)}`);
  return inferenceLog;
}

/** For each model served: how it explains and where it runs. */
function logServedModels(repository: ModelRepository, options: ServeOptions, log: (line: string) => void): void {
  for (const served of repository.loaded) {
    const { engine, spec } = served;
    const label =
      repository.loaded.length > 1
        ? `model '${spec.name}' version ${spec.version}${spec.shadow ? ' (shadow)' : repository.names.length < repository.loaded.length ? ` (weight ${spec.weight})` : ''}: `
        : '';
    const offered = engine.explanations;
    const how = !('method' in offered)
      ? ''
      : offered.method === 'kernel_shap'
        ? `Kernel SHAP, ${offered.samples} coalitions x ${offered.backgroundRows} background rows per row`
        : `occlusion in ${offered.patch} x ${offered.patch} patches`;
    log(
      `${label}explanations: ${'method' in offered ? `${how} at /v2/models/${spec.name}/explain, at most ${options.explain.maxRows} rows a request` : `off (${offered.unavailable})`}`,
    );
    log(
      `${label}inference: ${engine.placement.where === 'main-thread' ? 'small batches on the main thread' : `${engine.workers} worker thread(s)`}; ${engine.placement.reason}`,
    );
  }
}

/** Who may ask (tokens, trusted proxies) and what a request may hold (the body budget, memory per request, the response cache). */
function admission(
  options: ServeOptions,
  tokens: TokenSet | undefined,
  proxies: TrustedProxies,
  memory: MemoryLedger | undefined,
  metrics: ReturnType<typeof createServerMetrics>,
  log: (line: string) => void,
  tls: ServeOptions['tls'] | undefined,
) {
  if (options.auth.clientAddressHeader && proxies.count === 0)
    log(
      `access: server.auth.clientAddressHeader '${options.auth.clientAddressHeader}' is read only from the proxies in server.trustedProxies, and none is listed: the socket's address counts`,
    );
  const access = tokens ? new AccessControl(tokens, options.auth, proxies, (reason) => metrics.authFailures.inc({ reason })) : undefined;
  // One budget for bodies still arriving over REST and gRPC alike, shared fairly between clients.
  // With server.memoryBudget, bodies arriving hold no more than the sessions leave, and each request in hand reserves its share.
  const bodyBudget = new BodyBudget(
    Math.min(Math.max(options.maxPendingBodyBytes, options.maxBodyBytes), memory && memory.room > 0 ? memory.room : Infinity),
    options.minBodyRate,
  );
  const requestMemory =
    memory && memory.room > 0
      ? new RequestMemory(
          () => memory.room,
          () => bodyBudget.pending,
          options.memoryBudget,
        )
      : undefined;
  log(
    `access: ${access ? `bearer tokens (${tokens!.count}); health probes${options.auth.metrics ? '' : ' and /metrics'} open` : 'open to anyone who reaches the port (no server.auth tokens)'}; ${tls ? `TLS${tls.clientCa ? ' with client certificates (mutual TLS)' : ''}` : 'plain HTTP and gRPC'}`,
  );
  const responseCache = options.responseCacheBytes > 0 ? new ResponseCache(options.responseCacheBytes, metrics.registry) : undefined;
  if (responseCache) log(`response cache: up to ${options.responseCacheBytes} bytes of outputs, least recently used out first`);
  return { access, bodyBudget, requestMemory, responseCache };
}

/** Serves until SIGTERM or SIGINT, then shuts down gracefully. Resolves with how it ended. */
export function untilSignal(running: RunningServer, log: (line: string) => void): Promise<{ signal: string; forced: boolean }> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      log(`${signal} received: finishing requests in flight`);
      void running.stop().then(({ forced, abandonedRuns }) => {
        if (abandonedRuns > 0) {
          // A normal exit waits for those threads, then aborts when their run returns (exit 134, measured):
          // the process ends by the signal it was sent instead, at once, as an unhandled one would.
          log(`${abandonedRuns} abandoned inference run(s) still inside ONNX Runtime: ending by ${signal} now`);
          process.kill(process.pid, signal);
          return;
        }
        resolve({ signal, forced });
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
