import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { BoundCounter, BoundHistogram } from './bound-metrics.js';

export interface ServerMetrics {
  registry: Registry;
  /** Per request or run: bound series, see bound-metrics.ts. Labels: protocol, route, method, code, model. */
  requests: BoundCounter;
  /** protocol, route, model. */
  requestSeconds: BoundHistogram;
  /** These three: model, version. */
  inferenceSeconds: BoundHistogram;
  queueSeconds: BoundHistogram;
  batchSize: BoundHistogram;
  inFlight: Gauge;
  deadlineExceeded: Counter<'stage' | 'model' | 'version'>;
  workersReplaced: Counter<'reason' | 'model' | 'version'>;
  authFailures: Counter<'reason'>;
  /** A shadow version's answers against the serving version's: agree, disagree, failed (the shadow's run), skipped (too many shadow runs in flight). */
  shadowAgreement: Counter<'model' | 'version' | 'serving_version' | 'outcome'>;
  shadowDifference: Histogram<'model' | 'version'>;
}

/**
 * Counts a finished request in mlops_http_requests_total and mlops_http_request_duration_seconds. The
 * label children are kept per label set: prom-client hashes a label object on every inc() and
 * observe(), which the hot path paid twice a request (the label values are bounded: routes are
 * templates, methods those Node parses, models those the server holds).
 */
export function requestRecorder(
  metrics: ServerMetrics,
): (protocol: string, route: string, method: string, code: string | number, model: string, seconds: number) => void {
  const children = new Map<string, { count: { inc(): void }; seconds: { observe(value: number): void } }>();
  return (protocol, route, method, code, model, seconds) => {
    const key = `${protocol} ${route} ${method} ${code} ${model}`;
    let child = children.get(key);
    if (!child) {
      child = { count: metrics.requests.labels({ protocol, route, method, code, model }), seconds: metrics.requestSeconds.labels({ protocol, route, model }) };
      children.set(key, child);
    }
    child.count.inc();
    child.seconds.observe(seconds);
  };
}

/** One model version's share of the metrics: label children bound once, so a run costs no label lookup. */
export interface VersionMetrics {
  inferenceSeconds: { observe(value: number): void };
  queueSeconds: { observe(value: number): void };
  batchSize: { observe(value: number): void };
  deadlineExceeded: (stage: 'queued' | 'running') => void;
  workersReplaced: (reason: 'deadline' | 'exited') => void;
}

export function versionMetrics(metrics: ServerMetrics, model: string, version: string): VersionMetrics {
  const labels = { model, version };
  return {
    inferenceSeconds: metrics.inferenceSeconds.labels(labels),
    queueSeconds: metrics.queueSeconds.labels(labels),
    batchSize: metrics.batchSize.labels(labels),
    deadlineExceeded: (stage) => metrics.deadlineExceeded.inc({ stage, ...labels }),
    workersReplaced: (reason) => metrics.workersReplaced.inc({ reason, ...labels }),
  };
}

// Sub-millisecond buckets: a small tabular model answers in well under 1 ms.
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** What mlops_model_info and mlops_model_ready say of each version the server holds, read at scrape time. */
export interface HeldVersion {
  name: string;
  version: string;
  sha256: string;
  role: 'serving' | 'shadow';
  weight: number;
  ready: boolean;
}

/**
 * A registry of its own (not prom-client's global one), so several servers can live in one process.
 * Routes carry the `model` the request named ("" for routes of no model); runs carry its `model` and `version`.
 */
export function createServerMetrics(held: () => HeldVersion[]): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'mlops_' });
  // prom-client also names three gauges *_total, a counter's suffix, which `promtool check metrics` refuses;
  // the same counts stay as mlops_nodejs_active_{handles,requests,resources} without it.
  for (const name of ['handles', 'requests', 'resources']) registry.removeSingleMetric(`mlops_nodejs_active_${name}_total`);
  const metrics: ServerMetrics = {
    registry,
    requests: new BoundCounter(
      registry,
      'mlops_http_requests_total',
      'Requests by protocol (rest, grpc), route (or RPC), method, status code (HTTP status, or gRPC status name) and the model named ("" for none)',
      ['protocol', 'route', 'method', 'code', 'model'],
    ),
    requestSeconds: new BoundHistogram(
      registry,
      'mlops_http_request_duration_seconds',
      'Time from request received to response sent, by protocol, route (or RPC) and model',
      ['protocol', 'route', 'model'],
      LATENCY_BUCKETS,
    ),
    inferenceSeconds: new BoundHistogram(
      registry,
      'mlops_inference_duration_seconds',
      'ONNX Runtime session.run time per (possibly batched) run',
      ['model', 'version'],
      LATENCY_BUCKETS,
    ),
    queueSeconds: new BoundHistogram(
      registry,
      'mlops_inference_queue_duration_seconds',
      'Time a request waited for the model before its run started',
      ['model', 'version'],
      LATENCY_BUCKETS,
    ),
    batchSize: new BoundHistogram(registry, 'mlops_batch_size', 'Rows per model run', ['model', 'version'], [1, 2, 4, 8, 16, 32, 64, 128, 256]),
    inFlight: new Gauge({ name: 'mlops_http_requests_in_flight', help: 'Requests being handled', registers: [registry] }),
    deadlineExceeded: new Counter({
      name: 'mlops_inference_deadline_exceeded_total',
      help: 'Requests answered 504 / DEADLINE_EXCEEDED, by stage: queued (never ran) or running (the run was abandoned)',
      labelNames: ['stage', 'model', 'version'],
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
      labelNames: ['reason', 'model', 'version'],
      registers: [registry],
    }),
    shadowAgreement: new Counter({
      name: 'mlops_shadow_agreement_total',
      help: "Requests a shadow version was sent a copy of, by outcome: agree (same predicted class per row, or values within 1e-4 relative), disagree, failed (the shadow's run failed; the client never sees it), skipped (too many shadow runs in flight)",
      labelNames: ['model', 'version', 'serving_version', 'outcome'],
      registers: [registry],
    }),
    shadowDifference: new Histogram({
      name: 'mlops_shadow_max_abs_difference',
      help: "Per request, the largest absolute difference between a shadow version's numeric outputs and the serving version's",
      labelNames: ['model', 'version'],
      buckets: [0, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 10],
      registers: [registry],
    }),
  };
  modelGauges(registry, held);
  return metrics;
}

/** What the server holds, read at each scrape: every model version, its role and weight, and whether it answers. */
function modelGauges(registry: Registry, held: () => HeldVersion[]): void {
  new Gauge({
    name: 'mlops_model_info',
    help: "Each model version the server holds (always 1): its role (serving, or shadow) and its weight in the model's traffic",
    labelNames: ['name', 'version', 'sha256', 'role', 'weight'],
    registers: [registry],
    collect() {
      this.reset();
      // A version not loaded (unloaded, or loading) has no file to name: mlops_model_ready says 0 for it.
      for (const v of held()) if (v.sha256) this.set({ name: v.name, version: v.version, sha256: v.sha256, role: v.role, weight: String(v.weight) }, 1);
    },
  });
  new Gauge({
    name: 'mlops_model_ready',
    help: 'Whether each model version is loaded and answering (1), or unloaded or loading (0)',
    labelNames: ['model', 'version'],
    registers: [registry],
    collect() {
      this.reset();
      for (const v of held()) this.set({ model: v.name, version: v.version }, v.ready ? 1 : 0);
    },
  });
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
