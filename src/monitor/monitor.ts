/**
 * `mlops monitor`: gets live counts (a target's replicas, servers by URL, or
 * Prometheus), compares them with the reference profile, and applies the gates.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';
import type { Config } from '../config/defaults.js';
import { lastBuildReference } from '../config/models.js';
import { ExitCode, inputError, isMlopsError } from '../errors.js';
import type { GateResult, GateSpec } from '../metrics/gates.js';
import { targetInferenceLogs, targetReplicas } from '../targets/deploy.js';
import { readLabels } from './labels.js';
import { qualityGates, runQuality, type LogSource, type QualityReport, type TimeRange } from './quality.js';
import type { Runner } from '../targets/exec.js';
import { assessDrift, type DriftAssessment } from './compare.js';
import { gatesFromConfig } from '../metrics/gates.js';
import { prometheusRules } from './alert-rules.js';
import { grafanaDashboard } from './dashboard.js';
import { fetchVersions, fromPrometheus, fromServers, readProfileFile, type LiveSource } from './sources.js';
import { resolveClientSecurity, type ClientSecurity, type ClientSecurityFiles } from '../protocol/client-security.js';

/** A reference profile, read: the profile and its file's sha256. */
export type LoadedReference = Awaited<ReturnType<typeof readProfileFile>>;

/** The reference profile: the file given (against cwd), else the last build's (this model's, of several). */
export async function readReference(options: { cwd: string; projectDir: string; file?: string; modelOfSeveral?: string }): Promise<LoadedReference> {
  const last = lastBuildReference(options.modelOfSeveral);
  const file = options.file ? path.resolve(options.cwd, options.file) : path.join(options.projectDir, last.relative);
  return await readProfileFile(file, options.file ?? last.shown);
}

/** Live counts read from servers: each one's own profile counters. */
interface ServerTraffic {
  /** Each server's counts over its last monitor.windowRows rows; false: every row since it started. */
  window: boolean;
  /** The files the client's credentials come from, read once the servers are known. */
  credentials: ClientSecurityFiles;
}

/** Every replica of a deployed target, summed. */
export interface TargetTraffic extends ServerTraffic {
  kind: 'target';
  target: string;
}

/** Servers already running, by their REST bases (http:// or https://), summed. */
export interface UrlTraffic extends ServerTraffic {
  kind: 'url';
  urls: string[];
}

/** The profile counters of every server, summed through the Prometheus HTTP API over a range; only the reference's series count. */
export interface PrometheusTraffic {
  kind: 'prometheus';
  url: string;
  reference: LoadedReference;
  /** A Prometheus range, like 30m, 1h or 7d. */
  range: string;
}

/** Where monitor reads live counts. */
export type LiveTraffic = TargetTraffic | UrlTraffic | PrometheusTraffic;

/** One version of a model that serves several: its own drift verdict, or (a shadow) how often it agreed with the serving answer. */
export interface VersionVerdict {
  version: string;
  role: 'serving' | 'shadow';
  weight: number;
  rows: number;
  verdict: DriftAssessment['verdict'];
  metrics: DriftAssessment['metrics'];
  gates: GateResult[];
  warning?: string;
  passed: boolean;
  /** A shadow's outcomes (agree, disagree, failed, skipped) and agreement: agree / (agree + disagree + failed), null before any. */
  shadow?: { outcomes: Record<string, number>; agreement: number | null };
}

export interface MonitorReport extends DriftAssessment {
  source: { kind: 'target' | 'url' | 'prometheus'; from: string[]; span: string; target?: string };
  /** A model with several versions side by side: each judged on its own traffic (the verdict above is the largest weight's); shadows by agreement. */
  versions?: VersionVerdict[];
  model: LiveSource['model'];
  reference: { sha256: string | null; file: string | null; rows: number | null; bins: number; features: number; warnings: string[] };
  settings: { featurePsi: number; minRows: number; strict: boolean };
  gates: GateResult[];
}

export interface RunMonitorOptions {
  cwd: string;
  projectDir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  traffic: LiveTraffic;
  /** The drift gates, checked (driftGates): monitor.gates' drift metrics, or the defaults, and any more. */
  gates: GateSpec[];
  /** Too few rows, or no reference, fails instead of warning. */
  strict: boolean;
  /** The model to judge on a server that serves several: wins over model.name. */
  modelName?: string;
  log: (line: string) => void;
  /** Tests of remote targets pass a runner that answers as kubectl would. */
  runner?: Runner;
}

