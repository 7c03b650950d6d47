import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { HealthImplementation } from 'grpc-health-check';
import {
  decodeGrpcRequest,
  decodeModelInferBytes,
  encodeGrpcResponse,
  INFERENCE_SERVICE,
  inferenceProto,
  peekModel,
  type GrpcInferRequest,
} from '../protocol/grpc.js';
import { BadRequest, boundErrorText } from '../protocol/request.js';
import { shownValue } from '../errors.js';
import { SERVER_EXTENSIONS } from '../protocol/rest.js';
import type { AccessControl, TrustedProxies } from './auth.js';
import type { BodyBudget } from './body.js';
import type { RequestMemory } from './memory-budget.js';
import { cacheRefused, inferCached, type ResponseCache } from './response-cache.js';
import { admission, GRPC_STATUS_FOR_HTTP } from './grpc-admission.js';
import { grpcServerCredentials, type TlsOptions } from './tls.js';
import { copyTensors, encodeInferenceRecords } from '../monitor/inference-records.js';
import type { ModelRepository, ServedVersion } from './model-repository.js';
import { failureLogger } from './failure-log.js';
import { inferRaw, labelledAnswer, rawGrpcInputs } from './processing.js';
import type { InferenceLog } from './inference-log.js';
import { requestRecorder, type ServerMetrics } from './metrics.js';
import { closeWithin, type ServingState } from './state.js';

export interface GrpcServerOptions {
  repository: ModelRepository;
  metrics: ServerMetrics;
  state: ServingState;
  maxMessageBytes: number;
  /** Opt-in (server.responseCache); undefined when off. */
  responseCache?: ResponseCache;
  /** ModelInfer messages larger than this are decoded, run and encoded whole in a worker thread, as REST bodies are. */
  offloadBytes: number;
  /** Bytes all bodies still arriving (REST and gRPC) may hold together, shared fairly between clients. */
  bodyBudget: BodyBudget;
  /** Where a client's address comes from behind a proxy (server.trustedProxies). */
  proxies: TrustedProxies;
  /** server.memoryBudget at run time; undefined without one. */
  requestMemory?: RequestMemory;
  /** A call not answered by then gets DEADLINE_EXCEEDED; the client's own deadline wins when shorter. */
  inferenceTimeoutMs: number;
  serverVersion: string;
  /** Off when undefined. */
  inferenceLog?: InferenceLog;
  /** Bearer tokens in the `authorization` metadata; off when undefined. */
  access?: AccessControl;
  /** TLS (and client certificates) when set. */
  tls?: TlsOptions;
  log: (line: string) => void;
}

export interface GrpcServer {
  listen(port: number, host: string): Promise<{ port: number }>;
  /** Health NOT_SERVING, no new calls, calls in flight finish; forced after timeoutMs. */
  shutdown(timeoutMs: number): Promise<{ forced: boolean }>;
  /** Sets the grpc.health.v1 status of the server and of the inference service. */
  setServing(serving: boolean): void;
}

type Rpc = (request: Record<string, unknown>, call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>) => unknown;

/** Marks a request whose bytes did not decode; the handler answers it INVALID_ARGUMENT. */
const MALFORMED = Symbol('malformed');
/** A ModelInfer message left undecoded (over offloadBytes): its bytes, for a worker thread to decode. */
const UNDECODED = Symbol('undecoded');

/**
 * grpc-js answers a request that fails to decode with INTERNAL, as if the server were broken. Each
 * method's decoder here hands the handler a marked request instead, so the client hears
 * INVALID_ARGUMENT and why (protobufjs' reason: "index out of range", "invalid wire type").
 */
function lenientDecoding(service: grpc.ServiceDefinition, offloadBytes: number): grpc.ServiceDefinition {
  return Object.fromEntries(
    Object.entries(service).map(([name, method]) => [
      name,
      {
        ...method,
        // A large ModelInfer message is not decoded here, on the main thread, where a 12 MB one held every other
        // request (and health) for about a second (issue 34): its bytes go to the model's worker whole.
        requestDeserialize: (bytes: Buffer) => {
          if (name === 'ModelInfer' && bytes.length > offloadBytes) return { [UNDECODED]: bytes };
          try {
            return method.requestDeserialize(bytes) as unknown;
          } catch (error) {
            return { [MALFORMED]: String((error as Error)?.message ?? error).split('\n')[0] };
          }
        },
        // An answer a worker encoded is sent as it is.
        responseSerialize: (value: unknown) =>
          value instanceof Uint8Array ? Buffer.from(value.buffer, value.byteOffset, value.byteLength) : method.responseSerialize(value),
      },
    ]),
  );
}

