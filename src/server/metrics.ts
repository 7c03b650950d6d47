import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface ServerMetrics {
  registry: Registry;
  requests: Counter<'protocol' | 'route' | 'method' | 'code'>;
  requestSeconds: Histogram<'protocol' | 'route'>;
  inferenceSeconds: Histogram;
  queueSeconds: Histogram;
  batchSize: Histogram;
  inFlight: Gauge;
  deadlineExceeded: Counter<'stage'>;
  workersReplaced: Counter<'reason'>;
  authFailures: Counter<'reason'>;
}

/**
 * The `route` label of every inference route of every contract: OIP REST and gRPC, KServe v1,
 * SageMaker's /invocations, Vertex AI's AIP_PREDICT_ROUTE. Alert rules and dashboards count these.
 */
export const INFERENCE_ROUTES = ['/v2/models/{name}/infer', '/v1/models/{name}:predict', '/invocations', '$AIP_PREDICT_ROUTE', 'ModelInfer'] as const;

/** A PromQL matcher for exactly those routes (RE2 is anchored; each label is escaped). */
export const INFERENCE_ROUTE_MATCHER = `route=~"${INFERENCE_ROUTES.map((r) => r.replace(/[.*+?^${}()|[\]\\]/g, '\\\\$&')).join('|')}"`;

// Sub-millisecond buckets: a small tabular model answers in well under 1 ms.
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A registry of its own (not prom-client's global one), so several servers can live in one process. */
export function createServerMetrics(model: { name: string; version: string; sha256: string }): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'mlops_' });
  // prom-client also names three gauges *_total, a counter's suffix, which `promtool check metrics` refuses;
  // the same counts stay as mlops_nodejs_active_{handles,requests,resources} without it.
  for (const name of ['handles', 'requests', 'resources']) registry.removeSingleMetric(`mlops_nodejs_active_${name}_total`);
  const metrics: ServerMetrics = {
    registry,
    requests: new Counter({
      name: 'mlops_http_requests_total',
      help: 'Requests by protocol (rest, grpc), route (or RPC), method and status code (HTTP status, or gRPC status name)',
      labelNames: ['protocol', 'route', 'method', 'code'],
      registers: [registry],
    }),
    requestSeconds: new Histogram({
      name: 'mlops_http_request_duration_seconds',
      help: 'Time from request received to response sent, by protocol and route (or RPC)',
      labelNames: ['protocol', 'route'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    inferenceSeconds: new Histogram({
      name: 'mlops_inference_duration_seconds',
      help: 'ONNX Runtime session.run time per (possibly batched) run',
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    queueSeconds: new Histogram({
      name: 'mlops_inference_queue_duration_seconds',
      help: 'Time a request waited for the model before its run started',
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: 'mlops_batch_size',
      help: 'Rows per model run',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers: [registry],
    }),
    inFlight: new Gauge({ name: 'mlops_http_requests_in_flight', help: 'Requests being handled', registers: [registry] }),
    deadlineExceeded: new Counter({
      name: 'mlops_inference_deadline_exceeded_total',
      help: 'Requests answered 504 / DEADLINE_EXCEEDED, by stage: queued (never ran) or running (the run was abandoned)',
      labelNames: ['stage'],
      registers: [registry],
    }),
    authFailures: new Counter({
      name: 'mlops_auth_failures_total',
      help: 'Requests refused for their bearer token, by reason: missing, invalid, or locked (an address locked out after repeated failures)',
      labelNames: ['reason'],
      registers: [registry],
    }),
    workersReplaced: new Counter({
      name: 'mlops_inference_workers_replaced_total',
      help: 'Inference worker threads replaced, by reason: deadline (a run overstayed and was abandoned) or exited',
      labelNames: ['reason'],
      registers: [registry],
    }),
  };
  new Gauge({
    name: 'mlops_model_info',
    help: 'The model being served (always 1)',
    labelNames: ['name', 'version', 'sha256'],
    registers: [registry],
  }).set({ name: model.name, version: model.version, sha256: model.sha256 }, 1);
  return metrics;
}

/** Where inference runs (1 on the current placement), and how many worker threads there are. */
export function placementMetrics(registry: Registry, read: () => { where: string; workers: number; abandoned: number }): void {
  new Gauge({
    name: 'mlops_inference_placement',
    help: 'Where small batches run: main-thread or workers (1 on the current one)',
    labelNames: ['where'],
    registers: [registry],
    collect() {
      const { where } = read();
      this.reset();
      this.set({ where }, 1);
    },
  });
  new Gauge({
    name: 'mlops_inference_workers',
    help: 'Inference worker threads, each with its own ONNX Runtime session',
    registers: [registry],
    collect() {
      this.set(read().workers);
    },
  });
  new Gauge({
    name: 'mlops_inference_abandoned_runs',
    help: 'Runs abandoned at their deadline that are still inside ONNX Runtime, each holding a thread until it returns',
    registers: [registry],
    collect() {
      this.set(read().abandoned);
    },
  });
}
