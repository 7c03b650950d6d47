import { decodeFromCompressedBase64 } from 'hdr-histogram-js';
import type Docker from 'dockerode';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Config } from '../config/defaults.js';
import { connectDocker } from '../docker/client.js';
import { copyFromContainer } from '../docker/container.js';
import { sampleContainerUsage, type ContainerUsage } from '../docker/stats.js';
import { PROFILE_IMAGE_PATH, referenceRanges, type ReferenceProfile } from '../monitor/profile.js';
import { errorMessage, inputError } from '../errors.js';
import { ModelRunError } from '../model/run-error.js';
import { openHoldout } from '../holdout/open.js';
import type { HoldoutRow } from '../holdout/types.js';
import { checkKnownMetrics, evaluateGates, failureGates, gatesFromConfig, type GateResult, type GateSpec } from '../metrics/gates.js';
import type { Tensors } from '../model/session.js';
import { openTarget, type OpenedTarget, type TargetOptions } from '../predict/target.js';
import { authHeaders, tlsConnectOptions } from '../protocol/client-security.js';
import { encodeGrpcRequest, inferenceProto } from '../protocol/grpc.js';
import { holdoutFeeds, PAYLOADS, requestBody } from './inputs.js';
import { openSampleInputs, sampleSettings, type SampleInputs, type ValueRange } from '../model/sample-inputs.js';
import type { LoadTarget, WorkerJob } from './worker.js';
import { runLoad, tallyReason, type LoadOutcome, type LoadPlan } from './load.js';
import { scrapeCounters, serverTimes, type ServerSideTimes } from './server-metrics.js';
import { createLatencyHistogram, summarize, type LatencySummary } from './stats.js';

export const BENCH_METRICS = ['p50_ms', 'p90_ms', 'p95_ms', 'p99_ms', 'max_ms', 'mean_ms', 'throughput_rps', 'error_rate'] as const;
const HIGHER_IS_BETTER = new Set(['throughput_rps']);

export interface BenchRun {
  mode: 'closed' | 'open';
  concurrency?: number;
  rate?: number;
  batch: number;
  requests: number;
  seconds: number;
  throughputRps: number;
  rowsPerSecond: number;
  /** Null when no request succeeded: failed requests are not latency samples. */
  latencyMs: LatencySummary | null;
  /** reasons: failed requests by distinct reason, most frequent first. */
  errors: { count: number; rate: number; byKind: Record<string, number>; reasons: { reason: string; count: number }[] };
  server: { container: ContainerUsage | null; times: ServerSideTimes | null } | null;
  unreliable: boolean;
  unreliableReasons: string[];
}

export interface BenchGateResult extends GateResult {
  run: string;
}

export interface BenchReport {
  target: { mode: OpenedTarget['mode']; image: string | null; imageId: string | null; url: string | null; protocol: string | null };
  model: string;
  runs: BenchRun[];
  gates: BenchGateResult[];
  passed: boolean;
  seconds: number;
}

export const runLabel = (run: Pick<BenchRun, 'mode' | 'concurrency' | 'rate' | 'batch'>) =>
  run.mode === 'closed' ? `concurrency ${run.concurrency}, batch ${run.batch}` : `rate ${run.rate}/s, batch ${run.batch}`;

/** A run's gateable metrics; latencies are null when no request succeeded, and a gate on null fails. */
export function runMetrics(run: BenchRun): Record<string, number | null> {
  const latency = run.latencyMs;
  return {
    p50_ms: latency?.p50 ?? null,
    p90_ms: latency?.p90 ?? null,
    p95_ms: latency?.p95 ?? null,
    p99_ms: latency?.p99 ?? null,
    max_ms: latency?.max ?? null,
    mean_ms: latency?.mean ?? null,
    throughput_rps: run.throughputRps,
    error_rate: run.errors.rate,
  };
}

/** The worker script, from src/ (tests) and dist/ (installed) alike. */
const WORKER = new URL('../../dist/bench/worker.js', import.meta.url);

