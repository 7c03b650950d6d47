import { decodeFromCompressedBase64, type Histogram } from 'hdr-histogram-js';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Config } from '../config/defaults.js';
import { connectDocker } from '../docker/client.js';
import { sampleContainerUsage, type ContainerUsage } from '../docker/stats.js';
import { inputError } from '../errors.js';
import { openHoldout } from '../holdout/open.js';
import type { HoldoutRow } from '../holdout/types.js';
import { checkKnownMetrics, evaluateGates, gatesFromConfig, parseGateFlag, type GateResult } from '../metrics/gates.js';
import type { Tensors } from '../model/session.js';
import { openTarget, type OpenedTarget, type TargetFlags } from '../predict/target.js';
import { encodeGrpcRequest, inferenceProto } from '../protocol/grpc.js';
import { holdoutFeeds, PAYLOADS, randomFeeds, requestBody } from './inputs.js';
import type { LoadTarget, WorkerJob } from './worker.js';
import { runLoad, type LoadOutcome, type LoadPlan } from './load.js';
import { scrapeCounters, serverTimes, type ServerSideTimes } from './server-metrics.js';
import { createLatencyHistogram, summarize, type LatencySummary } from './stats.js';

export const BENCH_METRICS = ['p50_ms', 'p90_ms', 'p95_ms', 'p99_ms', 'max_ms', 'mean_ms', 'throughput_rps', 'error_rate'] as const;
const HIGHER_IS_BETTER = new Set(['throughput_rps']);

export interface BenchFlags extends TargetFlags {
  concurrency?: number[];
  rate?: number[];
  batch?: number[];
  durationMs?: number;
  requests?: number;
  warmupMs?: number;
  workers?: number;
  holdout?: string;
  labels?: string;
  gate: string[];
  baseline?: string;
}

export interface BenchRun {
  mode: 'closed' | 'open';
  concurrency?: number;
  rate?: number;
  batch: number;
  requests: number;
  seconds: number;
  throughputRps: number;
  rowsPerSecond: number;
  latencyMs: LatencySummary;
  errors: { count: number; rate: number; byKind: Record<string, number> };
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

export function runMetrics(run: BenchRun): Record<string, number> {
  return {
    p50_ms: run.latencyMs.p50,
    p90_ms: run.latencyMs.p90,
    p95_ms: run.latencyMs.p95,
    p99_ms: run.latencyMs.p99,
    max_ms: run.latencyMs.max,
    mean_ms: run.latencyMs.mean,
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
        new Promise<{ histogram: string; requests: number; errors: number; errorsByKind: Record<string, number>; seconds: number; sendLagP99Ms: number; eventLoopUtilization: number }>(
          (resolve, reject) => {
            const worker = new Worker(WORKER, { workerData: { target, plan: p } satisfies WorkerJob });
            worker.once('message', resolve);
            worker.once('error', reject);
            worker.once('exit', (code) => code !== 0 && reject(new Error(`load generator thread exited with ${code}`)));
          },
        ),
    ),
  );
  const histogram = createLatencyHistogram();
  const errorsByKind: Record<string, number> = {};
  for (const r of results) {
    const part = decodeFromCompressedBase64(r.histogram);
    histogram.add(part);
    part.destroy();
    for (const [kind, n] of Object.entries(r.errorsByKind)) errorsByKind[kind] = (errorsByKind[kind] ?? 0) + n;
  }
  return {
    histogram,
    requests: results.reduce((n, r) => n + r.requests, 0),
    errors: results.reduce((n, r) => n + r.errors, 0),
    errorsByKind,
    seconds: Math.max(...results.map((r) => r.seconds)),
    sendLagP99Ms: Math.max(...results.map((r) => r.sendLagP99Ms)),
    eventLoopUtilization: Math.max(...results.map((r) => r.eventLoopUtilization)),
  };
}

