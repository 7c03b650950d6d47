import path from 'node:path';
import { DEFAULTS, type Config } from '../config/defaults.js';
import { inputError } from '../errors.js';
import { parseSink } from './inference-log.js';
import { parseByteSize } from './memory-budget.js';
import type { AuthOptions } from './auth.js';
import type { TlsOptions } from './tls.js';
import type { ModelSpec } from './model-repository.js';
import type { ProcessingOverrides } from '../processing/plan.js';

/** Everything the inference server needs to start, however it was configured. */
export interface ServeOptions {
  modelPath: string;
  modelName: string;
  modelVersion: string;
  expectedSha256?: string;
  host: string;
  port: number;
  /** 0: no gRPC. */
  grpcPort: number;
  maxBodyBytes: number;
  /** Accept NaN and infinities in floating-point inputs; refused with 400 by default. */
  allowNonFinite: boolean;
  /** A request not answered by then gets 504 / DEADLINE_EXCEEDED (a gRPC client's shorter deadline wins). */
  inferenceTimeoutMs: number;
  /** Bytes the bodies still arriving may hold together. */
  maxPendingBodyBytes: number;
  /** Bytes a second a body still arriving must average over 10 s; 0: no minimum. */
  minBodyRate: number;
  /** Bytes of outputs the response cache keeps; 0: no cache. */
  responseCacheBytes: number;
  /** Proxies whose X-Forwarded-For names the client. */
  trustedProxies: string[];
  shutdownTimeoutMs: number;
  /** Empty: no check. */
  memoryBudget: string;
  intraOpThreads: number;
  workers: number;
  inlineMaxMs: number;
  offloadBytes: number;
  batching: Config['server']['batching'];
  /** A reference profile (from `mlops build`) to count live rows against; empty: rows are not profiled. */
  profilePath: string;
  inferenceLog: Config['server']['inferenceLog'];
  /** Routes a platform names by environment (Vertex AI), served beside the fixed ones. */
  routes: { health?: string; predict?: string };
  auth: AuthOptions;
  tls: TlsOptions;
  /** The explain route: Kernel SHAP coalitions per row, the occlusion patch size, and the most rows one request may ask for. */
  explain: { samples: number; patch: number; maxRows: number };
  /**
   * Several models, or versions, instead of the one above (config `models`); empty: the one.
   * Each takes the server's workers and batching unless it sets its own.
   */
  models: ModelSpec[];
  /** A model repository file (see src/server/repository-file.ts) listing the models; read at start, wins over `models`. */
  repositoryFile: string;
  /** POST /v2/repository/models/{name}/load and /unload; refused (403) when off. */
  repositoryControl: boolean;
  /** The one model's model.preprocess and model.postprocess; undefined: the file `mlops build` put beside the model. */
  processing?: ProcessingOverrides;
}

/** The versions the server loads: `models`, or the one model of the top-level fields. */
export function servedSpecs(options: ServeOptions): ModelSpec[] {
  if (options.models.length > 0) return options.models;
  return [
    {
      name: options.modelName,
      version: options.modelVersion,
      path: options.modelPath,
      expectedSha256: options.expectedSha256,
      profilePath: options.profilePath,
      workers: options.workers,
      batching: options.batching,
      weight: 1,
      shadow: false,
      processing: options.processing,
    },
  ];
}