async function remoteLoad(target: LoadTarget, plan: LoadPlan, workers: number): Promise<LoadOutcome> {
  const share = (total: number, i: number) => Math.floor(total / workers) + (i < total % workers ? 1 : 0);
  const plans = Array.from({ length: workers }, (_, i): LoadPlan => ({
    ...plan,
    concurrency: plan.concurrency !== undefined ? share(plan.concurrency, i) : undefined,
    rate: plan.rate !== undefined ? plan.rate / workers : undefined,
    requests: plan.requests !== undefined ? share(plan.requests, i) : undefined,
  })).filter((p) => p.mode === 'open' || (p.concurrency ?? 0) > 0);
  const results = await Promise.all(
    plans.map(
      (p) =>
        // The worker sends its histogram encoded: a histogram object does not cross threads.
        new Promise<Omit<LoadOutcome, 'histogram'> & { histogram: string }>((resolve, reject) => {
          const worker = new Worker(WORKER, { workerData: { target, plan: p } satisfies WorkerJob });
          worker.once('message', resolve);
          worker.once('error', reject);
          worker.once('exit', (code) => code !== 0 && reject(new Error(`load generator thread exited with ${code}`)));
        }),
    ),
  );
  const histogram = createLatencyHistogram();
  const errorsByKind: Record<string, number> = {};
  const reasons: Record<string, number> = {};
  for (const r of results) {
    const part = decodeFromCompressedBase64(r.histogram);
    histogram.add(part);
    part.destroy();
    for (const [kind, n] of Object.entries(r.errorsByKind)) errorsByKind[kind] = (errorsByKind[kind] ?? 0) + n;
    for (const [reason, n] of Object.entries(r.reasons)) tallyReason(reasons, reason, n);
  }
  return {
    histogram,
    requests: results.reduce((n, r) => n + r.requests, 0),
    errors: results.reduce((n, r) => n + r.errors, 0),
    errorsByKind,
    reasons,
    seconds: Math.max(...results.map((r) => r.seconds)),
    sendLagP99Ms: Math.max(...results.map((r) => r.sendLagP99Ms)),
    eventLoopUtilization: Math.max(...results.map((r) => r.eventLoopUtilization)),
  };
}

/** Requests built once, before the run, in the protocol the target's predictor chose; undefined in-process. */
function loadTarget(target: OpenedTarget, inputs: OpenedTarget['predictor']['inputs'], feeds: Tensors[]): LoadTarget | undefined {
  if (target.mode === 'local') return undefined;
  if (target.predictor.protocol === 'grpc') {
    const serialize = (inferenceProto()['inference.GRPCInferenceService'] as Record<string, { requestSerialize: (m: unknown) => Buffer }>).ModelInfer
      .requestSerialize;
    return {
      kind: 'grpc',
      address: target.grpcAddress!,
      messages: feeds.map((f) => serialize(encodeGrpcRequest(target.modelName, inputs, f))),
      security: { ...target.security, secure: Boolean(target.grpcSecure) },
    };
  }
  const url = `${target.url!.replace(/\/$/, '')}/v2/models/${encodeURIComponent(target.modelName)}/infer`;
  const auth = authHeaders(target.security);
  const requests = feeds.map((f) => {
    const request = requestBody(inputs, f, target.predictor.protocol === 'rest-binary');
    return { ...request, headers: { ...request.headers, ...auth } };
  });
  return { kind: 'http', url, requests, tls: tlsConnectOptions(target.security) };
}

function localLoad(target: OpenedTarget, feeds: Tensors[], plan: LoadPlan): Promise<LoadOutcome> {
  return runLoad(plan, async (i) => {
    try {
      await target.predictor.predict(feeds[i % feeds.length]);
      return null;
    } catch (error) {
      return { kind: error instanceof ModelRunError ? 'inference_error' : 'client_error', message: errorMessage(error) };
    }
  });
}

export interface RunBenchOptions {
  cwd: string;
  projectDir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  /** Where the model runs (an image, a server already running, or in-process), and which. */
  target: TargetOptions;
  /** Closed-loop runs at these concurrencies; with neither these nor `rates`, bench.concurrency and bench.rates. */
  concurrencies?: number[];
  /** Open-loop runs at these arrival rates, in requests a second. */
  rates?: number[];
  /** Rows per request: every load is run at each (default: bench.batch). */
  batchSizes?: number[];
  /** How long each run lasts (default: bench.durationSeconds); unused when `requestsPerRun` is given. */
  durationMs?: number;
  /** Each run sends this many requests instead of lasting a duration. */
  requestsPerRun?: number;
  /** Load before each run that is not counted (default: bench.warmupSeconds). */
  warmupMs?: number;
  /** Load generator threads (default: bench.workers). */
  loadWorkers?: number;
  /** Send rows of this holdout (relative to cwd), and for an .npy one its labels file, instead of generated inputs. */
  holdoutFile?: string;
  labelsFile?: string;
  /** Generated inputs: full shapes as NAME:D1,D2 (over model.shapes), and what they hold (over model.inputData). */
  inputShapes?: string[];
  inputData?: string;
  /** Gates beyond bench.gates. */
  gates: GateSpec[];
  /** An earlier `mlops bench --json` report (relative to cwd) that these runs may not regress from. */
  baselineFile?: string;
  onRun?: (label: string) => void;
  /** The model whose folder says how images and texts become tensors, when the one measured has none beside it (an optimized copy). */
  processingFrom?: string;
}