/** Requests built once, before the run, in the protocol the target's predictor chose; undefined in-process. */
function loadTarget(target: OpenedTarget, inputs: OpenedTarget['predictor']['inputs'], feeds: Tensors[]): LoadTarget | undefined {
  if (target.mode === 'local') return undefined;
  if (target.predictor.protocol === 'grpc') {
    const serialize = (inferenceProto()['inference.GRPCInferenceService'] as Record<string, { requestSerialize: (m: unknown) => Buffer }>).ModelInfer.requestSerialize;
    return { kind: 'grpc', address: target.grpcAddress!, messages: feeds.map((f) => serialize(encodeGrpcRequest(target.modelName, inputs, f))) };
  }
  const url = `${target.url!.replace(/\/$/, '')}/v2/models/${encodeURIComponent(target.modelName)}/infer`;
  return { kind: 'http', url, requests: feeds.map((f) => requestBody(inputs, f, target.predictor.protocol === 'rest-binary')) };
}

function localLoad(target: OpenedTarget, feeds: Tensors[], plan: LoadPlan): Promise<LoadOutcome> {
  return runLoad(plan, async (i) => {
    try {
      await target.predictor.predict(feeds[i % feeds.length]);
      return null;
    } catch {
      return 'inference_error';
    }
  });
}

export interface RunBenchOptions {
  cwd: string;
  projectDir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  flags: BenchFlags;
  onRun?: (label: string) => void;
}

