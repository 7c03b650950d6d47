import type { Config } from '../config/defaults.js';
import { environmentError, inputError, modelFailedError, shownValue } from '../errors.js';
import { ModelRunError } from '../model/run-error.js';
import { FeatureStatistics, type FeatureSummary } from '../holdout/stats.js';
import { seededRandom } from '../model/random.js';
import type { HoldoutRow, HoldoutSource } from '../holdout/types.js';
import { classificationMetrics, type ClassificationMetrics } from '../metrics/classification.js';
import { regressionMetrics, type RegressionMetrics } from '../metrics/regression.js';
import type { Outputs, Predictor, TensorSignature } from '../predict/predictor.js';
import { batchSizeFor, GrowingArray, inBatches, rowsToTensors } from './batches.js';

export type Task = 'classification' | 'regression';

export interface ParityResult {
  rows: number;
  tolerance: number;
  maxAbsDiff: number;
  passed: boolean;
  /** The worst difference found, when over the tolerance. */
  worst?: { row: string; output: string; index: number; server: number | string; local: number | string };
}

export interface Evaluation {
  task: Task;
  output: string;
  outputKind: 'probabilities' | 'logits' | 'labels' | 'values';
  rows: number;
  classes?: string[];
  metrics: ClassificationMetrics | RegressionMetrics;
  parity: ParityResult | null;
  featureStats: Record<string, FeatureSummary>;
  seconds: number;
  rowsPerSecond: number;
}

export interface EvaluateOptions {
  predictor: Predictor;
  holdout: HoldoutSource;
  settings: Config['test'];
  /** In-process ONNX Runtime on the same model, to check the packaged server against. */
  reference?: Predictor;
  onProgress?: (rows: number) => void;
}

const INTEGER_TYPES = new Set(['INT8', 'INT16', 'INT32', 'INT64', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'BOOL']);

/**
 * test.output, or else a float output with a column per class (probabilities
 * or logits: scikit-learn's converters put `label` first and `probabilities`
 * second, and only the scores give log_loss and roc_auc), or else the first.
 */
export function chooseOutput(predictor: Pick<Predictor, 'outputs'>, name: string): TensorSignature {
  if (!name) {
    const width = (o: TensorSignature) => o.shape.slice(1).reduce((n, d) => n * d, 1);
    return predictor.outputs.find((o) => ['FP16', 'FP32', 'FP64'].includes(o.datatype) && width(o) >= 2) ?? predictor.outputs[0];
  }
  const found = predictor.outputs.find((o) => o.name === name);
  if (!found) throw inputError(`test.output: the model has no output '${name}'`, `its outputs are: ${predictor.outputs.map((o) => o.name).join(', ')}`);
  return found;
}

export function decideTask(settings: Config['test'], output: TensorSignature): Task {
  if (settings.task) return settings.task;
  if (settings.labels.length > 0 || INTEGER_TYPES.has(output.datatype)) return 'classification';
  const width = output.shape.slice(1).reduce((n, d) => n * d, 1);
  return width >= 2 ? 'classification' : 'regression';
}

/** Why a label cannot be scored, with a hint; the caller names where it came from. */
export interface LabelProblem {
  problem: string;
  hint: string;
}

/**
 * Labels and predictions in, metrics out: the one definition of how a row is
 * scored, shared by `mlops test` (holdout rows) and `mlops monitor --labels`
 * (logged predictions joined with labels that came later).
 */
export class PredictionScorer {
  readonly task: Task;
  private readonly names: string[] | undefined;
  private readonly labelIndex: Map<string, number> | undefined;
  private readonly knownClasses: number | undefined;
  // Class indices fit Int32; FP32 outputs are kept as Float32, which is exact.
  private readonly yTrue: GrowingArray;
  private readonly scores: GrowingArray;
  private width = 0;

