/**
 * Live counts against the reference profile: per-feature PSI, Jensen-Shannon
 * distance, out-of-range and missing rates, prediction drift, and the gates.
 */
import { QUALITY_METRICS } from '../metrics/names.js';
import type { Config } from '../config/defaults.js';
import { checkKnownMetrics, evaluateGates, gatesFromConfig, type GateResult, type GateSpec } from '../metrics/gates.js';
import { jensenShannon, psi, shares } from './drift.js';
import { countedSlots, type FeatureProfile, type ReferenceProfile } from './profile.js';

/** Counts in the server's layout: [below, ...bins, above, missing] per feature, [...classes, other] or binned values for the prediction. */
export interface LiveCounts {
  rows: number;
  features: Record<string, number[]>;
  prediction: number[] | null;
}

export const DRIFT_METRICS = [
  'psi_max',
  'js_max',
  'drifted_share',
  'drifted_count',
  'out_of_range_rate',
  'missing_rate',
  'prediction_psi',
  'prediction_js',
] as const;
export type DriftMetric = (typeof DRIFT_METRICS)[number];

/** Evidently's dataset drift rule: the dataset drifts when half its features or more do. */
export const DEFAULT_DRIFT_GATES: Record<string, string> = { drifted_share: '< 0.5' };

export interface FeatureDrift {
  name: string;
  psi: number;
  js: number;
  drifted: boolean;
  /** Live values seen (not NaN). */
  values: number;
  outOfRange: { below: number; above: number; rate: number };
  missingRate: number;
  /** Shares over [below, ...bins, above], reference and live, and the edges: what the report draws. */
  referenceShares: number[];
  liveShares: number[];
  edges: number[];
}

export interface PredictionDrift {
  output: string;
  kind: string;
  psi: number;
  js: number;
  /** Class names (with "other" last), or bin labels. */
  labels: string[];
  referenceShares: number[];
  liveShares: number[];
}

export type Verdict = 'passed' | 'failed' | 'too-few-rows' | 'no-reference';

export interface DriftAssessment {
  rows: number;
  features: FeatureDrift[];
  prediction: PredictionDrift | null;
  metrics: Partial<Record<DriftMetric, number>>;
  gates: GateResult[];
  verdict: Verdict;
  /** Why the verdict is not a pass or fail: too few rows, or no reference. */
  warning?: string;
  passed: boolean;
}

export interface CompareSettings {
  monitor: Config['monitor'];
  strict: boolean;
}

/** Gates from config and any more (--gate's), checked against the metrics monitor knows before anything is fetched. */
export function driftGates(settings: { monitor: Config['monitor']; gates?: GateSpec[] }): GateSpec[] {
  // Quality metrics in monitor.gates gate `--labels`; the rest must be drift metrics.
  const drift = Object.fromEntries(Object.entries(settings.monitor.gates).filter(([metric]) => !QUALITY_METRICS.includes(metric)));
  const configured = Object.keys(drift).length > 0 ? drift : DEFAULT_DRIFT_GATES;
  const specs = [...gatesFromConfig(configured), ...(settings.gates ?? [])];
  checkKnownMetrics(specs, DRIFT_METRICS, 'mlops monitor (with --labels, the metrics of mlops test)');
  return specs;
}

function binLabels(edges: number[]): string[] {
  const fmt = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : String(Number(v.toPrecision(4))));
  return ['below', ...edges.slice(0, -1).map((e, i) => `${fmt(e)}..${fmt(edges[i + 1])}`), 'above'];
}

function featureDrift(f: FeatureProfile, counts: number[] | undefined, threshold: number): FeatureDrift {
  const bins = f.edges.length - 1;
  const live = counts ?? new Array<number>(bins + 3).fill(0);
  const inRange = live.slice(0, bins + 2);
  const values = inRange.reduce((a, b) => a + b, 0);
  const missing = live[bins + 2] ?? 0;
  const liveShares = shares(inRange);
  const value = values > 0 ? psi(f.shares, liveShares) : 0;
  return {
    name: f.name,
    psi: value,
    js: values > 0 ? jensenShannon(f.shares, inRange) : 0,
    drifted: values > 0 && value >= threshold,
    values,
    outOfRange: { below: live[0], above: live[bins + 1], rate: values > 0 ? (live[0] + live[bins + 1]) / values : 0 },
    missingRate: values + missing > 0 ? missing / (values + missing) : 0,
    referenceShares: f.shares,
    liveShares,
    edges: f.edges,
  };
}

export function assessDrift(profile: ReferenceProfile, live: LiveCounts, specs: GateSpec[], settings: CompareSettings): DriftAssessment {
  const { features: slots, prediction: predictionSlot } = countedSlots(profile);
  const features = slots.map((f) => featureDrift(f, live.features[f.name], settings.monitor.featurePsi));
  let prediction: PredictionDrift | null = null;
  if (predictionSlot?.shares && live.prediction) {
    const p = predictionSlot;
    const counts = p.kind === 'value' ? live.prediction.slice(0, p.edges!.length + 1) : live.prediction;
    const liveShares = shares(counts);
    const seen = counts.some((c) => c > 0);
    prediction = {
      output: p.output,
      kind: p.kind,
      psi: seen ? psi(p.shares!, liveShares) : 0,
      js: seen ? jensenShannon(p.shares!, counts) : 0,
      labels: p.kind === 'value' ? binLabels(p.edges!) : [...p.classes!, 'other'],
      referenceShares: p.shares!,
      liveShares,
    };
  }
  const drifted = features.filter((f) => f.drifted).length;
  const max = (values: number[]) => (values.length === 0 ? 0 : Math.max(...values));
  const metrics: DriftAssessment['metrics'] = {
    psi_max: max(features.map((f) => f.psi)),
    js_max: max(features.map((f) => f.js)),
    drifted_share: features.length === 0 ? 0 : drifted / features.length,
    drifted_count: drifted,
    out_of_range_rate: max(features.map((f) => f.outOfRange.rate)),
    missing_rate: max(features.map((f) => f.missingRate)),
    ...(prediction ? { prediction_psi: prediction.psi, prediction_js: prediction.js } : {}),
  };
  if (profile.unavailable || features.length === 0) {
    const why = profile.unavailable ?? 'the reference profile has no features to compare';
    return {
      rows: live.rows,
      features,
      prediction,
      metrics: {},
      gates: [],
      verdict: 'no-reference',
      warning: `no drift computed: ${why}`,
      passed: !settings.strict,
    };
  }
  const gates = evaluateGates(specs, metrics);
  if (live.rows < settings.monitor.minRows) {
    return {
      rows: live.rows,
      features,
      prediction,
      metrics,
      gates,
      verdict: 'too-few-rows',
      warning: `too few live rows to judge: ${live.rows}, fewer than monitor.minRows (${settings.monitor.minRows}); the gates are shown but not applied`,
      passed: !settings.strict,
    };
  }
  const passed = gates.every((g) => g.passed);
  return { rows: live.rows, features, prediction, metrics, gates, verdict: passed ? 'passed' : 'failed', passed };
}

export { binLabels };