/** The Open Inference Protocol's GRPCInferenceService and grpc.health.v1, over the same engine as REST. */
export function createGrpcServer(options: GrpcServerOptions): GrpcServer {
  const { repository, metrics, state, log } = options;
  const logFailure = failureLogger(log);
  const recordRequest = requestRecorder(metrics);
  const server = newServer(options, recordRequest);
  let stopWatchingTls: (() => void) | undefined;
  const health = new HealthImplementation({ '': 'NOT_SERVING', [INFERENCE_SERVICE]: 'NOT_SERVING' });
  health.addToServer(server);

  const rpcs: Record<string, Rpc> = {
    ServerLive: () => ({ live: true }),
    ServerReady: () => ({ ready: state.ready && repository.accepting }),
    ModelReady: (r) => ({ ready: state.ready && repository.ready(named(r.name), versionOf(r.version)).ready }),
    ServerMetadata: () => ({ name: 'mlops', version: options.serverVersion, extensions: SERVER_EXTENSIONS }),
    ModelMetadata: (r) => repository.metadata(named(r.name), versionOf(r.version)),
    ModelInfer: modelInfer(options),
  };

  const handlers: grpc.UntypedServiceImplementation = {};
  for (const [name, rpc] of Object.entries(rpcs)) handlers[name] = handlerOf(name, rpc, options, recordRequest, logFailure);
  const definition = grpc.loadPackageDefinition(inferenceProto()) as unknown as { inference: { GRPCInferenceService: { service: grpc.ServiceDefinition } } };
  server.addService(lenientDecoding(definition.inference.GRPCInferenceService.service, options.offloadBytes), handlers);

  return {
    listen(port, host) {
      const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
      return new Promise((resolve, reject) => {
        const secure = options.tls ? grpcServerCredentials(options.tls) : undefined;
        stopWatchingTls = secure?.stop;
        server.bindAsync(address, secure?.credentials ?? grpc.ServerCredentials.createInsecure(), (error, bound) =>
          error ? reject(error) : resolve({ port: bound }),
        );
      });
    },
    setServing(serving) {
      const status = serving ? 'SERVING' : 'NOT_SERVING';
      health.setStatus('', status);
      health.setStatus(INFERENCE_SERVICE, status);
    },
    shutdown(timeoutMs) {
      stopWatchingTls?.();
      return closeWithin(
        timeoutMs,
        (done) => server.tryShutdown(() => done()),
        () => server.forceShutdown(),
      );
    },
  };
}

/** The server's timeout from now, or the client's deadline (grpc-timeout) when it comes sooner; in performance.now() time. */
function deadlineOf(call: grpc.ServerUnaryCall<unknown, unknown>, inferenceTimeoutMs: number): number {
  // grpc-js gives the client's deadline (from grpc-timeout) in epoch milliseconds, or Infinity.
  const given = call.getDeadline();
  const clientMs = (given instanceof Date ? given.getTime() : given) - Date.now();
  return performance.now() + Math.min(inferenceTimeoutMs, clientMs);
}

/** An empty name means the server's (first) model, so that a client can discover it; an empty version, none named. */
const named = (name: unknown) => (name ? shownValue(name) : undefined);
const versionOf = (version: unknown) => (version ? shownValue(version) : undefined);

/**
 * ModelInfer: a message left undecoded by lenientDecoding goes whole to a worker when nothing here needs
 * it; else decoded here, raw images and texts preprocessed, run through the batcher, answered, logged, mirrored.
 */
function modelInfer(options: GrpcServerOptions): Rpc {
  const { repository, state, inferenceLog } = options;
  return async (r, call) => {
    if (!state.ready && !state.draining) throw new BadRequest('the server is not ready yet', 503);
    const undecoded = (r as { [UNDECODED]?: Buffer })[UNDECODED];
    if (undecoded) {
      const named = peekModel(undecoded);
      // For the metrics: the model this call named.
      Object.assign(r, named);
      const served = repository.route(named.model_name || undefined, named.model_version || undefined);
      const shadows = named.model_version ? NO_SHADOWS : repository.shadowsOf(served);
      // Images and texts, a copy for shadows or a line for the inference log need the message here: decoded on this thread.
      if (served.engine.workers > 0 && !served.processing && shadows.length === 0 && !(inferenceLog?.sampled() ?? false)) {
        return served.engine.inferGrpc(undecoded, true, { id: randomUUID() }, deadlineOf(call, options.inferenceTimeoutMs));
      }
      Object.assign(r, decodeModelInferBytes(undecoded));
    }
    const message = r as GrpcInferRequest;
    const version = versionOf(message.model_version);
    const served = repository.route(named(message.model_name), version);
    const { engine, recordModel } = served;
    // An image or a text for a model that takes one: bytes_contents (or raw contents) of a BYTES input named for it.
    const raw = rawGrpcInputs(served.processing, message);
    if (raw) {
      const { results } = await inferRaw(engine, served.processing!, raw, deadlineOf(call, options.inferenceTimeoutMs));
      if (results.length > 1) throw new BadRequest('this model takes one input a request (its batch dimension is 1): send one image or text per request');
      const answer = labelledAnswer(served.processing, engine.model, results[0]);
      return encodeGrpcResponse(answer.signature, answer.result, { id: message.id ?? randomUUID(), outputs: undefined });
    }
    const request = decodeGrpcRequest(message, engine.model);
    request.id ??= randomUUID();
    const logged = inferenceLog?.sampled() ?? false;
    const inputs = logged && inferenceLog!.inputs ? copyTensors(request.inputs) : undefined;
    // Batching may hand the inputs' buffers to a worker thread: the shadows keep a copy.
    const shadows = version === undefined ? repository.shadowsOf(served) : NO_SHADOWS;
    const copy = shadows.length > 0 ? { tensors: copyTensors(request.inputs) } : undefined;
    const due = deadlineOf(call, options.inferenceTimeoutMs);
    const result = await inferCached(
      options.responseCache,
      options.responseCache !== undefined && cacheRefused(call.metadata.get('cache-control')[0]),
      engine,
      request,
      due,
    );
    // A classifier with names: its labels beside the outputs, unless the request named the outputs it wants.
    const answer = request.outputs === undefined && served.processing ? labelledAnswer(served.processing, engine.model, result) : undefined;
    const response = answer ? encodeGrpcResponse(answer.signature, answer.result, request) : encodeGrpcResponse(engine.model, result, request);
    if (logged)
      setImmediate(() => inferenceLog!.add(encodeInferenceRecords({ id: request.id!, rows: request.rows, model: recordModel }, result, inputs), request.rows));
    if (copy) repository.mirror(served, shadows, copy, request.rows, () => result, due);
    return response;
  };
}

