/** The metrics `mlops test` computes, by task: the names gates, labels and reports use. */
export const CLASSIFICATION_METRICS = [
  'accuracy',
  'balanced_accuracy',
  'precision_macro',
  'recall_macro',
  'f1_macro',
  'precision_weighted',
  'recall_weighted',
  'f1_weighted',
  'log_loss',
  'roc_auc',
] as const;
export const REGRESSION_METRICS = ['mae', 'mse', 'rmse', 'r2', 'mape', 'mape_percent', 'max_error'] as const;

/** Either task's: what `mlops monitor --labels` can gate on. */
export const QUALITY_METRICS: readonly string[] = [...CLASSIFICATION_METRICS, ...REGRESSION_METRICS];

/**
 * The `route` label of every inference route of every contract: OIP REST and gRPC, KServe v1,
 * SageMaker's /invocations, Vertex AI's AIP_PREDICT_ROUTE. Alert rules and dashboards count these; the server's
 * metrics name them (a lower floor than both, so neither imports the other).
 */
export const INFERENCE_ROUTES = ['/v2/models/{name}/infer', '/v1/models/{name}:predict', '/invocations', '$AIP_PREDICT_ROUTE', 'ModelInfer'] as const;

/** A PromQL matcher for exactly those routes (RE2 is anchored; each label is escaped). */
export const INFERENCE_ROUTE_MATCHER = `route=~"${INFERENCE_ROUTES.map((r) => r.replace(/[.*+?^${}()|[\]\\]/g, '\\\\$&')).join('|')}"`;
