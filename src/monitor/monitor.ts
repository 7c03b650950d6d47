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
import type { GateResult } from '../metrics/gates.js';
import { targetInferenceLogs, targetReplicas } from '../targets/deploy.js';
import { readLabels } from './labels.js';
import { parseTime, qualityGates, runQuality, type LogSource, type QualityReport } from './quality.js';
import type { Runner } from '../targets/exec.js';
import { assessDrift, driftGates, type DriftAssessment } from './compare.js';
import { gatesFromConfig } from '../metrics/gates.js';
import { prometheusRules } from './alert-rules.js';
import { grafanaDashboard } from './dashboard.js';
import { fetchVersions, fromPrometheus, fromServers, parseSince, readProfileFile, type LiveSource } from './sources.js';
import { resolveClientSecurity, type ClientSecurity, type ClientSecurityFlags } from '../protocol/client-security.js';

export interface MonitorFlags extends ClientSecurityFlags {
  target?: string;
  url: string[];
  prometheus?: string;
  since?: string;
  /** Counts since each server started, instead of its sliding window. */
  all?: boolean;
  reference?: string;
  gate: string[];
  strict?: boolean;
  /** Generate a file from the reference profile instead of judging traffic. */
  emit?: string;
  /** Live quality: the truth, joined with the inference log. */
  labels?: string;
  log: string[];
  until?: string;
  baseline?: string;
  /** The model to judge on a server that serves several: wins over model.name. */
  modelName?: string;
}

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
  flags: MonitorFlags;
  log: (line: string) => void;
  /** Tests of remote targets pass a runner that answers as kubectl would. */
  runner?: Runner;
  /** One model of a config of several: the last build's reference profile is this model's. */
  modelOfSeveral?: string;
}