  constructor(
    readonly output: TensorSignature,
    private readonly settings: Config['test'],
  ) {
    this.task = decideTask(settings, output);
    this.names = settings.labels.length > 0 ? settings.labels : undefined;
    this.labelIndex = this.names ? new Map(this.names.map((n, i) => [n, i])) : undefined;
    const declaredWidth = output.shape.slice(1).reduce((n, d) => n * d, 1);
    this.knownClasses =
      this.task === 'classification' && !INTEGER_TYPES.has(output.datatype) && declaredWidth > 0 ? Math.max(2, declaredWidth) : this.names?.length;
    this.yTrue = new GrowingArray(this.task === 'classification' ? Int32Array : Float64Array);
    this.scores = new GrowingArray(output.datatype === 'FP32' || output.datatype === 'FP16' ? Float32Array : Float64Array);
  }

  get rows(): number {
    return this.yTrue.length;
  }

  /** A label as written (a class name, a class index, a value) as the number scored, or why it cannot be. */
  label(raw: unknown): number | LabelProblem {
    if (this.task === 'regression') {
      const value = typeof raw === 'number' ? raw : Number(String(raw).trim());
      if (String(raw).trim() === '' || !Number.isFinite(value))
        return { problem: `${JSON.stringify(raw)} is not a number`, hint: 'a regression holdout needs a numeric target' };
      return value;
    }
    if (this.labelIndex) {
      const index = this.labelIndex.get(String(raw).trim());
      if (index === undefined)
        return {
          problem: `'${shownValue(raw)}' is not one of the classes ${JSON.stringify(this.names)}`,
          hint: 'fix the row, or add the class to test.labels',
        };
      return index;
    }
    const value = Number(String(raw).trim());
    if (!Number.isInteger(value) || value < 0 || (this.knownClasses !== undefined && value >= this.knownClasses)) {
      const range = this.knownClasses !== undefined ? `0..${this.knownClasses - 1}` : 'a class index (0, 1, ...)';
      return {
        problem: `'${shownValue(raw)}' is outside the model's classes (${range})`,
        hint: 'set test.labels to map class indices to the labels in the file',
      };
    }
    return value;
  }

  /** One row: its label (from label()) and the scored output's values for that row, data[start..end). */
  add(label: number, data: ArrayLike<number | bigint | string>, start = 0, end = data.length): void {
    const width = end - start;
    if (this.width === 0) {
      this.width = width;
      if (this.task === 'regression' && this.width !== 1) {
        throw inputError(
          `output '${this.output.name}' has ${this.width} values a row; a regression needs one`,
          'set test.task, or test.output to the value output',
        );
      }
    } else if (width !== this.width) {
      throw environmentError(`output '${this.output.name}' has ${width} values in a row after ${this.width} in earlier ones`);
    }
    this.yTrue.push(label);
    for (let j = start; j < end; j++) this.scores.push(Number(data[j]));
  }

  score(): Pick<Evaluation, 'metrics' | 'outputKind' | 'classes'> {
    return score(this.task, this.yTrue.view(), this.scores.view(), this.width, this.output, this.settings, this.names);
  }
}

