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
