/**
 * `mlops monitor --labels`: live quality. The truth that came later is joined
 * with the predictions the inference log kept, by request id (and row), and
 * scored with `mlops test`'s own code, then compared with the version's test
 * metrics (stamped at `mlops tag`) and with absolute gates.
 */
import type { Config } from '../config/defaults.js';
import { connectDocker } from '../docker/client.js';
import { inputError } from '../errors.js';
import { chooseOutput, PredictionScorer, type Evaluation } from '../evaluate/evaluate.js';
import { readBaseline } from '../evaluate/quality-test.js';
import { configuredRepository } from '../project/repository.js';
import { baselineGates, checkKnownMetrics, evaluateGates, gatesFromConfig, type GateResult, type GateSpec } from '../metrics/gates.js';
import { CLASSIFICATION_METRICS, QUALITY_METRICS, REGRESSION_METRICS } from '../metrics/names.js';
import { LOWER_IS_BETTER } from '../metrics/regression.js';
import { RegistryClient } from '../registry/client.js';
import { resolveCredentials } from '../registry/credentials.js';
import { parseReference } from '../registry/reference.js';
import { registryVersions } from '../release/versions.js';
import { recordsInLine, type InferenceRecord, type LoggedTensor } from './inference-records.js';
import { labelKey, type LabelSet } from './labels.js';
import { MODEL_SHA256_LABEL } from '../model/labels.js';

/** Lines of an inference log: a file, or what a target's log command printed. */
export interface LogSource {
  from: string;
  lines: AsyncIterable<string> | Iterable<string>;
}

export interface TimeRange {
  since?: number;
  until?: number;
}

export type SkipReason = 'no-prediction' | 'other-version' | 'ambiguous-row' | 'conflicting-predictions' | 'unscorable-label' | 'no-output';

export interface JoinSummary {
  labels: number;
  /** Labels that found their prediction and were scored. */
  matched: number;
  /** matched / labels. */
  coverage: number;
  /** Labels not scored, by reason, each with an example. */
  skipped: Partial<Record<SkipReason, { count: number; example: string }>>;
  /** Label lines that repeated an (id, row) with the same label (kept once), and (id, row)s given different labels (dropped). */
  duplicateLabels: number;
  conflictingLabels: number;
  /** Logged rows in the time range, and those that repeated an (id, row) with the same outputs. */
  loggedRows: number;
  duplicateLogRows: number;
}

export interface VersionSeen {
  version: string;
  sha256: string;
  model: string;
  rows: number;
  matched: number;
  first: string;
  last: string;
}

export interface QualityReport {
  kind: 'quality';
  model: { name: string; version: string; sha256: string };
  source: { logs: string[]; labels: string; since: string | null; until: string | null; target?: string };
  /** Every version found in the log's range; the one scored has the most matched labels. */
  versions: VersionSeen[];
  join: JoinSummary;
  task: Evaluation['task'];
  output: string;
  outputKind: Evaluation['outputKind'];
  classes?: string[];
  metrics: Evaluation['metrics'];
  baseline: { from: string; metrics: Record<string, number> } | null;
  gates: GateResult[];
  verdict: 'passed' | 'failed' | 'too-few-rows';
  warning?: string;
  passed: boolean;
}

interface Kept {
  sha256: string;
  rows: number;
  outputs: LoggedTensor[];
  text: string;
}

/** Gates on live quality: monitor.gates' quality metrics (drift metrics there are for the drift check) and any more (--gate's). */
export function qualityGates(config: Config, gates: GateSpec[]): GateSpec[] {
  const configured = Object.fromEntries(Object.entries(config.monitor.gates).filter(([metric]) => QUALITY_METRICS.includes(metric)));
  const specs = [...gatesFromConfig(configured), ...gates];
  checkKnownMetrics(specs, QUALITY_METRICS, 'mlops monitor --labels');
  checkKnownMetrics(
    Object.keys(config.monitor.maxDrop).map((metric) => ({ metric, op: 'max_drop' as const, threshold: 0 })),
    QUALITY_METRICS,
    'monitor.maxDrop',
  );
  return specs;
}