/** The loads to run and how to judge them: the options over bench's config, each checked (where the model runs is not read). */
export async function planBench(options: Omit<RunBenchOptions, 'target'>) {
  const settings = options.config.bench;
  const concurrencies = options.concurrencies ?? (options.rates ? [] : settings.concurrency);
  const rates = options.rates ?? (options.concurrencies ? [] : settings.rates);
  if (concurrencies.length + rates.length === 0)
    throw inputError('nothing to run: no concurrency and no rate given', 'pass --concurrency 1,8 or --rate 200, or set bench.concurrency');
  const gates = [...gatesFromConfig(settings.gates), ...options.gates];
  checkKnownMetrics(gates, BENCH_METRICS, 'bench');
  gates.push(...failureGates(gates, 'throughput_rps'));
  const requests = options.requestsPerRun;
  const durationMs = requests ? undefined : (options.durationMs ?? settings.durationSeconds * 1000);
  const warmupMs = options.warmupMs ?? settings.warmupSeconds * 1000;
  return {
    batches: options.batchSizes ?? settings.batch,
    loads: [
      ...concurrencies.map((concurrency): LoadPlan => ({ mode: 'closed', concurrency, durationMs, requests, warmupMs })),
      ...rates.map((rate): LoadPlan => ({ mode: 'open', rate, durationMs, requests, warmupMs })),
    ],
    gates,
    baseline: options.baselineFile ? await readBaseline(options.cwd, options.baselineFile) : undefined,
    workers: options.loadWorkers ?? settings.workers,
  };
}

export type BenchPlan = Awaited<ReturnType<typeof planBench>>;

/** Benchmarks the model where it runs; `checked` is the plan planBench made of these options, when the caller made it first. */
export async function runBench(options: RunBenchOptions, checked?: BenchPlan): Promise<BenchReport> {
  const started = performance.now();
  const { config } = options;
  const settings = config.bench;
  const plan = checked ?? (await planBench(options));
  const target = await openTarget({ target: options.target, cwd: options.cwd, projectDir: options.projectDir, config, env: options.env, purpose: 'bench' });
  try {
    const inputs = target.predictor.inputs;
    const fixed = inputs[0]?.shape[0];
    if (fixed !== undefined && fixed > 0 && plan.batches.some((b) => b !== fixed)) {
      throw inputError(`the model has a fixed batch size of ${fixed}; --batch must be ${fixed}`);
    }
    const docker = target.container ? await connectDocker(options.env) : undefined;
    let sample: HoldoutRow[] | undefined;
    let generated: SampleInputs | undefined;
    if (options.holdoutFile) {
      const holdout = await openHoldout({
        cwd: options.cwd,
        holdout: options.holdoutFile,
        labels: options.labelsFile,
        inputs,
        label: config.test.label,
        features: config.test.features,
        model: { ...config.model, path: options.processingFrom ?? target.modelPath },
      });
      sample = [];
      for await (const row of holdout.rows()) if (sample.push(row) >= 1000) break;
      if (sample.length === 0) throw inputError(`${options.holdoutFile} has no rows`, 'the holdout needs at least one data row');
    } else {
      // Every dynamic dimension is sized, and the data file read, before a request is sent.
      const sampling = sampleSettings(config.model, { projectDir: options.projectDir, cwd: options.cwd }, settings.seed, {
        shape: options.inputShapes,
        inputData: options.inputData,
      });
      generated = await openSampleInputs(inputs, { ...sampling, ranges: await imageRanges(docker, target) }, options.cwd);
    }
    const runs: BenchRun[] = [];
    for (const batch of plan.batches) {
      const feeds = Array.from({ length: PAYLOADS }, (_, i) => (sample ? holdoutFeeds(inputs, sample, batch, i) : generated!.feeds(batch, i)));
      const remote = loadTarget(target, inputs, feeds);
      for (const load of plan.loads) {
        const label = runLabel({ mode: load.mode, concurrency: load.concurrency, rate: load.rate, batch });
        options.onRun?.(label);
        const before = target.url ? await scrapeCounters(target.url, target.security, target.modelName) : null;
        const usage = docker && target.container ? await sampleContainerUsage(docker, target.container.id) : undefined;
        const outcome = remote ? await remoteLoad(remote, load, plan.workers) : await localLoad(target, feeds, load);
        const container = usage?.stop() ?? null;
        const after = target.url ? await scrapeCounters(target.url, target.security, target.modelName) : null;
        runs.push(toRun(load, batch, outcome, remote ? { container, times: before && after ? serverTimes(before, after) : null } : null));
        outcome.histogram.destroy();
      }
    }
    const gates: BenchGateResult[] = runs.flatMap((run) => evaluateGates(plan.gates, runMetrics(run)).map((g) => ({ ...g, run: runLabel(run) })));
    if (plan.baseline) gates.push(...regressionGates(runs, plan.baseline, settings.regression));
    return {
      target: {
        mode: target.mode,
        image: target.image ?? null,
        imageId: target.container?.imageId ?? null,
        url: target.mode === 'url' ? (target.url ?? (target.grpcAddress ? `grpc://${target.grpcAddress}` : null)) : null,
        protocol: target.predictor.protocol ?? null,
      },
      model: target.modelName,
      runs,
      gates,
      passed: gates.every((g) => g.passed),
      seconds: Math.round((performance.now() - started) / 10) / 100,
    };
  } finally {
    await target.close();
  }
}