export async function runBench(options: RunBenchOptions): Promise<BenchReport> {
  const started = performance.now();
  const { flags, config } = options;
  const settings = config.bench;
  const concurrencies = flags.concurrency ?? (flags.rate ? [] : settings.concurrency);
  const rates = flags.rate ?? (flags.concurrency ? [] : settings.rates);
  const batches = flags.batch ?? settings.batch;
  if (concurrencies.length + rates.length === 0) throw inputError('nothing to run: no concurrency and no rate given', 'pass --concurrency 1,8 or --rate 200, or set bench.concurrency');
  const specs = [...gatesFromConfig(settings.gates), ...flags.gate.map(parseGateFlag)];
  checkKnownMetrics(specs, BENCH_METRICS, 'bench');
  const baseline = flags.baseline ? await readBaseline(options.cwd, flags.baseline) : undefined;
  const durationMs = flags.requests ? undefined : (flags.durationMs ?? settings.durationSeconds * 1000);
  const warmupMs = flags.warmupMs ?? settings.warmupSeconds * 1000;
  const workers = flags.workers ?? settings.workers;

  const target = await openTarget({ flags, cwd: options.cwd, projectDir: options.projectDir, config, env: options.env, purpose: 'bench' });
  try {
    const inputs = target.predictor.inputs;
    const fixed = inputs[0]?.shape[0];
    if (fixed !== undefined && fixed > 0 && batches.some((b) => b !== fixed)) {
      throw inputError(`the model has a fixed batch size of ${fixed}; --batch must be ${fixed}`);
    }
    let sample: HoldoutRow[] | undefined;
    if (flags.holdout) {
      const holdout = await openHoldout({ cwd: options.cwd, holdout: flags.holdout, labels: flags.labels, inputs, label: config.test.label, features: config.test.features });
      sample = [];
      for await (const row of holdout.rows()) if (sample.push(row) >= 1000) break;
      if (sample.length === 0) throw inputError(`${flags.holdout} has no rows`, 'the holdout needs at least one data row');
    }
    const docker = target.container ? await connectDocker(options.env) : undefined;
    const runs: BenchRun[] = [];
    for (const batch of batches) {
      const feeds = Array.from({ length: PAYLOADS }, (_, i) => (sample ? holdoutFeeds(inputs, sample, batch, i) : randomFeeds(inputs, batch, settings.seed + i)));
      const load = loadTarget(target, inputs, feeds);
      const plans: LoadPlan[] = [
        ...concurrencies.map((concurrency): LoadPlan => ({ mode: 'closed', concurrency, durationMs, requests: flags.requests, warmupMs })),
        ...rates.map((rate): LoadPlan => ({ mode: 'open', rate, durationMs, requests: flags.requests, warmupMs })),
      ];
      for (const plan of plans) {
        const label = runLabel({ mode: plan.mode, concurrency: plan.concurrency, rate: plan.rate, batch });
        options.onRun?.(label);
        const before = target.url ? await scrapeCounters(target.url) : null;
        const usage = docker && target.container ? await sampleContainerUsage(docker, target.container.id) : undefined;
        const outcome = load ? await remoteLoad(load, plan, workers) : await localLoad(target, feeds, plan);
        const container = usage?.stop() ?? null;
        const after = target.url ? await scrapeCounters(target.url) : null;
        runs.push(toRun(plan, batch, outcome, load ? { container, times: before && after ? serverTimes(before, after) : null } : null));
        outcome.histogram.destroy();
      }
    }
    const gates: BenchGateResult[] = runs.flatMap((run) => evaluateGates(specs, runMetrics(run)).map((g) => ({ ...g, run: runLabel(run) })));
    if (baseline) gates.push(...regressionGates(runs, baseline, settings.regression));
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

function toRun(plan: LoadPlan, batch: number, outcome: LoadOutcome, server: BenchRun['server']): BenchRun {
  const ok = outcome.requests - outcome.errors;
  const reasons: string[] = [];
  if (outcome.eventLoopUtilization > 0.95) reasons.push(`the load generator's thread was ${Math.round(outcome.eventLoopUtilization * 100)}% busy (saturated); add --workers`);
  if (plan.mode === 'open' && outcome.sendLagP99Ms > 5) reasons.push(`the load generator fell behind its schedule (p99 send lag ${outcome.sendLagP99Ms.toFixed(1)} ms)`);
  if (outcome.errorsByKind.client_overload) reasons.push(`${outcome.errorsByKind.client_overload} requests were dropped: too many outstanding`);
  return {
    mode: plan.mode,
    ...(plan.mode === 'closed' ? { concurrency: plan.concurrency } : { rate: plan.rate }),
    batch,
    requests: outcome.requests,
    seconds: Math.round(outcome.seconds * 1000) / 1000,
    throughputRps: Math.round((ok / outcome.seconds) * 10) / 10,
    rowsPerSecond: Math.round((ok * batch) / outcome.seconds),
    latencyMs: summarize(outcome.histogram as Histogram),
    errors: { count: outcome.errors, rate: outcome.requests ? outcome.errors / outcome.requests : 0, byKind: outcome.errorsByKind },
    server,
    unreliable: reasons.length > 0,
    unreliableReasons: reasons,
  };
}

async function readBaseline(cwd: string, file: string): Promise<BenchRun[]> {
  let parsed: { runs?: BenchRun[] };
  try {
    parsed = JSON.parse(await readFile(path.resolve(cwd, file), 'utf8'));
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw inputError(`--baseline ${file}: ${missing ? 'file not found' : 'not valid JSON'}`, 'pass a report written by `mlops bench --json`');
  }
  if (!Array.isArray(parsed.runs)) throw inputError(`--baseline ${file}: no "runs" list`, 'pass a report written by `mlops bench --json`');
  return parsed.runs;
}

/** Each run against the baseline's run with the same load and batch: at most `tolerance` worse. */
function regressionGates(runs: BenchRun[], baseline: BenchRun[], regression: Config['bench']['regression']): BenchGateResult[] {
  checkKnownMetrics(regression.metrics.map((metric) => ({ metric, op: 'max_regression', threshold: 0 })), BENCH_METRICS, 'bench.regression.metrics');
  const out: BenchGateResult[] = [];
  for (const run of runs) {
    const before = baseline.find((b) => b.mode === run.mode && b.batch === run.batch && b.concurrency === run.concurrency && b.rate === run.rate);
    if (!before) continue;
    const now = runMetrics(run);
    const then = runMetrics(before);
    for (const metric of regression.metrics) {
      const worse = HIGHER_IS_BETTER.has(metric) ? (then[metric] - now[metric]) / then[metric] : (now[metric] - then[metric]) / (then[metric] || 1e-9);
      out.push({ metric, op: 'max_regression', threshold: regression.tolerance, value: now[metric], baseline: then[metric], passed: worse <= regression.tolerance, run: runLabel(run) });
    }
  }
  return out;
}
