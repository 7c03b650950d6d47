/**
 * A Grafana dashboard for one model (`mlops monitor --emit grafana-dashboard`):
 * traffic, latency, errors, batching and queueing from the server's metrics,
 * and the feature and prediction distributions from its profile counters.
 * Dashboard JSON model, schemaVersion 39 (Grafana 10.3 and later).
 */
import { INFERENCE_ROUTE_MATCHER } from '../metrics/names.js';
import type { ReferenceProfile } from './profile.js';

export const DASHBOARD_SCHEMA_VERSION = 39;

export interface DashboardSettings {
  modelName: string;
  profile: ReferenceProfile;
  referenceSha256: string;
}

interface Panel {
  id: number;
  type: 'timeseries' | 'barchart' | 'stat';
  title: string;
  description?: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource: { type: 'prometheus'; uid: '${datasource}' };
  targets: { refId: string; expr: string; legendFormat?: string; instant?: boolean; format?: string }[];
  fieldConfig: { defaults: { unit?: string }; overrides: [] };
  options?: Record<string, unknown>;
}

// eslint-disable-next-line max-lines-per-function -- a data table: the Grafana dashboard's JSON, panel by panel
export function grafanaDashboard(settings: DashboardSettings): Record<string, unknown> {
  const model = settings.modelName;
  const reference = settings.referenceSha256.slice(0, 12);
  const of = (expression: string) => `${expression} * on (job, instance) group_left () max by (job, instance) (mlops_model_info{name="${model}"})`;
  const panels: Panel[] = [];
  const add = (panel: Omit<Panel, 'id' | 'datasource' | 'fieldConfig'> & { unit?: string }) => {
    const { unit, ...rest } = panel;
    panels.push({
      ...rest,
      id: panels.length + 1,
      datasource: { type: 'prometheus', uid: '${datasource}' },
      fieldConfig: { defaults: unit ? { unit } : {}, overrides: [] },
    });
  };
  const row = (y: number, x: number) => ({ x, y, w: 12, h: 8 });
  const quantile = (q: number, metric: string, extra = '') =>
    `histogram_quantile(${q}, sum by (le) (${of(`rate(${metric}_bucket${extra}[$__rate_interval])`)}))`;

  add({
    type: 'timeseries',
    title: 'Throughput',
    gridPos: row(0, 0),
    unit: 'reqps',
    targets: [
      {
        refId: 'A',
        expr: `sum by (protocol) (${of(`rate(mlops_http_requests_total{${INFERENCE_ROUTE_MATCHER},model="${model}"}[$__rate_interval])`)})`,
        legendFormat: '{{protocol}}',
      },
    ],
  });
  add({
    type: 'timeseries',
    title: 'Inference latency',
    gridPos: row(0, 12),
    unit: 's',
    targets: [0.5, 0.95, 0.99].map((q, i) => ({
      refId: String.fromCharCode(65 + i),
      expr: quantile(q, 'mlops_http_request_duration_seconds', `{${INFERENCE_ROUTE_MATCHER},model="${model}"}`),
      legendFormat: `p${q * 100}`,
    })),
  });
  add({
    type: 'timeseries',
    title: 'Errors',
    description:
      'Inference requests answered with a server error (HTTP 5xx, gRPC INTERNAL/UNKNOWN/UNAVAILABLE) and with a client error (4xx, INVALID_ARGUMENT).',
    gridPos: row(8, 0),
    unit: 'reqps',
    targets: [
      {
        refId: 'A',
        expr: `sum(${of(`rate(mlops_http_requests_total{${INFERENCE_ROUTE_MATCHER},model="${model}",code=~"5..|INTERNAL|UNKNOWN|UNAVAILABLE|DATA_LOSS"}[$__rate_interval])`)})`,
        legendFormat: 'server errors',
      },
      {
        refId: 'B',
        expr: `sum(${of(`rate(mlops_http_requests_total{${INFERENCE_ROUTE_MATCHER},model="${model}",code=~"4..|INVALID_ARGUMENT|NOT_FOUND|RESOURCE_EXHAUSTED"}[$__rate_interval])`)})`,
        legendFormat: 'client errors',
      },
    ],
  });
  add({
    type: 'timeseries',
    title: 'Batch size and queue time',
    gridPos: row(8, 12),
    targets: [
      {
        refId: 'A',
        expr: `sum(${of(`rate(mlops_batch_size_sum{model="${model}"}[$__rate_interval])`)}) / sum(${of(`rate(mlops_batch_size_count{model="${model}"}[$__rate_interval])`)})`,
        legendFormat: 'rows per run (mean)',
      },
      { refId: 'B', expr: quantile(0.95, 'mlops_inference_queue_duration_seconds', `{model="${model}"}`), legendFormat: 'queue time p95 (s)' },
      { refId: 'C', expr: quantile(0.95, 'mlops_inference_duration_seconds', `{model="${model}"}`), legendFormat: 'run time p95 (s)' },
    ],
  });
  const counted = `reference="${reference}"`;
  if (settings.profile.features.length > 0) {
    add({
      type: 'timeseries',
      title: 'Feature drift (PSI)',
      description: 'From the recording rules of `mlops monitor --emit prometheus-rules`; a feature drifts at 0.1 (Evidently).',
      gridPos: row(16, 0),
      targets: [{ refId: 'A', expr: `mlops:feature_psi{model="${model}",${counted}}`, legendFormat: '{{feature}}' }],
    });
    add({
      type: 'barchart',
      title: 'Live distribution of $feature (share of rows per reference bin)',
      gridPos: row(16, 12),
      unit: 'percentunit',
      targets: [
        {
          refId: 'A',
          expr: `sum by (bin) (increase(mlops_feature_bin_total{${counted},feature="$feature"}[$__range])) / scalar(sum(increase(mlops_feature_bin_total{${counted},feature="$feature"}[$__range])))`,
          legendFormat: '{{bin}}',
          instant: true,
          format: 'table',
        },
      ],
    });
    add({
      type: 'timeseries',
      title: 'Values outside the reference range',
      gridPos: row(24, 0),
      unit: 'percentunit',
      targets: [
        {
          refId: 'A',
          expr: `sum by (feature) (rate(mlops_feature_out_of_range_total{${counted}}[$__rate_interval])) / on () group_left () sum(rate(mlops_profiled_rows_total{${counted}}[$__rate_interval]))`,
          legendFormat: '{{feature}}',
        },
      ],
    });
  }
  const prediction = settings.profile.prediction;
  if (prediction) {
    const [metric, label] = prediction.kind === 'value' ? ['mlops_prediction_bin_total', 'bin'] : ['mlops_prediction_class_total', 'class'];
    add({
      type: 'timeseries',
      title: `Predictions by ${label}`,
      gridPos: row(24, 12),
      unit: 'percentunit',
      targets: [
        {
          refId: 'A',
          expr: `sum by (${label}) (rate(${metric}{${counted}}[$__rate_interval])) / on () group_left () sum(rate(${metric}{${counted}}[$__rate_interval]))`,
          legendFormat: `{{${label}}}`,
        },
      ],
    });
  }
  return {
    title: `mlops: ${model}`,
    uid: `mlops-${model}`
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-')
      .slice(0, 40),
    tags: ['mlops'],
    description: `Generated by \`mlops monitor --emit grafana-dashboard\` for model ${model}, reference profile ${reference}.`,
    schemaVersion: DASHBOARD_SCHEMA_VERSION,
    version: 1,
    editable: true,
    time: { from: 'now-6h', to: 'now' },
    refresh: '1m',
    timezone: 'browser',
    templating: {
      list: [
        { name: 'datasource', type: 'datasource', query: 'prometheus', label: 'Prometheus' },
        {
          name: 'feature',
          type: 'custom',
          label: 'feature',
          query: settings.profile.features.map((f) => f.name.replace(/,/g, '\\,')).join(','),
          current: settings.profile.features[0] ? { text: settings.profile.features[0].name, value: settings.profile.features[0].name } : {},
          options: [],
        },
      ],
    },
    annotations: { list: [] },
    panels,
  };
}
