/**
 * What a model relies on, over a holdout: each feature's mean absolute Kernel SHAP attribution on a
 * sample of rows, and its permutation importance (how far the test metric falls when that feature's
 * column is shuffled, over several shuffles).
 */
import type { Config } from '../config/defaults.js';
import { environmentError, inputError } from '../errors.js';
import { GrowingArray } from '../evaluate/batches.js';
import { chooseOutput, PredictionScorer, type Task } from '../evaluate/evaluate.js';
import type { HoldoutSource } from '../holdout/types.js';
import { LOWER_IS_BETTER } from '../metrics/regression.js';
import { seededRandom } from '../model/random.js';
import { explainableInput, rowsAsTensorData } from './tabular.js';
import type { Predictor, TensorSignature } from '../predict/predictor.js';
import { kernelExplainer, type BatchModel, type Explanation } from './kernel-shap.js';
import { sampleRows, shuffled } from './sample.js';

export interface ExplainSettings {
  samples: number;
  backgroundRows: number;
  rows: number;
  repeats: number;
  metric: string;
  seed: number;
}

export interface FeatureImportance {
  feature: string;
  /** Mean |attribution| over the explained rows and the output's columns. */
  meanAbsAttribution: number;
  /** The metric's fall when the feature's column is shuffled (a worsening: positive means the model needs it). */
  permutation: { mean: number; std: number; drops: number[] };
  /** (value, attribution) for each explained row, to the column `scatterColumn` names: the HTML's scatter. */
  points: [number, number][];
}

export interface GlobalExplanation {
  model: string;
  input: string;
  output: string;
  task: 'classification' | 'regression';
  holdoutRows: number;
  explainedRows: number;
  backgroundRows: number;
  /** Coalitions per explanation, and whether they were all of them (exact values). */
  coalitions: number;
  exact: boolean;
  /** Model rows one explanation costs: coalitions x background rows, plus the row. */
  modelRowsPerExplanation: number;
  /** Mean output over the background, per output column. */
  base: number[];
  /** The largest |base + sum of attributions - output| seen: the efficiency check, ~0. */
  maxEfficiencyError: number;
  metric: string;
  metricValue: number;
  repeats: number;
  /** Ranked by mean |attribution|. */
  features: FeatureImportance[];
  /** What the points' attributions are to: the output, its positive class, or each row's predicted class. */
  scatterColumn: string;
  seconds: number;
}

/** The one tabular input Kernel SHAP and permutation importance handle: [batch, features] of numbers. */
export function tabularInput(predictor: Pick<Predictor, 'inputs'>): TensorSignature & { width: number } {
  if (!explainableInput(predictor.inputs)) {
    const shown = predictor.inputs.map((i) => `${i.name} ${i.datatype} [${i.shape.join(', ')}]`).join(', ');
    throw inputError(
      `explanations take one numeric input, [batch, features] (Kernel SHAP) or image-like (occlusion), and this model has ${shown}`,
      'multi-input and string models are not explained yet',
    );
  }
  return { ...predictor.inputs[0], width: predictor.inputs[0].shape[1] };
}

/** Rows the model is given at once: big explanations are split so no request or tensor grows without bound. */
const CHUNK_ROWS = 4096;

/** The predictor as a batch model over one output, rows (`width` values each, shaped `rowDims`) as float64 in, the output's values out. */
export function batchModel(predictor: Predictor, input: TensorSignature & { width: number }, output: string, rowDims: number[] = [input.width]): BatchModel {
  const fixedBatch = predictor.inputs[0].shape[0] > 0 ? predictor.inputs[0].shape[0] : 0;
  return async (rows, count) => {
    const out: number[] = [];
    let width = 0;
    const step = fixedBatch || CHUNK_ROWS;
    for (let from = 0; from < count; from += step) {
      const n = Math.min(step, count - from);
      const sent = fixedBatch || n;
      // A fixed batch is filled up with copies of the last row; their outputs are dropped.
      const padded = new Float64Array(sent * input.width);
      for (let r = 0; r < sent; r++)
        padded.set(rows.subarray((from + Math.min(r, n - 1)) * input.width, (from + Math.min(r, n - 1) + 1) * input.width), r * input.width);
      const data = rowsAsTensorData(input.datatype, padded, sent * input.width);
      const answer = await predictor.predict({ [input.name]: { data: data, dims: [sent, ...rowDims] } });
      const tensor = answer[output];
      if (!tensor) throw environmentError(`the model's answer has no output '${output}'`);
      width = tensor.data.length / sent;
      for (let j = 0; j < n * width; j++) out.push(Number(tensor.data[j]));
    }
    return { data: out, width };
  };
}

