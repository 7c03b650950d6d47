/**
 * Computes the reference profile at build time: the model is run in-process
 * over the reference dataset (monitor.reference, else test.holdout), bin edges
 * come from the quantiles of a row sample, and the shares from every row.
 */
import path from 'node:path';
import { createPreprocessor, processingFor, type ProcessingPlan } from '../processing/plan.js';
import type { Config } from '../config/defaults.js';
import { ExitCode, inputError, isMlopsError } from '../errors.js';
import { batchSizeFor, GrowingArray, inBatches, rowsToTensors } from '../evaluate/batches.js';
import { chooseOutput, decideTask } from '../evaluate/evaluate.js';
import { Moments, RowReservoir } from '../holdout/stats.js';
import { openHoldout } from '../holdout/open.js';
import type { HoldoutRow, HoldoutSource } from '../holdout/types.js';
import { fromHalfBits, toHalfBits, type Datatype } from '../model/datatypes.js';
import { inspectModel } from '../model/inspect.js';
import { openLocalPredictor, type Predictor, type TensorSignature } from '../predict/predictor.js';
import { explainableInput } from '../explain/tabular.js';
import { binIndex, quantileEdges, shares } from './drift.js';
import {
  featureValue,
  planFeatures,
  PROFILE_FORMAT,
  PROFILE_VERSION,
  type FeaturePlan,
  type FeatureProfile,
  type PredictionPlan,
  type PredictionProfile,
  type ReferenceProfile,
  type TextFeatureRoles,
} from './profile.js';

/** Rows whose feature values are kept for the quantiles; the shares count every row. */
const SAMPLE_ROWS = 20_000;
const INTEGER_TYPES = new Set(['INT8', 'INT16', 'INT32', 'INT64', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'BOOL']);

export interface ReferenceOptions {
  modelPath: string;
  modelName: string;
  config: Config;
  /** The config file's folder: relative paths in config are resolved from it. */
  projectDir: string;
  onProgress?: (rows: number) => void;
}

/** How the scored output becomes a predicted class (or value), as `mlops test` reads it. */
function planPrediction(outputs: TensorSignature[], settings: Config['test']): PredictionPlan {
  const output = chooseOutput({ outputs }, settings.output);
  const task = decideTask(settings, output);
  const width = output.shape.slice(1).reduce((n, d) => n * d, 1);
  const names = settings.labels.length > 0 ? settings.labels : undefined;
  if (task === 'regression') return { output: output.name, kind: 'value' };
  if (INTEGER_TYPES.has(output.datatype)) {
    return { output: output.name, kind: 'label', classes: names ?? [], labelValues: names ? names.map((_, i) => i) : [] };
  }
  if (width === 1) {
    const cut = settings.outputKind === 'logits' ? Math.log(settings.threshold / (1 - settings.threshold)) : settings.threshold;
    return { output: output.name, kind: 'threshold', classes: names ?? ['0', '1'], cut };
  }
  return { output: output.name, kind: 'argmax', classes: names ?? Array.from({ length: Math.max(width, 0) }, (_, i) => String(i)) };
}

type Header = ReferenceOptions & { sha256: string };

function emptyProfile(options: Header, model: Predictor, unavailable: string): ReferenceProfile {
  const plan = planPrediction(model.outputs, options.config.test);
  const prediction: PredictionProfile | null =
    plan.kind === 'value' || (plan.kind === 'label' && plan.classes!.length === 0) ? null : { ...plan, shares: null };
  return {
    ...header(options, model),
    source: null,
    unavailable,
    warnings: [],
    features: [],
    skipped: [],
    prediction,
  };
}

function header(options: Header, model: Predictor) {
  return {
    format: PROFILE_FORMAT,
    version: PROFILE_VERSION,
    model: { name: options.modelName, sha256: options.sha256, inputs: model.inputs.map(({ name, datatype, shape }) => ({ name, datatype, shape })) },
    windowRows: options.config.monitor.windowRows,
    bins: options.config.monitor.bins,
  } as const;
}

/** Per-feature moments and a uniform row sample of values, in one pass. */
class FeatureAccumulator {
  readonly moments: Moments;
  readonly sample = new RowReservoir<Float64Array>(SAMPLE_ROWS, 11);

  constructor(
    private readonly features: FeaturePlan[],
    private readonly datatypes: Map<string, Datatype>,
  ) {
    this.moments = new Moments(features.length);
  }

  add(row: HoldoutRow): void {
    const values = rowValues(this.features, row, this.datatypes);
    values.forEach((v, f) => {
      if (!Number.isNaN(v)) this.moments.add(f, v);
    });
    this.sample.offer(values);
  }
}

/**
 * The row's values as the model, and so the server, sees them: a CSV's 6.981
 * is 6.980999946594238 in an FP32 tensor, and an edge at the first would put
 * the live minimum below the range.
 */
function inModelPrecision(datatype: Datatype | undefined, data: number[]): ArrayLike<number> {
  if (datatype === 'FP32') return Float32Array.from(data);
  if (datatype === 'FP16') return data.map((v) => fromHalfBits(toHalfBits(v)));
  return data;
}

