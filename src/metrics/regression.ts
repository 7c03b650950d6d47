/** Regression metrics with scikit-learn's definitions. */
export interface RegressionMetrics {
  mae: number;
  mse: number;
  rmse: number;
  r2: number;
  /** A fraction, as scikit-learn's mean_absolute_percentage_error; mape_percent is the same in percent. */
  mape: number;
  mape_percent: number;
  max_error: number;
}

export function regressionMetrics(yTrue: ArrayLike<number>, yPred: ArrayLike<number>): RegressionMetrics {
  const n = yTrue.length;
  const eps = 2.220446049250313e-16;
  let absolute = 0;
  let squared = 0;
  let percentage = 0;
  let maxError = 0;
  let meanTrue = 0;
  for (let i = 0; i < n; i++) meanTrue += yTrue[i];
  meanTrue /= n;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const error = yTrue[i] - yPred[i];
    absolute += Math.abs(error);
    squared += error * error;
    percentage += Math.abs(error) / Math.max(Math.abs(yTrue[i]), eps);
    maxError = Math.max(maxError, Math.abs(error));
    total += (yTrue[i] - meanTrue) ** 2;
  }
  // scikit-learn's force_finite: a constant target scores 1 when predicted exactly, else 0.
  const r2 = total === 0 ? (squared === 0 ? 1 : 0) : 1 - squared / total;
  return {
    mae: absolute / n,
    mse: squared / n,
    rmse: Math.sqrt(squared / n),
    r2,
    mape: percentage / n,
    mape_percent: (100 * percentage) / n,
    max_error: maxError,
  };
}

/** For gates and baselines: whether a larger value is better. */
export const LOWER_IS_BETTER = new Set(['log_loss', 'mae', 'mse', 'rmse', 'mape', 'mape_percent', 'max_error']);