/** "7d" (that long ago) or an ISO 8601 time, as epoch milliseconds. */
export function parseTime(text: string, flag: string, now = Date.now()): number {
  const duration = /^(\d+)([smhdw])$/.exec(text.trim());
  if (duration) return now - Number(duration[1]) * { s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5 }[duration[2] as 's'];
  const at = Date.parse(text);
  if (/^\d{4}-\d{2}-\d{2}/.test(text.trim()) && Number.isFinite(at)) return at;
  throw inputError(`${flag} ${text}: expected a duration like 7d (that long ago) or a time like 2026-11-01T00:00:00Z`);
}

function skip(summary: JoinSummary, reason: SkipReason, example: string): void {
  const entry = (summary.skipped[reason] ??= { count: 0, example });
  entry.count++;
}

const numeric = (data: unknown[]) => data.map((v) => (v === null ? NaN : typeof v === 'boolean' ? Number(v) : (v as number)));

export interface ScoreLiveOptions {
  labels: LabelSet;
  logs: LogSource[];
  range: TimeRange;
  settings: Config['test'];
  /** Only this model's records (a log of a server of several models holds each model's); undefined: every record. */
  model?: string;
}

/** The logged predictions the labels ask for, by (id, row), with every version seen in the time range. */
interface LoggedPredictions {
  kept: Map<string, Kept>;
  /** (id, row)s logged more than once with different outputs or versions. */
  conflicting: Set<string>;
  versions: Map<string, VersionSeen>;
}

/** Reads the logs once: counts each version's rows in the range and keeps the predictions of the labelled ids. */
async function readLoggedPredictions(options: ScoreLiveOptions, summary: JoinSummary): Promise<LoggedPredictions> {
  const { range } = options;
  const wanted = new Set(options.labels.labels.map((l) => l.id));
  const kept = new Map<string, Kept>();
  const conflicting = new Set<string>();
  const versions = new Map<string, VersionSeen>();
  const take = (record: InferenceRecord) => {
    if (options.model !== undefined && record.model !== options.model) return;
    const at = Date.parse(record.time);
    if ((range.since !== undefined && !(at >= range.since)) || (range.until !== undefined && !(at < range.until))) return;
    summary.loggedRows++;
    const seen = versions.get(record.sha256) ?? {
      version: record.version,
      sha256: record.sha256,
      model: record.model,
      rows: 0,
      matched: 0,
      first: record.time,
      last: record.time,
    };
    seen.rows++;
    if (record.time < seen.first) seen.first = record.time;
    if (record.time > seen.last) seen.last = record.time;
    versions.set(record.sha256, seen);
    if (!wanted.has(record.id)) return;
    const key = labelKey(record.id, record.row);
    const text = JSON.stringify(record.outputs);
    const before = kept.get(key);
    if (!before) kept.set(key, { sha256: record.sha256, rows: record.rows, outputs: record.outputs, text });
    else if (before.text === text && before.sha256 === record.sha256) summary.duplicateLogRows++;
    else conflicting.add(key);
  };
  for (const source of options.logs) {
    for await (const line of source.lines) for (const record of recordsInLine(line)) take(record);
  }
  return { kept, conflicting, versions };
}

/**
 * The version scored: the one most labels belong to (labels may arrive after a newer version took
 * over); every version, ranked so. Refused when no label matched a logged prediction.
 */
function chooseVersion(labels: LabelSet, logged: LoggedPredictions, summary: JoinSummary, range: TimeRange): { ranked: VersionSeen[]; chosen: VersionSeen } {
  for (const label of labels.labels) {
    const record = logged.kept.get(labelKey(label.id, label.row));
    if (record) logged.versions.get(record.sha256)!.matched++;
  }
  const ranked = [...logged.versions.values()].sort((a, b) => b.matched - a.matched || b.last.localeCompare(a.last));
  const chosen = ranked[0];
  const matchedAny = chosen !== undefined && chosen.matched > 0;
  if (!matchedAny) {
    const why =
      summary.loggedRows === 0
        ? `the log has no inference records${range.since !== undefined || range.until !== undefined ? ' in the time range' : ''}`
        : `none of its ${labels.labels.length} ids is among the ${summary.loggedRows} logged rows`;
    throw inputError(
      `--labels ${labels.file}: no label matched a logged prediction: ${why}`,
      summary.loggedRows === 0
        ? 'turn the log on (server.inferenceLog.sample > 0), rebuild and deploy, and widen --since'
        : 'label ids must be the ids the server answered with (the response "id", or X-Request-Id for v1); only sampled requests are logged',
    );
  }
  return { ranked, chosen };
}