function rowValues(features: FeaturePlan[], row: HoldoutRow, datatypes: Map<string, Datatype>): Float64Array {
  const values = new Float64Array(features.length);
  const converted = new Map<string, ArrayLike<number>>();
  features.forEach((f, i) => {
    const raw = row.inputs[f.input] as number[] | undefined;
    if (!raw) return (values[i] = NaN);
    let data = converted.get(f.input);
    if (!data) converted.set(f.input, (data = inModelPrecision(datatypes.get(f.input), raw)));
    values[i] = featureValue(f.stat, f.index, data, 0, data.length);
  });
  return values;
}

/** Runs the model over the dataset in batches; the raw prediction of each row (class index, score or value). */
async function predictAll(
  predictor: Predictor,
  holdout: HoldoutSource,
  plan: PredictionPlan,
  batchRows: number,
  each: (row: HoldoutRow) => void,
  onProgress?: (rows: number) => void,
): Promise<Float64Array> {
  const { size, fixed } = batchSizeFor(predictor.inputs, batchRows);
  const raw = new GrowingArray(Float64Array);
  let rows = 0;
  const run = async (batch: HoldoutRow[]) => {
    const sent = fixed ? size : batch.length;
    const outputs = await predictor.predict(rowsToTensors(batch, predictor.inputs, sent));
    const tensor = outputs[plan.output];
    const values = tensor.data as ArrayLike<number>;
    const width = values.length / sent;
    for (let r = 0; r < batch.length; r++) {
      if (plan.kind === 'argmax') {
        let best = 0;
        for (let j = 1; j < width; j++) if (values[r * width + j] > values[r * width + best]) best = j;
        raw.push(best);
      } else raw.push(Number(values[r * width]));
      each(batch[r]);
    }
    rows += batch.length;
    onProgress?.(rows);
  };
  for await (const batch of inBatches(holdout.rows(), size)) await run(batch);
  return raw.view() as Float64Array;
}

function sortedFinite(values: Iterable<number>): Float64Array {
  return Float64Array.from([...values].filter((v) => !Number.isNaN(v))).sort();
}

export async function buildReferenceProfile(settings: ReferenceOptions): Promise<ReferenceProfile> {
  const { config } = settings;
  const options: Header = { ...settings, sha256: (await inspectModel(settings.modelPath, { cwd: settings.projectDir })).sha256 };
  const predictor = await openLocalPredictor(options.modelPath, options.modelName, settings.projectDir);
  try {
    const dataset = config.monitor.reference || config.test.holdout;
    if (!dataset) return emptyProfile(options, predictor, 'no reference data: set monitor.reference (or test.holdout) to a dataset in a holdout format');
    const field = config.monitor.reference ? 'monitor.reference' : 'test.holdout';
    try {
      return await profileDataset(options, predictor, dataset, field);
    } catch (error) {
      // A reference named for the purpose must fit; the holdout borrowed in its place only costs the profile.
      if (field !== 'test.holdout' || !isMlopsError(error) || error.exitCode !== ExitCode.badInput) throw error;
      const profile = emptyProfile(options, predictor, `the reference data could not be profiled: ${error.message}`);
      profile.warnings.push(`no reference profile, so no drift checks: ${error.message}; set monitor.reference to a dataset that fits the model`);
      return profile;
    }
  } finally {
    await predictor.close();
  }
}

async function profileDataset(options: Header, predictor: Predictor, dataset: string, field: string): Promise<ReferenceProfile> {
  const { config } = options;
  // A model folder's preprocessing reads image and text data; a text model is profiled by tokens.
  const processing = await processingFor(path.resolve(options.projectDir, options.modelPath), { inputs: predictor.inputs, outputs: [] }, config.model);
  const holdout = await openHoldout({
    cwd: options.projectDir,
    holdout: dataset,
    inputs: predictor.inputs,
    label: config.test.label,
    labelOptional: true,
    features: config.test.features,
    processing,
  }).catch((error: Error) => {
    throw Object.assign(error, { message: `${field}: ${error.message}` });
  });
  const bins = config.monitor.bins;
  const text = processing?.text ? textRoles(processing) : undefined;
  const { features: planned, skipped } = planFeatures(predictor.inputs, holdout.featureNames, text);
  const plan = planPrediction(predictor.outputs, config.test);
  const datatypes = new Map(predictor.inputs.map((t) => [t.name, t.datatype]));
  const accumulator = new FeatureAccumulator(planned, datatypes);
  const background =
    explainableInput(predictor.inputs) && config.explain.backgroundRows > 0
      ? new RowReservoir<number[]>(config.explain.backgroundRows, config.explain.seed)
      : undefined;
  const tabular = predictor.inputs[0];
  const raw = await predictAll(
    predictor,
    holdout,
    plan,
    config.test.batchSize,
    (row) => {
      accumulator.add(row);
      background?.offer((row.inputs[tabular.name] as number[]).map(Number));
    },
    options.onProgress,
  );
  const rows = raw.length;
  if (rows === 0) throw inputError(`${field} ${dataset} has no rows`, 'the reference needs rows to learn the bins from');

  const { features, warnings } = featureProfiles(planned, accumulator, bins, dataset);
  await countShares(holdout, planned, datatypes, features, bins);

  return {
    ...header(options, predictor),
    source: { file: path.relative(options.projectDir, path.resolve(options.projectDir, dataset)) || dataset, format: holdout.format, rows },
    warnings,
    features,
    skipped,
    prediction: predictionProfile(plan, raw, bins, config.test),
    ...explainBackground(background, tabular, holdout.featureNames),
  };
}