/** The reference ranges of the image's baked-in profile, when it has one with data; else the datatypes' usual ranges. */
async function imageRanges(docker: Docker | undefined, target: OpenedTarget): Promise<Record<string, ValueRange> | undefined> {
  if (!docker || !target.container) return undefined;
  const file = await copyFromContainer(docker, target.container.id, PROFILE_IMAGE_PATH).catch(() => undefined);
  if (!file) return undefined;
  try {
    return referenceRanges(JSON.parse(await readFile(file, 'utf8')) as ReferenceProfile);
  } catch {
    return undefined;
  } finally {
    await rm(path.dirname(file), { recursive: true, force: true });
  }
}

function toRun(plan: LoadPlan, batch: number, outcome: LoadOutcome, server: BenchRun['server']): BenchRun {
  const ok = outcome.requests - outcome.errors;
  const reasons: string[] = [];
  if (outcome.eventLoopUtilization > 0.95)
    reasons.push(`the load generator's thread was ${Math.round(outcome.eventLoopUtilization * 100)}% busy (saturated); add --workers`);
  if (plan.mode === 'open' && outcome.sendLagP99Ms > 5)
    reasons.push(`the load generator fell behind its schedule (p99 send lag ${outcome.sendLagP99Ms.toFixed(1)} ms)`);
  if (outcome.errorsByKind.client_overload) reasons.push(`${outcome.errorsByKind.client_overload} requests were dropped: too many outstanding`);
  return {
    mode: plan.mode,
    ...(plan.mode === 'closed' ? { concurrency: plan.concurrency } : { rate: plan.rate }),
    batch,
    requests: outcome.requests,
    seconds: Math.round(outcome.seconds * 1000) / 1000,
    throughputRps: Math.round((ok / outcome.seconds) * 10) / 10,
    rowsPerSecond: Math.round((ok * batch) / outcome.seconds),
    latencyMs: summarize(outcome.histogram),
    errors: {
      count: outcome.errors,
      // No request at all is not a clean run: it is a run that showed nothing.
      rate: outcome.requests ? outcome.errors / outcome.requests : 1,
      byKind: outcome.errorsByKind,
      reasons: Object.entries(outcome.reasons)
        .map(([reason, count]) => ({ reason, count }))
        .sort((a, b) => b.count - a.count),
    },
    server,
    unreliable: reasons.length > 0,
    unreliableReasons: reasons,
  };
}

async function readBaseline(cwd: string, file: string): Promise<BenchRun[]> {
  let parsed: { runs?: BenchRun[] };
  try {
    parsed = JSON.parse(await readFile(path.resolve(cwd, file), 'utf8')) as { runs?: BenchRun[] };
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw inputError(`--baseline ${file}: ${missing ? 'file not found' : 'not valid JSON'}`, 'pass a report written by `mlops bench --json`');
  }
  if (!Array.isArray(parsed.runs)) throw inputError(`--baseline ${file}: no "runs" list`, 'pass a report written by `mlops bench --json`');
  return parsed.runs;
}

/** Each run against the baseline's run with the same load and batch: at most `tolerance` worse. */
function regressionGates(runs: BenchRun[], baseline: BenchRun[], regression: Config['bench']['regression']): BenchGateResult[] {
  checkKnownMetrics(
    regression.metrics.map((metric) => ({ metric, op: 'max_regression', threshold: 0 })),
    BENCH_METRICS,
    'bench.regression.metrics',
  );
  const out: BenchGateResult[] = [];
  for (const run of runs) {
    const before = baseline.find((b) => b.mode === run.mode && b.batch === run.batch && b.concurrency === run.concurrency && b.rate === run.rate);
    if (!before) continue;
    const now = runMetrics(run);
    const then = runMetrics(before);
    for (const metric of regression.metrics) {
      const value = now[metric];
      const was = then[metric];
      // A metric this run could not measure (every request failed) is a regression; one the baseline lacks cannot be compared.
      if (was === null || was === undefined) continue;
      const worse = value === null ? Infinity : HIGHER_IS_BETTER.has(metric) ? (was - value) / was : (value - was) / (was || 1e-9);
      out.push({
        metric,
        op: 'max_regression',
        threshold: regression.tolerance,
        value,
        baseline: was,
        passed: worse <= regression.tolerance,
        run: runLabel(run),
      });
    }
  }
  return out;
}
