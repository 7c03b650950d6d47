/**
 * A classifier's scores to labels, as transformers' pipelines answer: softmax (one label per row),
 * sigmoid (`problem_type: multi_label_classification`) or the scores as they are, then the top k
 * with `id2label`'s names.
 */
import type { Tensor } from '../model/session.js';

export type ScoreFunction = 'softmax' | 'sigmoid' | 'none';

export interface LabelSettings {
  /** The output read: a float output with a column per class. */
  output: string;
  function: ScoreFunction;
  /** Class index -> name; a class without one is named LABEL_<i>, as transformers names it. */
  names: string[];
  /** How many labels a row answers with by default. */
  topK: number;
}

export interface ScoredLabel {
  label: string;
  score: number;
}

/** Each row's scores after the function: a [rows, classes] matrix flattened. */
export function scores(tensor: Tensor, fn: ScoreFunction): { values: Float64Array; rows: number; classes: number } {
  const rows = tensor.dims[0] ?? 1;
  const classes = tensor.dims.slice(1).reduce((n, d) => n * d, 1);
  const raw = tensor.data as ArrayLike<number>;
  const values = new Float64Array(rows * classes);
  for (let r = 0; r < rows; r++) {
    const at = r * classes;
    if (fn === 'softmax') {
      let max = -Infinity;
      for (let c = 0; c < classes; c++) max = Math.max(max, Number(raw[at + c]));
      let sum = 0;
      for (let c = 0; c < classes; c++) sum += values[at + c] = Math.exp(Number(raw[at + c]) - max);
      for (let c = 0; c < classes; c++) values[at + c] /= sum;
    } else if (fn === 'sigmoid') {
      for (let c = 0; c < classes; c++) values[at + c] = 1 / (1 + Math.exp(-Number(raw[at + c])));
    } else {
      for (let c = 0; c < classes; c++) values[at + c] = Number(raw[at + c]);
    }
  }
  return { values, rows, classes };
}

export const labelName = (names: string[], index: number) => names[index] ?? `LABEL_${index}`;

/** Each row's top k labels, best first (ties: the lower index first, as a stable sort gives). */
export function topLabels(tensor: Tensor, settings: LabelSettings, k = settings.topK): ScoredLabel[][] {
  const { values, rows, classes } = scores(tensor, settings.function);
  const take = Math.max(1, Math.min(k, classes));
  const out: ScoredLabel[][] = [];
  const order = Array.from({ length: classes }, (_, i) => i);
  for (let r = 0; r < rows; r++) {
    const at = r * classes;
    const ranked = order.slice().sort((a, b) => values[at + b] - values[at + a] || a - b);
    out.push(ranked.slice(0, take).map((c) => ({ label: labelName(settings.names, c), score: values[at + c] })));
  }
  return out;
}