/** The environment variables the server reads, and the option each sets. Documented in docs/server.md ("Server environment"). */
export const SERVER_ENV = {
  MLOPS_MODEL_PATH: 'modelPath',
  MLOPS_MODEL_NAME: 'modelName',
  MLOPS_MODEL_VERSION: 'modelVersion',
  MLOPS_MODEL_SHA256: 'expectedSha256',
  HOST: 'host',
  PORT: 'port',
  GRPC_PORT: 'grpcPort',
  MLOPS_MAX_BODY_BYTES: 'maxBodyBytes',
  MLOPS_ALLOW_NON_FINITE: 'allowNonFinite',
  MLOPS_INFERENCE_TIMEOUT_MS: 'inferenceTimeoutMs',
  MLOPS_MAX_PENDING_BODY_BYTES: 'maxPendingBodyBytes',
  MLOPS_MIN_BODY_RATE: 'minBodyRate',
  MLOPS_RESPONSE_CACHE_BYTES: 'responseCacheBytes',
  MLOPS_TRUSTED_PROXIES: 'trustedProxies',
  MLOPS_WORKERS: 'workers',
  MLOPS_INLINE_MAX_MS: 'inlineMaxMs',
  MLOPS_OFFLOAD_BYTES: 'offloadBytes',
  MLOPS_SHUTDOWN_TIMEOUT_MS: 'shutdownTimeoutMs',
  MLOPS_MEMORY_BUDGET: 'memoryBudget',
  MLOPS_THREADS: 'intraOpThreads',
  MLOPS_BATCHING: 'batching.enabled',
  MLOPS_MAX_BATCH_SIZE: 'batching.maxBatchSize',
  MLOPS_BATCH_MAX_WAIT_MS: 'batching.maxWaitMs',
  MLOPS_EXPLAIN_SAMPLES: 'explain.samples',
  MLOPS_EXPLAIN_MAX_ROWS: 'explain.maxRows',
  MLOPS_EXPLAIN_PATCH: 'explain.patch',
  MLOPS_PROFILE_PATH: 'profilePath',
  MLOPS_MODEL_REPOSITORY: 'repositoryFile',
  MLOPS_REPOSITORY_CONTROL: 'repositoryControl',
  MLOPS_INFERENCE_LOG_SAMPLE: 'inferenceLog.sample',
  MLOPS_INFERENCE_LOG_SINK: 'inferenceLog.sink',
  MLOPS_INFERENCE_LOG_INPUTS: 'inferenceLog.inputs',
  MLOPS_AUTH_TOKEN_FILE: 'auth.tokenFile',
  MLOPS_AUTH_TOKENS: 'auth.tokens',
  MLOPS_AUTH_METRICS: 'auth.metrics',
  MLOPS_AUTH_CLIENT_ADDRESS_HEADER: 'auth.clientAddressHeader',
  MLOPS_TLS_CERT: 'tls.cert',
  MLOPS_TLS_KEY: 'tls.key',
  MLOPS_TLS_CLIENT_CA: 'tls.clientCa',
  // Platform contracts: these win over PORT, which images set themselves.
  AIP_HTTP_PORT: 'port',
  AIP_HEALTH_ROUTE: 'routes.health',
  AIP_PREDICT_ROUTE: 'routes.predict',
  SAGEMAKER_BIND_TO_PORT: 'port',
} as const;

/** SageMaker starts a container as `docker run IMAGE serve` and sends to port 8080 (or SAGEMAKER_BIND_TO_PORT). */
export const SAGEMAKER_PORT = 8080;

export function serveOptionsFromConfig(config: Config, baseDir: string): ServeOptions {
  return {
    modelPath: path.resolve(baseDir, config.model.path),
    modelName: config.model.name,
    modelVersion: config.model.version,
    host: config.server.host,
    port: config.server.port,
    grpcPort: config.server.grpcPort,
    maxBodyBytes: config.server.maxBodyBytes,
    allowNonFinite: config.server.allowNonFinite,
    inferenceTimeoutMs: config.server.inferenceTimeoutMs,
    maxPendingBodyBytes: config.server.maxPendingBodyBytes,
    minBodyRate: config.server.minBodyRate,
    responseCacheBytes: config.server.responseCache.maxBytes,
    trustedProxies: config.server.trustedProxies,
    shutdownTimeoutMs: config.server.shutdownTimeoutMs,
    memoryBudget: config.server.memoryBudget,
    intraOpThreads: config.server.intraOpThreads,
    workers: config.server.workers,
    inlineMaxMs: config.server.inlineMaxMs,
    offloadBytes: config.server.offloadBytes,
    batching: { ...config.server.batching },
    profilePath: '',
    inferenceLog: { ...config.server.inferenceLog },
    routes: {},
    explain: { samples: config.explain.samples, patch: config.explain.patch, maxRows: config.explain.maxRows },
    models: configuredSpecs(config, baseDir),
    repositoryFile: '',
    repositoryControl: config.server.repositoryControl,
    processing: { preprocess: config.model.preprocess, postprocess: config.model.postprocess },
    auth: { ...config.server.auth, tokenFile: resolveIn(baseDir, config.server.auth.tokenFile), tokens: [] },
    tls: {
      cert: resolveIn(baseDir, config.server.tls.cert),
      key: resolveIn(baseDir, config.server.tls.key),
      clientCa: resolveIn(baseDir, config.server.tls.clientCa),
      reloadIntervalMs: config.server.tls.reloadIntervalMs,
    },
  };
}