/** Streams the holdout through the model in batches and scores the predictions. */
export async function evaluate(options: EvaluateOptions): Promise<Evaluation> {
  const started = performance.now();
  const { predictor, holdout, settings } = options;
  const output = chooseOutput(predictor, settings.output);
  const scorer = new PredictionScorer(output, settings);
  const { task } = scorer;

  const { size: batchSize, fixed } = batchSizeFor(predictor.inputs, settings.batchSize);
  const stats = new FeatureStatistics(holdout.featureNames);
  const paritySize = options.reference ? settings.parity.sample : 0;
  const sample: { row: HoldoutRow; outputs: Record<string, (number | string)[]> }[] = [];
  const random = seededRandom(42);
  let rows = 0;

  const label = (row: HoldoutRow): number => {
    const value = scorer.label(row.label);
    if (typeof value !== 'number') throw inputError(`${holdout.file} ${row.where}, label: ${value.problem}`, value.hint);
    return value;
  };

  const run = async (batch: HoldoutRow[]) => {
    const labels = batch.map(label);
    let outputs: Outputs;
    try {
      outputs = await predictor.predict(rowsToTensors(batch, predictor.inputs, fixed ? batchSize : batch.length));
    } catch (error) {
      if (!(error instanceof ModelRunError)) throw error;
      const rowsNamed = batch.length === 1 ? batch[0].where : `${batch[0].where} to ${batch.at(-1)!.where}`;
      throw modelFailedError(
        `the model failed on ${holdout.file} ${rowsNamed}: ${error.message}`,
        'the model cannot run on these rows: check it with `mlops inspect` and the rows against its inputs',
        error,
      );
    }
    const tensor = outputs[output.name];
    if (!tensor) throw environmentError(`the model's answer has no output '${output.name}'`);
    const sent = fixed ? batchSize : batch.length;
    if (tensor.dims[0] !== sent) throw environmentError(`output '${output.name}' has ${tensor.dims[0]} rows for a batch of ${sent}`);
    const rowWidth = tensor.data.length / sent;
    batch.forEach((row, r) => {
      scorer.add(labels[r], tensor.data, r * rowWidth, (r + 1) * rowWidth);
      stats.add(row.inputs);
      sampleRow(row, r, outputs, sent);
      rows++;
    });
    options.onProgress?.(rows);
  };

  const sampleRow = (row: HoldoutRow, r: number, outputs: Outputs, sent: number) => {
    if (paritySize === 0) return;
    let slot = sample.length;
    if (sample.length >= paritySize) {
      slot = Math.floor(random() * (rows + 1));
      if (slot >= paritySize) return;
    }
    const kept: Record<string, (number | string)[]> = {};
    for (const [name, t] of Object.entries(outputs)) {
      const w = t.data.length / sent;
      kept[name] = Array.from({ length: w }, (_, j) => t.data[r * w + j]);
    }
    sample[slot] = { row, outputs: kept };
  };

  for await (const batch of inBatches(holdout.rows(), batchSize)) await run(batch);
  if (rows === 0) throw inputError(`${holdout.file} has no rows to score`, 'the holdout needs at least one data row after the header');

  const parity = options.reference ? await checkParity(options.reference, sample, settings.parity.tolerance, fixed ? batchSize : settings.batchSize) : null;
  const scored = scorer.score();
  const seconds = (performance.now() - started) / 1000;
  return {
    task,
    output: output.name,
    rows,
    ...scored,
    parity,
    featureStats: stats.summary(),
    seconds,
    rowsPerSecond: rows / seconds,
  };
}