async function liveSource(
  options: RunMonitorOptions,
): Promise<{ live: LiveSource; kind: MonitorReport['source']['kind']; security?: ClientSecurity; versions?: VersionVerdict[] }> {
  const { traffic, config } = options;
  const modelName = options.modelName || config.model.name || undefined;
  if (traffic.kind === 'prometheus') return { live: await fromPrometheus(traffic.url, traffic.reference, traffic.range), kind: 'prometheus' };
  if (traffic.kind === 'url') {
    const security = resolveClientSecurity(traffic.credentials, options.env, options.cwd);
    return { live: await fromServers(traffic.urls, modelName, traffic.window, security), kind: 'url', security };
  }
  const replicas = await targetReplicas({
    cwd: options.cwd,
    projectDir: options.projectDir,
    config,
    env: options.env,
    target: traffic.target,
    dryRun: false,
    log: options.log,
    runner: options.runner,
  });
  try {
    const security = { ...resolveClientSecurity(traffic.credentials, options.env, options.cwd), ...(replicas.loopbackTls ? { insecure: true } : {}) };
    const live = await fromServers(replicas.urls, modelName, traffic.window, security);
    // The replicas are only reachable while the port-forwards last: versions are read now.
    return {
      live,
      kind: 'target',
      versions: live.model ? await versionVerdicts(replicas.urls, live.model.name, traffic.window, security, options) : undefined,
    };
  } finally {
    await replicas.close();
  }
}

export async function runMonitor(options: RunMonitorOptions): Promise<MonitorReport> {
  const { config, traffic } = options;
  const source = await liveSource(options);
  const { live, kind } = source;
  const assessment = assessDrift(live.profile, live.counts, options.gates, { monitor: config.monitor, strict: options.strict });
  const versions =
    source.kind === 'target'
      ? source.versions
      : traffic.kind === 'url' && live.model
        ? await versionVerdicts(traffic.urls, live.model.name, traffic.window, source.security, options)
        : undefined;
  // Every serving version must pass; a shadow's agreement is reported, not gated (its inputs are the serving version's).
  const passed = versions ? versions.filter((v) => v.role === 'serving').every((v) => v.passed) : assessment.passed;
  return {
    ...assessment,
    passed,
    verdict: !passed && assessment.verdict === 'passed' ? 'failed' : assessment.verdict,
    ...(versions ? { versions } : {}),
    source: { kind, from: live.from, span: live.span, ...(traffic.kind === 'target' && traffic.target ? { target: traffic.target } : {}) },
    model: live.model,
    reference: {
      sha256: live.referenceSha256,
      file: live.profile.source?.file ?? null,
      rows: live.profile.source?.rows ?? null,
      bins: live.profile.bins,
      features: live.profile.features.length,
      warnings: live.profile.warnings,
    },
    settings: { featurePsi: config.monitor.featurePsi, minRows: config.monitor.minRows, strict: options.strict },
  };
}

/** Each version of a model that has several (undefined for one): drift per serving version, agreement per shadow. */
async function versionVerdicts(
  urls: string[],
  model: string,
  window: boolean,
  security: ClientSecurity | undefined,
  options: RunMonitorOptions,
): Promise<VersionVerdict[] | undefined> {
  const held = await fetchVersions(urls, model, security);
  if (held.length < 2) return undefined;
  const settings = { monitor: options.config.monitor, strict: options.strict };
  const verdicts: VersionVerdict[] = [];
  for (const v of held) {
    const base = { version: v.version, role: v.role, weight: v.weight };
    if (v.role === 'shadow') {
      const { agree = 0, disagree = 0, failed = 0 } = v.outcomes;
      const judged = agree + disagree + failed;
      verdicts.push({
        ...base,
        rows: 0,
        verdict: 'passed',
        metrics: {},
        gates: [],
        passed: true,
        shadow: { outcomes: v.outcomes, agreement: judged > 0 ? agree / judged : null },
      });
      continue;
    }
    try {
      const live = await fromServers(urls, model, window, security, v.version);
      const a = assessDrift(live.profile, live.counts, options.gates, settings);
      verdicts.push({
        ...base,
        rows: a.rows,
        verdict: a.verdict,
        metrics: a.metrics,
        gates: a.gates,
        ...(a.warning ? { warning: a.warning } : {}),
        passed: a.passed,
      });
    } catch (error) {
      // A serving version without a profile of its own cannot be judged: that is not a pass.
      if (!isMlopsError(error) || error.exitCode !== ExitCode.badInput) throw error;
      verdicts.push({ ...base, rows: 0, verdict: 'no-reference', metrics: {}, gates: [], warning: error.message, passed: !settings.strict });
    }
  }
  return verdicts;
}

export const EMITTABLE = ['prometheus-rules', 'grafana-dashboard'] as const;

/** What `--emit` generates: Prometheus alerting rules over a range (like 1h), or a Grafana dashboard. */
export type Emit = { kind: 'prometheus-rules'; window: string } | { kind: 'grafana-dashboard' };

export interface EmitOptions {
  config: Config;
  reference: LoadedReference;
  emit: Emit;
}