const resolveIn = (baseDir: string, file: string) => (file ? path.resolve(baseDir, file) : '');

/** Config `models`: each version of each model, with the server's workers and batching unless it sets its own. */
function configuredSpecs(config: Config, baseDir: string): ModelSpec[] {
  return config.models.flatMap((m) => {
    const own = { workers: m.workers, batching: { ...m.batching }, processing: { preprocess: m.preprocess, postprocess: m.postprocess } };
    return m.versions.map((v) => ({
      name: m.name,
      version: v.version,
      path: path.resolve(baseDir, v.path),
      profilePath: '',
      weight: v.weight,
      shadow: v.shadow,
      ...own,
    }));
  });
}

/**
 * The config's server settings an image carries as environment variables (the server in an image reads no
 * config file): those that differ from the defaults, and the inference log when it is on. Host and ports
 * are the image's own (image.port, image.grpcPort).
 */
export function imageServerEnv(config: Config): Record<string, string> {
  const server = config.server;
  const defaults = DEFAULTS.server;
  const env: Record<string, string> = {};
  const set = (name: keyof typeof SERVER_ENV, value: number | boolean, fallback: number | boolean) => {
    if (value !== fallback) env[name] = String(value);
  };
  set('MLOPS_MAX_BODY_BYTES', server.maxBodyBytes, defaults.maxBodyBytes);
  set('MLOPS_ALLOW_NON_FINITE', server.allowNonFinite, defaults.allowNonFinite);
  set('MLOPS_INFERENCE_TIMEOUT_MS', server.inferenceTimeoutMs, defaults.inferenceTimeoutMs);
  set('MLOPS_MAX_PENDING_BODY_BYTES', server.maxPendingBodyBytes, defaults.maxPendingBodyBytes);
  set('MLOPS_MIN_BODY_RATE', server.minBodyRate, defaults.minBodyRate);
  set('MLOPS_RESPONSE_CACHE_BYTES', server.responseCache.maxBytes, defaults.responseCache.maxBytes);
  if (server.trustedProxies.length > 0) env.MLOPS_TRUSTED_PROXIES = server.trustedProxies.join(',');
  set('MLOPS_WORKERS', server.workers, defaults.workers);
  set('MLOPS_INLINE_MAX_MS', server.inlineMaxMs, defaults.inlineMaxMs);
  set('MLOPS_OFFLOAD_BYTES', server.offloadBytes, defaults.offloadBytes);
  set('MLOPS_SHUTDOWN_TIMEOUT_MS', server.shutdownTimeoutMs, defaults.shutdownTimeoutMs);
  set('MLOPS_THREADS', server.intraOpThreads, defaults.intraOpThreads);
  set('MLOPS_BATCHING', server.batching.enabled, defaults.batching.enabled);
  set('MLOPS_MAX_BATCH_SIZE', server.batching.maxBatchSize, defaults.batching.maxBatchSize);
  set('MLOPS_BATCH_MAX_WAIT_MS', server.batching.maxWaitMs, defaults.batching.maxWaitMs);
  // Settings, never secrets: token files and certificates are mounted by the deploy, which sets their paths.
  set('MLOPS_AUTH_METRICS', server.auth.metrics, defaults.auth.metrics);
  set('MLOPS_REPOSITORY_CONTROL', server.repositoryControl, defaults.repositoryControl);
  if (server.auth.clientAddressHeader) env.MLOPS_AUTH_CLIENT_ADDRESS_HEADER = server.auth.clientAddressHeader;
  if (server.memoryBudget) env.MLOPS_MEMORY_BUDGET = server.memoryBudget;
  const { sample, sink, inputs } = server.inferenceLog;
  if (sample > 0)
    Object.assign(env, { MLOPS_INFERENCE_LOG_SAMPLE: String(sample), MLOPS_INFERENCE_LOG_SINK: sink, MLOPS_INFERENCE_LOG_INPUTS: String(inputs) });
  set('MLOPS_EXPLAIN_SAMPLES', config.explain.samples, DEFAULTS.explain.samples);
  set('MLOPS_EXPLAIN_MAX_ROWS', config.explain.maxRows, DEFAULTS.explain.maxRows);
  set('MLOPS_EXPLAIN_PATCH', config.explain.patch, DEFAULTS.explain.patch);
  return env;
}

function parseNumber(name: string, value: string, min: number, max: number, integer = true): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    throw inputError(`${name}=${value}: expected ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`);
  }
  return n;
}