function score(
  task: Task,
  yTrue: ArrayLike<number>,
  raw: ArrayLike<number>,
  width: number,
  output: TensorSignature,
  settings: Config['test'],
  names: string[] | undefined,
): Pick<Evaluation, 'metrics' | 'outputKind' | 'classes'> {
  const n = yTrue.length;
  if (task === 'regression') return { metrics: regressionMetrics(yTrue, raw), outputKind: 'values' };
  if (INTEGER_TYPES.has(output.datatype)) {
    if (width !== 1)
      throw inputError(`output '${output.name}' has ${width} integer values a row; expected one class index`, 'set test.output to the label or score output');
    let k = names?.length ?? 0;
    if (!names) for (let i = 0; i < n; i++) k = Math.max(k, yTrue[i] + 1, raw[i] + 1);
    for (let i = 0; i < n; i++) {
      if (!Number.isInteger(raw[i]) || raw[i] < 0 || raw[i] >= k) throw environmentError(`the model predicted class ${raw[i]}, outside 0..${k - 1}`);
    }
    const classes = names ?? Array.from({ length: k }, (_, i) => String(i));
    return { metrics: classificationMetrics(yTrue, raw, undefined, classes), outputKind: 'labels', classes };
  }
  const k = width === 1 ? 2 : width;
  const classes = names ?? Array.from({ length: k }, (_, i) => String(i));
  if (classes.length !== k) {
    throw inputError(
      `test.labels lists ${classes.length} classes but output '${output.name}' scores ${k}`,
      'list one label per class, in the order of the output columns',
    );
  }
  let kind = settings.outputKind;
  if (kind === 'auto') {
    kind = 'probabilities';
    for (let i = 0; i < n && kind === 'probabilities'; i++) {
      let sum = 0;
      for (let j = 0; j < width; j++) {
        const v = raw[i * width + j];
        if (!(v >= 0 && v <= 1)) kind = 'logits';
        sum += v;
      }
      if (width > 1 && Math.abs(sum - 1) > 1e-3) kind = 'logits';
    }
  }
  // Probabilities are scored as they came (no copy); logits and sigmoid columns need their own.
  const passThrough = kind === 'probabilities' && width === k;
  const proba = passThrough ? raw : new Float64Array(n * k);
  const yPred = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    if (width === 1) {
      const out = proba as Float64Array;
      const p = kind === 'logits' ? 1 / (1 + Math.exp(-raw[i])) : raw[i];
      out[i * 2] = 1 - p;
      out[i * 2 + 1] = p;
      yPred[i] = p >= settings.threshold ? 1 : 0;
      continue;
    }
    let best = 0;
    let max = -Infinity;
    for (let j = 0; j < k; j++) {
      const v = raw[i * k + j];
      if (v > max) {
        max = v;
        best = j;
      }
    }
    yPred[i] = best;
    if (kind === 'logits') {
      const out = proba as Float64Array;
      let sum = 0;
      for (let j = 0; j < k; j++) sum += Math.exp(raw[i * k + j] - max);
      for (let j = 0; j < k; j++) out[i * k + j] = Math.exp(raw[i * k + j] - max) / sum;
    }
  }
  return { metrics: classificationMetrics(yTrue, yPred, proba, classes), outputKind: kind, classes };
}

async function checkParity(
  reference: Predictor,
  sample: { row: HoldoutRow; outputs: Record<string, (number | string)[]> }[],
  tolerance: number,
  batchSize: number,
): Promise<ParityResult> {
  const result: ParityResult = { rows: sample.length, tolerance, maxAbsDiff: 0, passed: true };
  const fixedSize = reference.inputs[0]?.shape[0];
  const size = fixedSize && fixedSize > 0 ? fixedSize : batchSize;
  for (let start = 0; start < sample.length; start += size) {
    const part = sample.slice(start, start + size);
    const local = await reference.predict(
      rowsToTensors(
        part.map((s) => s.row),
        reference.inputs,
        fixedSize && fixedSize > 0 ? size : part.length,
      ),
    );
    const sent = fixedSize && fixedSize > 0 ? size : part.length;
    part.forEach((entry, r) => {
      for (const [name, server] of Object.entries(entry.outputs)) {
        const mine = local[name];
        if (!mine) continue;
        const w = mine.data.length / sent;
        for (let j = 0; j < w; j++) {
          const a = server[j];
          const b = mine.data[r * w + j];
          const diff = typeof a === 'number' && typeof b === 'number' ? (Number.isNaN(a) && Number.isNaN(b) ? 0 : Math.abs(a - b)) : a === b ? 0 : Infinity;
          if (!(diff <= result.maxAbsDiff)) {
            result.maxAbsDiff = Number.isNaN(diff) ? Infinity : diff;
            if (result.maxAbsDiff > tolerance) result.worst = { row: entry.row.where, output: name, index: j, server: a, local: b };
          }
        }
      }
    });
  }
  result.passed = result.maxAbsDiff <= tolerance;
  if (result.passed) delete result.worst;
  return result;
}
