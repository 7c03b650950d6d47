/**
 * Classification metrics with scikit-learn's definitions (zero_division=0,
 * labels = every class the model knows), so that values match what
 * scikit-learn computes on the same predictions to within 1e-9.
 */

export interface PerClass {
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

export interface ClassificationMetrics {
  accuracy: number;
  balanced_accuracy: number;
  precision_macro: number;
  recall_macro: number;
  f1_macro: number;
  precision_weighted: number;
  recall_weighted: number;
  f1_weighted: number;
  /** Only where probabilities (or logits) are available. */
  log_loss?: number;
  /** Only where probabilities are available and both classes (every class, for multiclass) occur. */
  roc_auc?: number;
  confusion_matrix: number[][];
  per_class: Record<string, PerClass>;
}

const divide = (a: number, b: number) => (b === 0 ? 0 : a / b);
const mean = (values: number[]) => (values.length === 0 ? 0 : values.reduce((s, v) => s + v, 0) / values.length);

/**
 * @param yTrue class indices
 * @param yPred class indices
 * @param proba row-major probabilities, one column per class (rows sum to 1), or undefined
 * @param classNames one name per class index
 */
export function classificationMetrics(
  yTrue: ArrayLike<number>,
  yPred: ArrayLike<number>,
  proba: ArrayLike<number> | undefined,
  classNames: string[],
): ClassificationMetrics {
  const k = classNames.length;
  const n = yTrue.length;
  const matrix = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (let i = 0; i < n; i++) matrix[yTrue[i]][yPred[i]]++;
  const support = matrix.map((row) => row.reduce((s, v) => s + v, 0));
  const predicted = classNames.map((_, c) => matrix.reduce((s, row) => s + row[c], 0));
  const perClass = classNames.map((_, c) => {
    const tp = matrix[c][c];
    const precision = divide(tp, predicted[c]);
    const recall = divide(tp, support[c]);
    // scikit-learn 1.2: F from precision and recall, 0 when both are 0.
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    return { precision, recall, f1, support: support[c] };
  });
  const total = support.reduce((s, v) => s + v, 0);
  const weighted = (key: 'precision' | 'recall' | 'f1') => (total === 0 ? 0 : perClass.reduce((s, m) => s + m[key] * m.support, 0) / total);
  const correct = matrix.reduce((s, row, c) => s + row[c], 0);
  // Balanced accuracy averages recall over the classes present in y_true only.
  const presentRecalls = perClass.filter((m) => m.support > 0).map((m) => m.recall);

  const metrics: ClassificationMetrics = {
    accuracy: divide(correct, n),
    balanced_accuracy: mean(presentRecalls),
    precision_macro: mean(perClass.map((m) => m.precision)),
    recall_macro: mean(perClass.map((m) => m.recall)),
    f1_macro: mean(perClass.map((m) => m.f1)),
    precision_weighted: weighted('precision'),
    recall_weighted: weighted('recall'),
    f1_weighted: weighted('f1'),
    confusion_matrix: matrix,
    per_class: Object.fromEntries(classNames.map((name, c) => [name, perClass[c]])),
  };
  if (proba) {
    metrics.log_loss = logLoss(yTrue, proba, k);
    const auc = k === 2 ? binaryAuc(yTrue, proba, 1, 2) : ovrMacroAuc(yTrue, proba, k);
    if (auc !== undefined) metrics.roc_auc = auc;
  }
  return metrics;
}

/** scikit-learn 1.2 log_loss: clip to [eps, 1 - eps], renormalise rows, mean negative log-likelihood. */
export function logLoss(yTrue: ArrayLike<number>, proba: ArrayLike<number>, k: number): number {
  const eps = 2.220446049250313e-16;
  let sum = 0;
  for (let i = 0; i < yTrue.length; i++) {
    let rowSum = 0;
    for (let c = 0; c < k; c++) rowSum += Math.min(Math.max(proba[i * k + c], eps), 1 - eps);
    const p = Math.min(Math.max(proba[i * k + yTrue[i]], eps), 1 - eps) / rowSum;
    sum -= Math.log(p);
  }
  return sum / yTrue.length;
}

/**
 * Area under the ROC curve for one class against the rest: the Mann-Whitney
 * statistic with ties counted half, which equals scikit-learn's trapezoidal
 * area over tied thresholds. undefined when only one class is present.
 */
export function binaryAuc(yTrue: ArrayLike<number>, proba: ArrayLike<number>, positive: number, k: number): number | undefined {
  const n = yTrue.length;
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => proba[a * k + positive] - proba[b * k + positive]);
  let positives = 0;
  let rankSum = 0;
  for (let i = 0; i < n;) {
    let j = i;
    const score = proba[order[i] * k + positive];
    while (j < n && proba[order[j] * k + positive] === score) j++;
    const averageRank = (i + 1 + j) / 2;
    for (let t = i; t < j; t++) {
      if (yTrue[order[t]] === positive) {
        positives++;
        rankSum += averageRank;
      }
    }
    i = j;
  }
  const negatives = n - positives;
  if (positives === 0 || negatives === 0) return undefined;
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

function ovrMacroAuc(yTrue: ArrayLike<number>, proba: ArrayLike<number>, k: number): number | undefined {
  const aucs: number[] = [];
  for (let c = 0; c < k; c++) {
    const auc = binaryAuc(yTrue, proba, c, k);
    if (auc === undefined) return undefined;
    aucs.push(auc);
  }
  return mean(aucs);
}