async function liveSource(
  options: RunMonitorOptions,
): Promise<{ live: LiveSource; kind: MonitorReport['source']['kind']; urls?: string[]; security?: ClientSecurity; versions?: VersionVerdict[] }> {
  const { flags, config } = options;
  if (flags.until !== undefined || flags.baseline !== undefined || flags.log.length > 0)
    throw inputError('--until, --baseline and --log go with --labels', 'pass --labels <file> to judge live quality');
  const chosen = [flags.target !== undefined, flags.url.length > 0, flags.prometheus !== undefined].filter(Boolean).length;
  if (chosen !== 1)
    throw inputError(
      chosen === 0 ? 'no live traffic to judge' : '--target, --url and --prometheus exclude each other',
      'pass one of --target <name>, --url <base> (repeatable) or --prometheus <url>',
    );
  if (flags.since !== undefined && !flags.prometheus)
    throw inputError('--since goes with --prometheus', 'servers keep their last monitor.windowRows rows; --all takes everything since they started');
  if (flags.all && flags.prometheus) throw inputError('--all goes with --target or --url', 'with --prometheus, --since sets the range');
  const window = !flags.all;
  const modelName = flags.modelName || config.model.name || undefined;
  if (flags.prometheus !== undefined) {
    const last = lastBuildReference(options.modelOfSeveral);
    const file = flags.reference ? path.resolve(options.cwd, flags.reference) : path.join(options.projectDir, last.relative);
    const reference = await readProfileFile(file, flags.reference ?? last.shown);
    return { live: await fromPrometheus(flags.prometheus, reference, parseSince(flags.since ?? '1h')), kind: 'prometheus' };
  }
  if (flags.reference) throw inputError('--reference goes with --prometheus', "a server's profile document carries its own reference");
  if (flags.url.length > 0) {
    for (const url of flags.url)
      if (!/^https?:\/\//.test(url)) throw inputError(`--url ${url}: expected http:// or https://`, 'pass the server base, e.g. --url http://127.0.0.1:8080');
    const security = resolveClientSecurity(flags, options.env, options.cwd);
    return { live: await fromServers(flags.url, modelName, window, security), kind: 'url', urls: flags.url, security };
  }
  const replicas = await targetReplicas({
    cwd: options.cwd,
    projectDir: options.projectDir,
    config,
    env: options.env,
    target: flags.target,
    dryRun: false,
    log: options.log,
    runner: options.runner,
  });
  try {
    const security = { ...resolveClientSecurity(flags, options.env, options.cwd), ...(replicas.loopbackTls ? { insecure: true } : {}) };
    const live = await fromServers(replicas.urls, modelName, window, security);
    // The replicas are only reachable while the port-forwards last: versions are read now.
    return { live, kind: 'target', versions: live.model ? await versionVerdicts(replicas.urls, live.model.name, window, security, options) : undefined };
  } finally {
    await replicas.close();
  }
}

export async function runMonitor(options: RunMonitorOptions): Promise<MonitorReport> {
  const { config, flags } = options;
  const settings = { monitor: config.monitor, gateFlags: flags.gate, strict: Boolean(flags.strict) };
  // Gates are checked before anything is fetched: a typo fails at once.
  const specs = driftGates(settings);
  const source = await liveSource(options);
  const { live, kind } = source;
  const assessment = assessDrift(live.profile, live.counts, specs, settings);
  const versions =
    source.kind === 'target'
      ? source.versions
      : source.urls && live.model
        ? await versionVerdicts(source.urls, live.model.name, !flags.all, source.security, options)
        : undefined;
  // Every serving version must pass; a shadow's agreement is reported, not gated (its inputs are the serving version's).
  const passed = versions ? versions.filter((v) => v.role === 'serving').every((v) => v.passed) : assessment.passed;
  return {
    ...assessment,
    passed,
    verdict: !passed && assessment.verdict === 'passed' ? 'failed' : assessment.verdict,
    ...(versions ? { versions } : {}),
    source: { kind, from: live.from, span: live.span, ...(flags.target ? { target: flags.target } : {}) },
    model: live.model,
    reference: {
      sha256: live.referenceSha256,
      file: live.profile.source?.file ?? null,
      rows: live.profile.source?.rows ?? null,
      bins: live.profile.bins,
      features: live.profile.features.length,
      warnings: live.profile.warnings,
    },
    settings: { featurePsi: config.monitor.featurePsi, minRows: config.monitor.minRows, strict: settings.strict },
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
  const settings = { monitor: options.config.monitor, gateFlags: options.flags.gate, strict: Boolean(options.flags.strict) };
  const specs = driftGates(settings);
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
      const a = assessDrift(live.profile, live.counts, specs, settings);
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

/** `--emit`: what the stack that watches the servers needs, generated from the reference profile. */
export async function emitFromProfile(options: RunMonitorOptions): Promise<{ emitted: string; reference: string; content: string }> {
  const { flags, config } = options;
  if (!(EMITTABLE as readonly string[]).includes(flags.emit!))
    throw inputError(`--emit ${flags.emit}: expected ${EMITTABLE.join(' or ')}`, 'see `mlops monitor --help`');
  if (flags.target || flags.url.length > 0 || flags.prometheus || flags.all || flags.strict || flags.gate.length > 0) {
    throw inputError('--emit reads no live traffic: drop --target, --url, --prometheus, --all, --strict and --gate');
  }
  const last = lastBuildReference(options.modelOfSeveral);
  const file = flags.reference ? path.resolve(options.cwd, flags.reference) : path.join(options.projectDir, last.relative);
  const shown = flags.reference ?? last.shown;
  const reference = await readProfileFile(file, shown);
  // The latency alert fires where the release's own bench gate would have failed.
  const p99Gate = config.bench.gates.p99_ms ? gatesFromConfig({ p99_ms: config.bench.gates.p99_ms })[0].threshold : undefined;
  const modelName = config.model.name || reference.profile.model.name;
  if (flags.emit === 'grafana-dashboard') {
    const dashboard = grafanaDashboard({ modelName, profile: reference.profile, referenceSha256: reference.sha256 });
    return { emitted: flags.emit, reference: reference.sha256.slice(0, 12), content: JSON.stringify(dashboard, null, 2) + '\n' };
  }
  const content = prometheusRules({
    modelName,
    profile: reference.profile,
    referenceSha256: reference.sha256,
    featurePsi: config.monitor.featurePsi,
    p99Seconds: (p99Gate ?? 1000) / 1000,
    errorRate: 0.01,
    window: parseSince(flags.since ?? '1h'),
  });
  return { emitted: flags.emit!, reference: reference.sha256.slice(0, 12), content };
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

/** `--labels`: live quality from the inference log (files, or the target's own log) and the labels that came later. */
export async function runLabelled(options: RunMonitorOptions): Promise<QualityReport> {
  const { flags, config } = options;
  const conflicting = [
    flags.url.length > 0 && '--url',
    flags.prometheus !== undefined && '--prometheus',
    flags.all && '--all',
    flags.reference !== undefined && '--reference',
  ].filter(Boolean);
  if (conflicting.length > 0)
    throw inputError(
      `--labels reads the inference log, not live counts: drop ${conflicting.join(', ')}`,
      'give the log with --log <file>, or --target to read it from the deployed replicas',
    );
  if ((flags.target !== undefined) === flags.log.length > 0)
    throw inputError(
      flags.target ? '--target and --log exclude each other' : 'no inference log to join the labels with',
      'pass --log <file> (repeatable) or --target <name>',
    );
  const now = Date.now();
  const range = {
    since: flags.since !== undefined ? parseTime(flags.since, '--since', now) : undefined,
    until: flags.until !== undefined ? parseTime(flags.until, '--until', now) : undefined,
  };
  if (range.since !== undefined && range.until !== undefined && range.since >= range.until)
    throw inputError(`--since ${flags.since} is not before --until ${flags.until}`, 'the range runs from --since (earlier) to --until (later)');
  // Gates and labels are checked before any log is read.
  qualityGates(config, flags.gate);
  const labels = await readLabels(path.resolve(options.cwd, flags.labels!), flags.labels!);
  let logs: LogSource[];
  if (flags.target !== undefined) {
    const texts = await targetInferenceLogs(
      {
        cwd: options.cwd,
        projectDir: options.projectDir,
        config,
        env: options.env,
        target: flags.target,
        dryRun: false,
        log: options.log,
        runner: options.runner,
      },
      range.since !== undefined ? new Date(range.since) : undefined,
    );
    logs = texts.map((t) => ({ from: t.from, lines: fileLines(t.text) }));
  } else {
    logs = await Promise.all(flags.log.map((file) => logFile(options.cwd, file)));
  }
  const report = await runQuality({
    labels,
    logs,
    range,
    config,
    projectDir: options.projectDir,
    env: options.env,
    gateFlags: flags.gate,
    cwd: options.cwd,
    baselineFile: flags.baseline,
    strict: Boolean(flags.strict),
    log: options.log,
    model: options.modelOfSeveral,
  });
  return {
    ...report,
    source: {
      logs: logs.map((l) => l.from),
      labels: flags.labels!,
      since: range.since !== undefined ? new Date(range.since).toISOString() : null,
      until: range.until !== undefined ? new Date(range.until).toISOString() : null,
      ...(flags.target !== undefined ? { target: flags.target } : {}),
    },
  };
}
