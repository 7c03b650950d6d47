/**
 * Prometheus alerting rules for one model (`mlops monitor --emit
 * prometheus-rules`): errors, p99 latency, no traffic, and drift computed in
 * PromQL from the same profile counters and the same PSI definition as
 * `mlops monitor`, so an alert and a monitor run agree.
 */
import { INFERENCE_ROUTE_MATCHER } from '../metrics/names.js';
import { stringify } from 'yaml';
import { EMPTY_SHARE } from './drift.js';
import type { FeatureProfile, ReferenceProfile } from './profile.js';

export interface AlertSettings {
  modelName: string;
  profile: ReferenceProfile;
  /** The profile file's sha256: it selects the counters of this reference. */
  referenceSha256: string;
  featurePsi: number;
  /** Alert above this p99 (seconds). */
  p99Seconds: number;
  /** Alert above this share of failed inference requests. */
  errorRate: number;
  /** Range the drift rules look back over (errors and latency: 5m). */
  window: string;
}

const SERVER_ERRORS = 'code=~"5..|INTERNAL|UNKNOWN|UNAVAILABLE|DATA_LOSS"';

/** Limits a per-instance series to the servers of this model (mlops_model_info is 1 on each, once per version it holds: max() makes it one). */
const ofModel = (expression: string, model: string) =>
  `${expression} * on (job, instance) group_left () max by (job, instance) (mlops_model_info{name="${model}"})`;

/** PSI of one feature over the window, Evidently's definition, with the reference shares inlined. */
function featurePsiExpression(f: FeatureProfile, reference: string, window: string): string {
  const selector = `feature="${f.name.replace(/["\\]/g, '\\$&')}",reference="${reference}"`;
  const total = `(sum(increase(mlops_feature_bin_total{${selector}}[${window}])) + sum(increase(mlops_feature_out_of_range_total{${selector}}[${window}])))`;
  const bins = f.edges.length - 1;
  const live = (i: number) =>
    i === 0
      ? `sum(increase(mlops_feature_out_of_range_total{${selector},side="below"}[${window}]))`
      : i === bins + 1
        ? `sum(increase(mlops_feature_out_of_range_total{${selector},side="above"}[${window}]))`
        : `sum(increase(mlops_feature_bin_total{${selector},bin="${i - 1}"}[${window}]))`;
  const terms = f.shares.map((share, i) => {
    const r = share === 0 ? EMPTY_SHARE : share;
    const c = `clamp_min(${live(i)} / ${total}, ${EMPTY_SHARE})`;
    return `(${r} - ${c}) * ln(${r} / ${c})`;
  });
  return terms.join('\n  + ');
}

/** Refused tokens in 5 minutes that make an alert: past what a client with a stale token retries. */
const AUTH_FAILURES_PER_5M = 50;

export function prometheusRules(settings: AlertSettings): string {
  const { modelName: model, window } = settings;
  const reference = settings.referenceSha256.slice(0, 12);
  const labels = { model, severity: 'warning' };
  const inferRate = (extra = '') => `sum(${ofModel(`rate(mlops_http_requests_total{${INFERENCE_ROUTE_MATCHER},model="${model}"${extra}}[5m])`, model)})`;
  const recording = settings.profile.features.map((f) => ({
    record: 'mlops:feature_psi',
    expr: featurePsiExpression(f, reference, window),
    labels: { model, feature: f.name, reference },
  }));
  const alerts = [
    {
      alert: 'MlopsInferenceErrors',
      expr: `${inferRate(`,${SERVER_ERRORS}`)} / ${inferRate()} > ${settings.errorRate}`,
      for: '5m',
      labels,
      annotations: {
        summary: `${model}: over ${settings.errorRate * 100}% of inference requests fail`,
        description: 'Server errors (HTTP 5xx, gRPC INTERNAL/UNKNOWN/UNAVAILABLE): {{ $value | humanizePercentage }} of inference requests over 5 minutes.',
      },
    },
    {
      alert: 'MlopsLatencyP99',
      expr: `histogram_quantile(0.99, sum by (le) (${ofModel(`rate(mlops_http_request_duration_seconds_bucket{${INFERENCE_ROUTE_MATCHER},model="${model}"}[5m])`, model)})) > ${settings.p99Seconds}`,
      for: '10m',
      labels,
      annotations: { summary: `${model}: p99 inference latency over ${settings.p99Seconds * 1000} ms`, description: 'p99 is {{ $value | humanizeDuration }}.' },
    },
    {
      // Threat detection: a burst of refused tokens (guessing, a leaked old token, a misconfigured client).
      alert: 'MlopsAuthFailures',
      expr: `sum(${ofModel('increase(mlops_auth_failures_total[5m])', model)}) > ${AUTH_FAILURES_PER_5M}`,
      for: '0m',
      labels,
      annotations: {
        summary: `${model}: over ${AUTH_FAILURES_PER_5M} requests refused for their token in 5 minutes`,
        description: '{{ $value }} refused (missing, invalid, or from an address locked out); mlops_auth_failures_total by reason says which.',
      },
    },
    {
      alert: 'MlopsNoTraffic',
      expr: `(${inferRate()} or vector(0)) == 0`,
      for: '15m',
      labels,
      annotations: { summary: `${model}: no inference requests for 15 minutes` },
    },
    ...(recording.length > 0
      ? [
          {
            alert: 'MlopsFeatureDrift',
            expr: `mlops:feature_psi{model="${model}",reference="${reference}"} >= ${settings.featurePsi}`,
            for: '30m',
            labels,
            annotations: {
              summary: `${model}: feature {{ $labels.feature }} drifted from the reference (PSI >= ${settings.featurePsi})`,
              description: `PSI {{ $value }} over ${window}; run \`mlops monitor --prometheus\` for the full report.`,
            },
          },
          {
            alert: 'MlopsOutOfRange',
            expr: `sum by (feature) (increase(mlops_feature_out_of_range_total{reference="${reference}"}[${window}])) / on () group_left () sum(increase(mlops_profiled_rows_total{reference="${reference}"}[${window}])) > 0.01`,
            for: '30m',
            labels,
            annotations: { summary: `${model}: over 1% of {{ $labels.feature }} values fall outside the reference's range` },
          },
        ]
      : []),
  ];
  const groups = [...(recording.length > 0 ? [{ name: `mlops-${model}-drift`, rules: recording }] : []), { name: `mlops-${model}-alerts`, rules: alerts }];
  return `# Generated by \`mlops monitor --emit prometheus-rules\` for model ${model}, reference profile ${reference}.\n${stringify({ groups }, { lineWidth: 0 })}`;
}