/** The holdout in memory, its rows checked: features as a flat rows x width matrix, labels beside it. */
async function readHoldoutMatrix(
  holdout: HoldoutSource,
  input: TensorSignature & { width: number },
  features: string[],
  labelled: PredictionScorer,
): Promise<{ matrix: Float64Array; labels: ArrayLike<number>; rows: number }> {
  // Permutation importance scores the holdout whole, once per feature and repeat.
  // Typed, not a list of JS numbers: a large holdout stays a flat block of memory.
  const values = new GrowingArray(Float64Array);
  const labels = new GrowingArray(Float64Array);
  for await (const row of holdout.rows()) {
    const label = labelled.label(row.label);
    if (typeof label !== 'number') throw inputError(`${holdout.file} ${row.where}, label: ${label.problem}`, label.hint);
    const data = row.inputs[input.name];
    for (let i = 0; i < input.width; i++) {
      const v = Number(data[i]);
      if (!Number.isFinite(v))
        throw inputError(
          `${holdout.file} ${row.where}, ${features[i]}: ${JSON.stringify(data[i])} is not a number`,
          'explanations need every feature as a number',
        );
      values.push(v);
    }
    labels.push(label);
  }
  const rows = labels.length;
  if (rows < 2) throw inputError(`${holdout.file} has ${rows} row${rows === 1 ? '' : 's'}; explanations need at least 2`, 'use a larger holdout');
  return { matrix: values.view() as Float64Array, labels: labels.view(), rows };
}

interface HoldoutScore {
  metrics: Record<string, number | null>;
  task: Task;
}

/** Scores the model over the holdout's features as given (the original, or a copy with a column shuffled) against its labels. */
function holdoutScorer(
  model: BatchModel,
  rows: number,
  labels: ArrayLike<number>,
  scorer: () => PredictionScorer,
): (data: Float64Array) => Promise<HoldoutScore> {
  return async (data) => {
    const { data: predicted, width } = await model(data, rows);
    const s = scorer();
    for (let r = 0; r < rows; r++) s.add(labels[r], predicted, r * width, (r + 1) * width);
    return { metrics: s.score().metrics as unknown as Record<string, number | null>, task: s.task };
  };
}

/** The metric permutation importance watches (explain.metric, else the task's usual one) and its value on the holdout as it is. */
function chosenMetric(wanted: string, unshuffled: HoldoutScore): { metric: string; metricValue: number } {
  const metric = wanted || (unshuffled.task === 'classification' ? 'accuracy' : 'r2');
  const metricValue = unshuffled.metrics[metric];
  if (typeof metricValue !== 'number' || !Number.isFinite(metricValue)) {
    throw inputError(
      `explain.metric '${metric}' has no value for this ${unshuffled.task} model`,
      `pick one of: ${Object.entries(unshuffled.metrics)
        .filter(([, v]) => typeof v === 'number')
        .map(([k]) => k)
        .join(', ')}`,
    );
  }
  return { metric, metricValue };
}

/** Permutation importance: each feature's column shuffled `repeats` times, and how far the metric worsened each time. */
async function permutationImportance(options: {
  matrix: Float64Array;
  rows: number;
  input: { width: number };
  features: string[];
  repeats: number;
  metric: string;
  metricValue: number;
  scoreOf: (data: Float64Array) => Promise<HoldoutScore>;
  random: () => number;
  onProgress?: (line: string) => void;
}): Promise<FeatureImportance['permutation'][]> {
  const { matrix, rows, input, features, metric, metricValue, random } = options;
  const worse = LOWER_IS_BETTER.has(metric) ? (v: number) => v - metricValue : (v: number) => metricValue - v;
  const permutation: FeatureImportance['permutation'][] = [];
  for (let i = 0; i < input.width; i++) {
    const drops: number[] = [];
    for (let k = 0; k < options.repeats; k++) {
      const order = shuffled(rows, random);
      const copy = Float64Array.from(matrix);
      for (let r = 0; r < rows; r++) copy[r * input.width + i] = matrix[order[r] * input.width + i];
      const shuffledScore = (await options.scoreOf(copy)).metrics[metric];
      drops.push(typeof shuffledScore === 'number' ? worse(shuffledScore) : NaN);
    }
    if (drops.some((d) => !Number.isFinite(d)))
      throw environmentError(`shuffling ${features[i]} left ${metric} without a value`, 'pick another explain.metric');
    const mean = drops.reduce((a, b) => a + b, 0) / drops.length;
    const std = Math.sqrt(drops.reduce((a, d) => a + (d - mean) ** 2, 0) / Math.max(1, drops.length - 1));
    permutation.push({ mean, std, drops });
    options.onProgress?.(`permutation importance: ${i + 1}/${input.width} features`);
  }
  return permutation;
}

/** The output column a row's scatter point shows: the value, the positive class of two, or else the predicted class. */
function scatterColumnOf(e: Explanation): number {
  let top = e.width === 2 ? 1 : 0;
  if (e.width > 2) for (let k = 1; k < e.width; k++) if (e.output[k] > e.output[top]) top = k;
  return top;
}

