/**
 * `mlops monitor`: gets live counts (a target's replicas, servers by URL, or
 * Prometheus), compares them with the reference profile, and applies the gates.
 */
import path from 'node:path';
import type { Config } from '../config/defaults.js';
import { inputError } from '../errors.js';
import type { GateResult } from '../metrics/gates.js';
import { targetReplicas } from '../targets/deploy.js';
import type { Runner } from '../targets/exec.js';
import { assessDrift, driftGates, type DriftAssessment } from './compare.js';
import { gatesFromConfig } from '../metrics/gates.js';
import { prometheusRules } from './alert-rules.js';
import { grafanaDashboard } from './dashboard.js';
import { fromPrometheus, fromServers, parseSince, readProfileFile, type LiveSource } from './sources.js';

export interface MonitorFlags {
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
}

export interface MonitorReport extends DriftAssessment {
  source: { kind: 'target' | 'url' | 'prometheus'; from: string[]; span: string; target?: string };
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
}

async function liveSource(options: RunMonitorOptions): Promise<{ live: LiveSource; kind: MonitorReport['source']['kind'] }> {
  const { flags, config } = options;
  const chosen = [flags.target !== undefined, flags.url.length > 0, flags.prometheus !== undefined].filter(Boolean).length;
  if (chosen !== 1) throw inputError(chosen === 0 ? 'no live traffic to judge' : '--target, --url and --prometheus exclude each other', 'pass one of --target <name>, --url <base> (repeatable) or --prometheus <url>');
  if (flags.since !== undefined && !flags.prometheus) throw inputError('--since goes with --prometheus', 'servers keep their last monitor.windowRows rows; --all takes everything since they started');
  if (flags.all && flags.prometheus) throw inputError('--all goes with --target or --url', 'with --prometheus, --since sets the range');
  const window = !flags.all;
  const modelName = config.model.name || undefined;
  if (flags.prometheus !== undefined) {
    const file = flags.reference ? path.resolve(options.cwd, flags.reference) : path.join(options.projectDir, '.mlops', 'reference-profile.json');
    const reference = await readProfileFile(file, flags.reference ?? '.mlops/reference-profile.json (the last build)');
    return { live: await fromPrometheus(flags.prometheus, reference, parseSince(flags.since ?? '1h')), kind: 'prometheus' };
  }
  if (flags.reference) throw inputError('--reference goes with --prometheus', "a server's profile document carries its own reference");
  if (flags.url.length > 0) {
    for (const url of flags.url) if (!/^https?:\/\//.test(url)) throw inputError(`--url ${url}: expected http:// or https://`);
    return { live: await fromServers(flags.url, modelName, window), kind: 'url' };
  }
  const replicas = await targetReplicas({ cwd: options.cwd, projectDir: options.projectDir, config, env: options.env, target: flags.target, dryRun: false, log: options.log, runner: options.runner });
  try {
    return { live: await fromServers(replicas.urls, modelName, window), kind: 'target' };
  } finally {
    await replicas.close();
  }
}

export async function runMonitor(options: RunMonitorOptions): Promise<MonitorReport> {
  const { config, flags } = options;
  const settings = { monitor: config.monitor, gateFlags: flags.gate, strict: Boolean(flags.strict) };
  // Gates are checked before anything is fetched: a typo fails at once.
  const specs = driftGates(settings);
  const { live, kind } = await liveSource(options);
  const assessment = assessDrift(live.profile, live.counts, specs, settings);
  return {
    ...assessment,
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

export const EMITTABLE = ['prometheus-rules', 'grafana-dashboard'] as const;

/** `--emit`: what the stack that watches the servers needs, generated from the reference profile. */
export async function emitFromProfile(options: RunMonitorOptions): Promise<{ emitted: string; reference: string; content: string }> {
  const { flags, config } = options;
  if (!(EMITTABLE as readonly string[]).includes(flags.emit!)) throw inputError(`--emit ${flags.emit}: expected ${EMITTABLE.join(' or ')}`);
  if (flags.target || flags.url.length > 0 || flags.prometheus || flags.all || flags.strict || flags.gate.length > 0) {
    throw inputError('--emit reads no live traffic: drop --target, --url, --prometheus, --all, --strict and --gate');
  }
  const file = flags.reference ? path.resolve(options.cwd, flags.reference) : path.join(options.projectDir, '.mlops', 'reference-profile.json');
  const shown = flags.reference ?? '.mlops/reference-profile.json (the last build)';
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