/** Each label joined with the chosen version's prediction and given to the scorer, or counted as skipped with its reason. */
function scoreLabels(options: {
  labels: LabelSet;
  logged: LoggedPredictions;
  chosen: VersionSeen;
  output: string;
  scorer: PredictionScorer;
  summary: JoinSummary;
}): void {
  const { logged, chosen, output, scorer, summary } = options;
  for (const label of options.labels.labels) {
    const key = labelKey(label.id, label.row);
    const at = `id ${label.id}${label.row !== undefined ? ` row ${label.row}` : ''} (${label.where})`;
    const record = logged.kept.get(key);
    if (!record) skip(summary, 'no-prediction', at);
    else if (logged.conflicting.has(key)) skip(summary, 'conflicting-predictions', `${at}: the id answered more than one request with different outputs`);
    else if (record.sha256 !== chosen.sha256) skip(summary, 'other-version', `${at}: predicted by ${logged.versions.get(record.sha256)!.version}`);
    else if (label.row === undefined && record.rows > 1) skip(summary, 'ambiguous-row', `${at}: the request had ${record.rows} rows; add a row column`);
    else {
      const value = scorer.label(label.label);
      const tensor = record.outputs.find((t) => t.name === output);
      if (typeof value !== 'number') skip(summary, 'unscorable-label', `${at}: ${value.problem}`);
      else if (!tensor) skip(summary, 'no-output', `${at}: the logged row has no output '${output}'`);
      else {
        scorer.add(value, numeric(tensor.data));
        summary.matched++;
      }
    }
  }
}

/** The join and the metrics; gates are applied by runQuality. */
export async function scoreLive(options: ScoreLiveOptions) {
  const { labels, range } = options;
  const summary: JoinSummary = {
    labels: labels.labels.length,
    matched: 0,
    coverage: 0,
    skipped: {},
    duplicateLabels: labels.duplicates,
    conflictingLabels: labels.conflicting.count,
    loggedRows: 0,
    duplicateLogRows: 0,
  };
  const logged = await readLoggedPredictions(options, summary);
  const { ranked, chosen } = chooseVersion(labels, logged, summary, range);

  const exampleRecord = [...logged.kept.values()].find((k) => k.sha256 === chosen.sha256)!;
  const signature = {
    outputs: exampleRecord.outputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: [-1, ...t.shape.slice(1)] })),
  };
  const output = chooseOutput(signature, options.settings.output);
  const scorer = new PredictionScorer(output, options.settings);
  scoreLabels({ labels, logged, chosen, output: output.name, scorer, summary });
  summary.coverage = summary.labels > 0 ? summary.matched / summary.labels : 0;
  if (summary.matched === 0) {
    const reasons = Object.entries(summary.skipped).map(([reason, s]) => `${s.count} ${reason} (e.g. ${s.example})`);
    throw inputError(
      `--labels ${labels.file}: no label could be scored: ${reasons.join('; ')}`,
      'each label needs the id (and row) the server answered with, a class the model has, and one prediction of the scored version (docs/monitoring.md, "Live quality")',
    );
  }
  const scored = scorer.score();
  return { summary, versions: ranked, chosen, output: output.name, task: scorer.task, ...scored };
}