/** The efficiency check on one explanation: the largest |base + sum of attributions - output| over its output columns. */
function efficiencyError(e: Explanation, features: number): number {
  let largest = 0;
  for (let k = 0; k < e.width; k++) {
    let sum = e.base[k];
    for (let i = 0; i < features; i++) sum += e.values[i * e.width + k];
    largest = Math.max(largest, Math.abs(sum - e.output[k]));
  }
  return largest;
}

/** Kernel SHAP on a seeded sample of rows, against a seeded background sample: each feature's mean |attribution| and scatter points. */
async function kernelShapAttributions(options: {
  model: BatchModel;
  matrix: Float64Array;
  rows: number;
  input: { width: number };
  settings: ExplainSettings;
  random: () => number;
  onProgress?: (line: string) => void;
}) {
  const { matrix, rows, input, settings, random } = options;
  const backgroundIndex = sampleRows(rows, settings.backgroundRows, random);
  const background = new Float64Array(backgroundIndex.length * input.width);
  backgroundIndex.forEach((r, b) => background.set(matrix.subarray(r * input.width, (r + 1) * input.width), b * input.width));
  const explainer = kernelExplainer(options.model, background, input.width, { samples: settings.samples, seed: settings.seed });
  const explained = sampleRows(rows, settings.rows, random);
  const sums = new Float64Array(input.width);
  const points: [number, number][][] = Array.from({ length: input.width }, () => []);
  let coalitions = 0;
  let exact = true;
  let maxEfficiencyError = 0;
  let width = 1;
  for (const [n, r] of explained.entries()) {
    const row = matrix.subarray(r * input.width, (r + 1) * input.width);
    const e = await explainer.explain(row);
    ({ coalitions, exact, width } = { coalitions: e.coalitions, exact: e.exact, width: e.width });
    const top = scatterColumnOf(e);
    maxEfficiencyError = Math.max(maxEfficiencyError, efficiencyError(e, input.width));
    for (let i = 0; i < input.width; i++) {
      for (let k = 0; k < e.width; k++) sums[i] += Math.abs(e.values[i * e.width + k]) / e.width;
      points[i].push([row[i], e.values[i * e.width + top]]);
    }
    options.onProgress?.(`attributions: ${n + 1}/${explained.length} rows`);
  }
  return {
    explainedRows: explained.length,
    backgroundRows: backgroundIndex.length,
    meanAbsAttribution: Array.from(sums, (sum) => sum / explained.length),
    points,
    coalitions,
    exact,
    maxEfficiencyError,
    outputColumns: width,
    base: Array.from(await explainer.base()).slice(0, width),
  };
}

export async function explainGlobally(options: {
  predictor: Predictor;
  holdout: HoldoutSource;
  test: Config['test'];
  settings: ExplainSettings;
  onProgress?: (line: string) => void;
}): Promise<GlobalExplanation> {
  const started = performance.now();
  const { predictor, holdout, test, settings } = options;
  const input = tabularInput(predictor);
  const output = chooseOutput(predictor, test.output);
  const scorer = () => new PredictionScorer(output, test);
  const features = holdout.featureNames[input.name] ?? Array.from({ length: input.width }, (_, i) => `${input.name}[${i}]`);
  const { matrix, labels, rows } = await readHoldoutMatrix(holdout, input, features, scorer());
  const model = batchModel(predictor, input, output.name);
  const scoreOf = holdoutScorer(model, rows, labels, scorer);
  const unshuffled = await scoreOf(matrix);
  const { metric, metricValue } = chosenMetric(settings.metric, unshuffled);
  // One seeded stream for the shuffles, then the background and the explained rows: the same report every time.
  const random = seededRandom(settings.seed);
  const { onProgress } = options;
  const permutation = await permutationImportance({
    matrix,
    rows,
    input,
    features,
    repeats: settings.repeats,
    metric,
    metricValue,
    scoreOf,
    random,
    onProgress,
  });
  const shap = await kernelShapAttributions({ model, matrix, rows, input, settings, random, onProgress });
  const result = features.map((feature, i) => ({
    feature,
    meanAbsAttribution: shap.meanAbsAttribution[i],
    permutation: permutation[i],
    points: shap.points[i],
  }));
  result.sort((a, b) => b.meanAbsAttribution - a.meanAbsAttribution);
  const width = shap.outputColumns;
  return {
    model: predictor.modelName,
    input: input.name,
    output: output.name,
    task: unshuffled.task,
    holdoutRows: rows,
    explainedRows: shap.explainedRows,
    backgroundRows: shap.backgroundRows,
    coalitions: shap.coalitions,
    exact: shap.exact,
    modelRowsPerExplanation: shap.coalitions * shap.backgroundRows + 1,
    base: shap.base,
    maxEfficiencyError: shap.maxEfficiencyError,
    metric,
    metricValue,
    repeats: settings.repeats,
    features: result,
    scatterColumn: width === 1 ? `'${output.name}'` : width === 2 ? `'${output.name}' class ${test.labels[1] ?? 1}` : "each row's predicted class",
    seconds: Math.round((performance.now() - started) / 10) / 100,
  };
}