/** The handler grpc-js calls for one RPC: counts the call in flight, refuses a malformed message, maps errors to gRPC statuses, records the metrics. */
function handlerOf(
  name: string,
  rpc: Rpc,
  options: GrpcServerOptions,
  recordRequest: ReturnType<typeof requestRecorder>,
  logFailure: ReturnType<typeof failureLogger>,
) {
  const { repository, metrics, state } = options;
  return (call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>, callback: grpc.sendUnaryData<unknown>) => {
    const started = performance.now();
    state.inFlight++;
    metrics.inFlight.inc();
    let code = grpc.status.OK;
    const finish = () => {
      state.inFlight--;
      metrics.inFlight.dec();
      const request = call.request as { model_name?: unknown; name?: unknown } | undefined;
      const given = MODEL_RPCS.has(name) ? shownValue(request?.model_name || request?.name || repository.names[0]) : '';
      const model = repository.has(given) ? given : '';
      recordRequest('grpc', name, 'POST', grpc.status[code], model, (performance.now() - started) / 1000);
    };
    Promise.resolve()
      .then(async () => {
        const malformed = (call.request as { [MALFORMED]?: string })[MALFORMED];
        if (malformed !== undefined) throw new BadRequest(`malformed ${name} request: ${malformed}`);
        return rpc(call.request, call);
      })
      .then(
        (response) => {
          finish();
          callback(null, response);
        },
        (error: unknown) => {
          if (error instanceof BadRequest) code = GRPC_STATUS_FOR_HTTP[error.status] ?? grpc.status.INVALID_ARGUMENT;
          else {
            code = grpc.status.INTERNAL;
            logFailure(`gRPC ${name}`, error);
          }
          finish();
          const message = error instanceof BadRequest ? error.message : boundErrorText(`inference failed: ${(error as Error)?.message ?? String(error)}`);
          callback({ code, details: message });
        },
      );
  };
}

/** grpc-js's server with the message limits, stream and keepalive settings, and the admission interceptor. */
function newServer(options: GrpcServerOptions, recordRequest: ReturnType<typeof requestRecorder>): grpc.Server {
  return new grpc.Server({
    'grpc.max_receive_message_length': options.maxMessageBytes,
    'grpc.max_send_message_length': -1,
    // A client gets at most this many calls at once on one connection, as nginx's http2_max_concurrent_streams.
    'grpc.max_concurrent_streams': MAX_CONCURRENT_STREAMS,
    // Pings find dead peers; a connection with no call for this long is closed (with GOAWAY, so clients reconnect cleanly).
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
    'grpc.max_connection_idle_ms': 300_000,
    interceptors: [
      admission({
        access: options.access,
        proxies: options.proxies,
        limits: { maxBodyBytes: options.maxMessageBytes, budget: options.bodyBudget, memory: options.requestMemory },
        onRefused: (method, code) => recordRequest('grpc', method, 'POST', grpc.status[code], '', 0),
      }),
    ],
  });
}

const NO_SHADOWS: ServedVersion[] = [];

/** Calls at once on one HTTP/2 connection. */
const MAX_CONCURRENT_STREAMS = 100;

/** The RPCs about one model: their metrics carry its name (the first model's when the request names none). */
const MODEL_RPCS = new Set(['ModelReady', 'ModelMetadata', 'ModelInfer']);