/** Each feature's bin edges (from the row sample's quantiles) and moments; features without a numeric value are left out, with a warning. */
function featureProfiles(
  planned: FeaturePlan[],
  accumulator: FeatureAccumulator,
  bins: number,
  dataset: string,
): { features: FeatureProfile[]; warnings: string[] } {
  const warnings: string[] = [];
  const features: FeatureProfile[] = [];
  planned.forEach((f, i) => {
    const sorted = sortedFinite(accumulator.sample.rows.map((values) => values[i]));
    if (sorted.length === 0) {
      warnings.push(`feature '${f.name}' has no numeric values in ${dataset}: it is not profiled`);
      return;
    }
    const m = accumulator.moments;
    if (m.min[i] === m.max[i]) {
      warnings.push(`feature '${f.name}' is constant (${m.min[i]}) in ${dataset}: every other live value counts as out of range`);
    }
    features.push({
      ...f,
      edges: quantileEdges(sorted, bins),
      shares: [],
      count: m.count[i],
      mean: m.mean[i],
      std: m.std(i),
      min: m.min[i],
      max: m.max[i],
    });
  });
  return { features, warnings };
}

/** Second pass: each feature's shares from every row, not only the sample the edges came from. */
async function countShares(holdout: HoldoutSource, planned: FeaturePlan[], datatypes: Map<string, Datatype>, features: FeatureProfile[], bins: number) {
  const counts = features.map(() => new Array<number>(bins + 3).fill(0));
  const byFeature = features.map((f) => planned.findIndex((p) => p.name === f.name));
  for await (const row of holdout.rows()) {
    const values = rowValues(planned, row, datatypes);
    features.forEach((f, i) => counts[i][binIndex(f.edges, values[byFeature[i]])]++);
  }
  features.forEach((f, i) => (f.shares = shares(counts[i].slice(0, bins + 2))));
}

/** The rows `mlops explain` may use as its background, when the model is tabular and every sampled value is a number. */
function explainBackground(
  background: RowReservoir<number[]> | undefined,
  tabular: TensorSignature,
  featureNames: HoldoutSource['featureNames'],
): { explainBackground?: NonNullable<ReferenceProfile['explainBackground']> } {
  if (!background || background.rows.length === 0 || !background.rows.every((r) => r.every(Number.isFinite))) return {};
  return {
    explainBackground: {
      input: tabular.name,
      features: featureNames[tabular.name] ?? Array.from({ length: tabular.shape[1] }, (_, i) => `${tabular.name}[${i}]`),
      rows: background.rows,
    },
  };
}

function predictionProfile(plan: PredictionPlan, raw: Float64Array, bins: number, settings: Config['test']): PredictionProfile {
  if (plan.kind === 'value') {
    const edges = quantileEdges(sortedFinite(raw), bins);
    const counts = new Array<number>(bins + 3).fill(0);
    for (const v of raw) counts[binIndex(edges, v)]++;
    return { ...plan, edges, shares: shares(counts.slice(0, bins + 2)) };
  }
  if (plan.kind === 'threshold' && settings.outputKind === 'auto' && raw.some((v) => v < 0 || v > 1)) {
    // Scores outside [0, 1] are logits, as `mlops test` decides: the cut moves to the threshold's logit.
    plan = { ...plan, cut: Math.log(settings.threshold / (1 - settings.threshold)) };
  }
  if (plan.kind === 'label' && plan.classes!.length === 0) {
    const seen = [...new Set(raw)].sort((a, b) => a - b);
    plan = { ...plan, classes: seen.map(String), labelValues: seen };
  }
  const classes = plan.classes!;
  const counts = new Array<number>(classes.length + 1).fill(0);
  const index = plan.kind === 'label' ? new Map(plan.labelValues!.map((v, i) => [v, i])) : undefined;
  for (const v of raw) {
    const c = plan.kind === 'threshold' ? (v >= plan.cut! ? 1 : 0) : plan.kind === 'label' ? (index!.get(v) ?? classes.length) : v;
    counts[Number.isInteger(c) && c >= 0 && c < classes.length ? c : classes.length]++;
  }
  return { ...plan, shares: shares(counts) };
}

/** A text plan's inputs and unknown token, for the profile's token features. */
function textRoles(plan: ProcessingPlan): TextFeatureRoles {
  const roles = plan.text!.settings.inputs;
  const unknownId = createPreprocessor(plan)?.tokenizer?.unknownId;
  return { ids: roles.ids.name, ...(roles.mask ? { mask: roles.mask.name } : {}), ...(unknownId !== undefined ? { unknownId } : {}) };
}