/** The version's own test metrics: --baseline (a `mlops test --json` report), else the labels `mlops tag` stamped on its image. */
export async function versionBaseline(options: {
  cwd: string;
  baselineFile?: string;
  sha256: string;
  config: Config;
  projectDir: string;
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
}): Promise<{ from: string; metrics: Record<string, number> } | null> {
  if (options.baselineFile) {
    const metrics = await readBaseline(options.cwd, options.baselineFile);
    return { from: options.baselineFile, metrics: Object.fromEntries(Object.entries(metrics).filter((e): e is [string, number] => typeof e[1] === 'number')) };
  }
  const stamped = (labels: Record<string, string>) =>
    Object.fromEntries(
      Object.entries(labels)
        .filter(
          ([k, v]) => k.startsWith('mlops.test.') && QUALITY_METRICS.includes(k.slice('mlops.test.'.length)) && v.trim() !== '' && Number.isFinite(Number(v)),
        )
        .map(([k, v]) => [k.slice('mlops.test.'.length), Number(v)]),
    );
  try {
    const docker = await connectDocker(options.env);
    const images = await docker.listImages({ filters: { label: [`${MODEL_SHA256_LABEL}=${options.sha256}`] } });
    const withMetrics = images
      .map((image) => ({ image, metrics: stamped(image.Labels ?? {}) }))
      .filter((i) => Object.keys(i.metrics).length > 0)
      .sort((a, b) => b.image.Created - a.image.Created);
    if (withMetrics.length > 0) {
      const { image, metrics } = withMetrics[0];
      const name = image.RepoTags?.find((t) => !t.endsWith(':<none>')) ?? image.Id.slice(0, 19);
      return { from: `labels of image ${name}`, metrics };
    }
  } catch {
    // no Docker engine here: the registry may still know
  }
  const ref = parseReference(configuredRepository(options.config, options.projectDir));
  if (ref.registry === 'docker.io') return null;
  try {
    const client = new RegistryClient(ref.registry, await resolveCredentials(ref.registry, options.env));
    const listing = await registryVersions(client, ref.repository);
    const version = listing.versions.find((v) => v.modelSha256 === options.sha256 && Object.keys(v.metrics).some((k) => k.startsWith('test.')));
    if (!version) return null;
    const metrics = stamped(Object.fromEntries(Object.entries(version.metrics).map(([k, v]) => [`mlops.${k}`, v])));
    return Object.keys(metrics).length > 0 ? { from: `labels of ${ref.registry}/${ref.repository}:${version.version}`, metrics } : null;
  } catch (error) {
    options.log(`warning: could not read versions from ${ref.registry}: ${(error as Error).message}`);
    return null;
  }
}

export interface RunQualityOptions {
  cwd: string;
  labels: LabelSet;
  logs: LogSource[];
  range: TimeRange;
  config: Config;
  projectDir: string;
  env: NodeJS.ProcessEnv;
  /** Gates beyond monitor.gates' quality metrics. */
  gates: GateSpec[];
  baselineFile?: string;
  strict: boolean;
  log: (line: string) => void;
  /** One model of a server of several: only its records are joined. */
  model?: string;
}

export async function runQuality(options: RunQualityOptions): Promise<Omit<QualityReport, 'source'>> {
  const { config } = options;
  // Gates are checked before the logs are read: a typo fails at once.
  const specs = qualityGates(config, options.gates);
  const live = await scoreLive({ labels: options.labels, logs: options.logs, range: options.range, settings: config.test, model: options.model });
  const maxDrop = config.monitor.maxDrop;
  const baseline = await versionBaseline({
    cwd: options.cwd,
    baselineFile: options.baselineFile,
    sha256: live.chosen.sha256,
    config,
    projectDir: options.projectDir,
    env: options.env,
    log: options.log,
  });
  if (Object.keys(maxDrop).length > 0 && !baseline) {
    throw inputError(
      `monitor.maxDrop needs the test metrics of version ${live.chosen.version} (model sha256 ${live.chosen.sha256.slice(0, 12)}), and no image of it carries them`,
      'run `mlops test` then `mlops tag` on the build you deploy, or pass --baseline <mlops test --json report>',
    );
  }
  const metrics = live.metrics as unknown as Record<string, unknown>;
  const known = live.task === 'classification' ? CLASSIFICATION_METRICS : REGRESSION_METRICS;
  checkKnownMetrics(specs, known, live.task);
  const gates = [...evaluateGates(specs, metrics), ...(baseline ? baselineGates(maxDrop, baseline.metrics, metrics, LOWER_IS_BETTER) : [])];
  const few = live.summary.matched < config.monitor.minRows;
  const failed = gates.some((g) => !g.passed);
  const verdict = few ? 'too-few-rows' : failed ? 'failed' : 'passed';
  return {
    kind: 'quality',
    model: { name: live.chosen.model, version: live.chosen.version, sha256: live.chosen.sha256 },
    versions: live.versions,
    join: live.summary,
    task: live.task,
    output: live.output,
    outputKind: live.outputKind,
    classes: live.classes,
    metrics: live.metrics,
    baseline,
    gates,
    verdict,
    ...(few
      ? {
          warning: `only ${live.summary.matched} labelled rows (monitor.minRows is ${config.monitor.minRows}): too few to judge${failed ? '; the gates below would fail' : ''}`,
        }
      : {}),
    passed: few ? !options.strict : !failed,
  };
}