/** `--emit`: what the stack that watches the servers needs, generated from the reference profile. */
export function emitFromProfile(options: EmitOptions): { emitted: string; reference: string; content: string } {
  const { config, reference, emit } = options;
  // The latency alert fires where the release's own bench gate would have failed.
  const p99Gate = config.bench.gates.p99_ms ? gatesFromConfig({ p99_ms: config.bench.gates.p99_ms })[0].threshold : undefined;
  const modelName = config.model.name || reference.profile.model.name;
  if (emit.kind === 'grafana-dashboard') {
    const dashboard = grafanaDashboard({ modelName, profile: reference.profile, referenceSha256: reference.sha256 });
    return { emitted: emit.kind, reference: reference.sha256.slice(0, 12), content: JSON.stringify(dashboard, null, 2) + '\n' };
  }
  const content = prometheusRules({
    modelName,
    profile: reference.profile,
    referenceSha256: reference.sha256,
    featurePsi: config.monitor.featurePsi,
    p99Seconds: (p99Gate ?? 1000) / 1000,
    errorRate: 0.01,
    window: emit.window,
  });
  return { emitted: emit.kind, reference: reference.sha256.slice(0, 12), content };
}

function* fileLines(text: string): Iterable<string> {
  let start = 0;
  for (let end = text.indexOf('\n'); end !== -1; end = text.indexOf('\n', start)) {
    yield text.slice(start, end);
    start = end + 1;
  }
  if (start < text.length) yield text.slice(start);
}

async function logFile(cwd: string, file: string): Promise<LogSource> {
  const full = path.resolve(cwd, file);
  const info = await stat(full).catch(() => undefined);
  if (!info?.isFile()) throw inputError(`--log ${file}: file not found`, "pass the file sink's file, or save the log with docker logs or kubectl logs");
  return { from: file, lines: linesOf(full) };
}

/** Opened when first read: a readline interface opened early loses the lines it reads before anyone iterates it. */
async function* linesOf(file: string): AsyncGenerator<string> {
  yield* readline.createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
}

export interface RunLabelledOptions {
  cwd: string;
  projectDir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  /** The truth: a CSV or JSONL of ids and labels (a path against cwd, which the report names as given). */
  labelsFile: string;
  /** Where the inference log is read: the deployed target's replicas, or files (against cwd). */
  logs: { kind: 'target'; target: string } | { kind: 'files'; files: string[] };
  /** Only predictions logged in this range (epoch milliseconds). */
  range: TimeRange;
  /** Gates beyond monitor.gates' quality metrics. */
  gates: GateSpec[];
  /** A `mlops test --json` report (against cwd) to hold live quality to; default: the version's stamped test metrics. */
  baselineFile?: string;
  /** Too few rows fails instead of warning. */
  strict: boolean;
  log: (line: string) => void;
  /** Tests of remote targets pass a runner that answers as kubectl would. */
  runner?: Runner;
  /** One model of a config of several: only its records are joined. */
  modelOfSeveral?: string;
}

/** `--labels`: live quality from the inference log (files, or the target's own log) and the labels that came later. */
export async function runLabelled(options: RunLabelledOptions): Promise<QualityReport> {
  const { config, range, labelsFile } = options;
  // Gates and labels are checked before any log is read.
  qualityGates(config, options.gates);
  const labels = await readLabels(path.resolve(options.cwd, labelsFile), labelsFile);
  const logs =
    options.logs.kind === 'target'
      ? await targetLogs(options, options.logs.target)
      : await Promise.all(options.logs.files.map((file) => logFile(options.cwd, file)));
  const report = await runQuality({
    labels,
    logs,
    range,
    config,
    projectDir: options.projectDir,
    env: options.env,
    gates: options.gates,
    cwd: options.cwd,
    baselineFile: options.baselineFile,
    strict: options.strict,
    log: options.log,
    model: options.modelOfSeveral,
  });
  return {
    ...report,
    source: {
      logs: logs.map((l) => l.from),
      labels: labelsFile,
      since: range.since !== undefined ? new Date(range.since).toISOString() : null,
      until: range.until !== undefined ? new Date(range.until).toISOString() : null,
      ...(options.logs.kind === 'target' ? { target: options.logs.target } : {}),
    },
  };
}

/** The inference log of a deployed target's replicas, from the start of the range. */
async function targetLogs(options: RunLabelledOptions, target: string): Promise<LogSource[]> {
  const texts = await targetInferenceLogs(
    {
      cwd: options.cwd,
      projectDir: options.projectDir,
      config: options.config,
      env: options.env,
      target,
      dryRun: false,
      log: options.log,
      runner: options.runner,
    },
    options.range.since !== undefined ? new Date(options.range.since) : undefined,
  );
  return texts.map((t) => ({ from: t.from, lines: fileLines(t.text) }));
}