function parseBoolean(name: string, value: string): boolean {
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw inputError(`${name}=${value}: expected true or false`);
}

/** Values from the environment (and later flags) win over config and defaults. */
export function applyServerEnv(base: ServeOptions, env: NodeJS.ProcessEnv): ServeOptions {
  const out: ServeOptions = {
    ...base,
    models: [...base.models],
    batching: { ...base.batching },
    inferenceLog: { ...base.inferenceLog },
    routes: { ...base.routes },
    auth: { ...base.auth },
    tls: { ...base.tls },
    explain: { ...base.explain },
  };
  const get = (name: keyof typeof SERVER_ENV) => {
    const v = env[name];
    return v === undefined || v === '' ? undefined : v;
  };
  let v: string | undefined;
  if ((v = get('MLOPS_MODEL_PATH'))) out.modelPath = path.resolve(v);
  if ((v = get('MLOPS_MODEL_NAME'))) out.modelName = v;
  if ((v = get('MLOPS_MODEL_VERSION'))) out.modelVersion = v;
  if ((v = get('MLOPS_MODEL_SHA256'))) {
    if (!/^[0-9a-f]{64}$/i.test(v)) throw inputError(`MLOPS_MODEL_SHA256=${v}: expected 64 hex digits`);
    out.expectedSha256 = v.toLowerCase();
  }
  if ((v = get('HOST'))) out.host = v;
  if ((v = get('PORT'))) out.port = parseNumber('PORT', v, 0, 65535);
  if ((v = get('GRPC_PORT'))) out.grpcPort = parseNumber('GRPC_PORT', v, 0, 65535);
  if ((v = get('MLOPS_WORKERS'))) out.workers = parseNumber('MLOPS_WORKERS', v, 0, 64);
  if ((v = get('MLOPS_INLINE_MAX_MS'))) out.inlineMaxMs = parseNumber('MLOPS_INLINE_MAX_MS', v, 0, 1000, false);
  if ((v = get('MLOPS_OFFLOAD_BYTES'))) out.offloadBytes = parseNumber('MLOPS_OFFLOAD_BYTES', v, 0, 2 ** 31 - 1);
  if ((v = get('MLOPS_MAX_BODY_BYTES'))) out.maxBodyBytes = parseNumber('MLOPS_MAX_BODY_BYTES', v, 1024, 2 ** 31 - 1);
  if ((v = get('MLOPS_ALLOW_NON_FINITE'))) out.allowNonFinite = parseBoolean('MLOPS_ALLOW_NON_FINITE', v);
  if ((v = get('MLOPS_INFERENCE_TIMEOUT_MS'))) out.inferenceTimeoutMs = parseNumber('MLOPS_INFERENCE_TIMEOUT_MS', v, 1, 3_600_000);
  if ((v = get('MLOPS_RESPONSE_CACHE_BYTES'))) out.responseCacheBytes = parseNumber('MLOPS_RESPONSE_CACHE_BYTES', v, 0, 2 ** 40);
  if ((v = get('MLOPS_MIN_BODY_RATE'))) out.minBodyRate = parseNumber('MLOPS_MIN_BODY_RATE', v, 0, 2 ** 31 - 1);
  if ((v = get('MLOPS_TRUSTED_PROXIES')))
    out.trustedProxies = v
      .split(',')
      .map((t) => t.trim())
      .filter((t) => t !== '');
  if ((v = get('MLOPS_MAX_PENDING_BODY_BYTES'))) out.maxPendingBodyBytes = parseNumber('MLOPS_MAX_PENDING_BODY_BYTES', v, 1024, 2 ** 40);
  if ((v = get('MLOPS_SHUTDOWN_TIMEOUT_MS'))) out.shutdownTimeoutMs = parseNumber('MLOPS_SHUTDOWN_TIMEOUT_MS', v, 0, 600_000);
  if ((v = get('MLOPS_MEMORY_BUDGET'))) {
    parseByteSize(v, 'MLOPS_MEMORY_BUDGET');
    out.memoryBudget = v;
  }
  if ((v = get('MLOPS_THREADS'))) out.intraOpThreads = parseNumber('MLOPS_THREADS', v, 0, 1024);
  if ((v = get('MLOPS_BATCHING'))) out.batching.enabled = parseBoolean('MLOPS_BATCHING', v);
  if ((v = get('MLOPS_MAX_BATCH_SIZE'))) out.batching.maxBatchSize = parseNumber('MLOPS_MAX_BATCH_SIZE', v, 1, 65536);
  if ((v = get('MLOPS_PROFILE_PATH'))) out.profilePath = path.resolve(v);
  if ((v = get('MLOPS_MODEL_REPOSITORY'))) out.repositoryFile = path.resolve(v);
  if ((v = get('MLOPS_REPOSITORY_CONTROL'))) out.repositoryControl = parseBoolean('MLOPS_REPOSITORY_CONTROL', v);
  if ((v = get('MLOPS_BATCH_MAX_WAIT_MS'))) out.batching.maxWaitMs = parseNumber('MLOPS_BATCH_MAX_WAIT_MS', v, 0, 10_000, false);
  if ((v = get('MLOPS_INFERENCE_LOG_SAMPLE'))) out.inferenceLog.sample = parseNumber('MLOPS_INFERENCE_LOG_SAMPLE', v, 0, 1, false);
  if ((v = get('MLOPS_INFERENCE_LOG_SINK'))) out.inferenceLog.sink = parseSink(v, 'MLOPS_INFERENCE_LOG_SINK') && v;
  if ((v = get('MLOPS_INFERENCE_LOG_INPUTS'))) out.inferenceLog.inputs = parseBoolean('MLOPS_INFERENCE_LOG_INPUTS', v);
  if ((v = get('MLOPS_AUTH_TOKEN_FILE'))) out.auth.tokenFile = path.resolve(v);
  if ((v = get('MLOPS_AUTH_TOKENS')))
    out.auth.tokens = v
      .split(',')
      .map((t) => t.trim())
      .filter((t) => t !== '');
  if ((v = get('MLOPS_AUTH_METRICS'))) out.auth.metrics = parseBoolean('MLOPS_AUTH_METRICS', v);
  if ((v = get('MLOPS_AUTH_CLIENT_ADDRESS_HEADER'))) out.auth.clientAddressHeader = v.toLowerCase();
  if ((v = get('MLOPS_TLS_CERT'))) out.tls.cert = path.resolve(v);
  if ((v = get('MLOPS_TLS_KEY'))) out.tls.key = path.resolve(v);
  if ((v = get('MLOPS_TLS_CLIENT_CA'))) out.tls.clientCa = path.resolve(v);
  if ((v = get('MLOPS_EXPLAIN_SAMPLES'))) out.explain.samples = parseNumber('MLOPS_EXPLAIN_SAMPLES', v, 2, 1_000_000);
  if ((v = get('MLOPS_EXPLAIN_MAX_ROWS'))) out.explain.maxRows = parseNumber('MLOPS_EXPLAIN_MAX_ROWS', v, 1, 100_000);
  if ((v = get('MLOPS_EXPLAIN_PATCH'))) out.explain.patch = parseNumber('MLOPS_EXPLAIN_PATCH', v, 1, 4096);
  if ((v = get('AIP_HTTP_PORT'))) out.port = parseNumber('AIP_HTTP_PORT', v, 1, 65535);
  if ((v = get('AIP_HEALTH_ROUTE'))) out.routes.health = parseRoute('AIP_HEALTH_ROUTE', v);
  if ((v = get('AIP_PREDICT_ROUTE'))) out.routes.predict = parseRoute('AIP_PREDICT_ROUTE', v);
  return out;
}

function parseRoute(name: string, value: string): string {
  if (!value.startsWith('/') || /[?#\s]/.test(value)) throw inputError(`${name}=${value}: expected a URL path starting with "/", without query or spaces`);
  return value;
}

/**
 * The arguments the server in an image accepts: none, or SageMaker's `serve`, which also
 * moves it to SageMaker's port whatever port the image was built with.
 */
export function applyImageArguments(options: ServeOptions, args: string[], env: NodeJS.ProcessEnv): ServeOptions {
  if (args.length === 0) return options;
  if (args.length > 1 || args[0] !== 'serve') {
    throw inputError(
      `the server in this image takes no arguments but \`serve\` (SageMaker's), got: ${args.join(' ')}`,
      'configure it with environment variables (docs/server.md, "Server environment")',
    );
  }
  const bind = env.SAGEMAKER_BIND_TO_PORT;
  return { ...options, port: bind ? parseNumber('SAGEMAKER_BIND_TO_PORT', bind, 1, 65535) : SAGEMAKER_PORT };
}
