/**
 * The reference profile: what `mlops build` learns of the data a model was
 * validated on (bin edges and shares per feature, and of its predictions), and
 * the one definition of "feature" and "predicted class" that the build, the
 * server's live counters and `mlops monitor` share. Only counts and summary
 * statistics live here, never rows.
 */
import { createHash } from 'node:crypto';
import { fromHalfBits, type Datatype, type TensorData } from '../model/datatypes.js';
import type { ValueRange } from '../model/sample-inputs.js';
import type { Tensors } from '../model/session.js';
import { binIndex } from './drift.js';

export const PROFILE_FORMAT = 'mlops-reference-profile';
export const PROFILE_VERSION = 1;
/** Where the profile sits in an image, beside the model. */
export const PROFILE_IMAGE_PATH = '/app/model/reference-profile.json';
export const PROFILE_LABEL = 'mlops.reference-profile.sha256';
/** 2-D inputs with more columns than this (embeddings) are profiled by row statistics, as images are: a counter per column would swamp Prometheus. */
export const MAX_COLUMNS = 256;
/** Fits the per-row bin indices the server keeps in a Uint8Array. */
export const MAX_BINS = 100;

/** The profile's identity: the image label, and the `reference` label on the live counters (its first 12 digits). */
export const profileSha256 = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');

/**
 * value: one column of a tabular input; mean/std/min/max: a statistic of a whole row (images, audio, sequences);
 * sum: the row's sum (a text model's attention mask: its length in tokens, however it was padded);
 * count: how many of the row's values equal `index` (the unknown token's id among a text's ids).
 */
export type RowStat = 'value' | 'mean' | 'std' | 'min' | 'max' | 'sum' | 'count';

/** A text model's inputs by role, so that its profile counts tokens rather than ids' statistics. */
export interface TextFeatureRoles {
  ids: string;
  mask?: string;
  unknownId?: number;
}
const ROW_STATS: RowStat[] = ['mean', 'std', 'min', 'max'];

export interface TensorShape {
  name: string;
  datatype: Datatype;
  shape: number[];
}

export interface FeaturePlan {
  name: string;
  input: string;
  stat: RowStat;
  /** The column, for stat 'value'. */
  index: number;
}

export interface FeatureProfile extends FeaturePlan {
  /** bins + 1 edges at the reference quantiles. */
  edges: number[];
  /** Reference shares: [below, ...bins, above]; the ends are 0 by construction. */
  shares: number[];
  count: number;
  mean: number;
  std: number;
  min: number;
  max: number;
}

/**
 * How a row's predicted class is read from the scored output: argmax of the
 * class scores, the integer label itself, a single score against a cut, or for
 * a regression the value, binned like a feature.
 */
export interface PredictionPlan {
  output: string;
  kind: 'argmax' | 'label' | 'threshold' | 'value';
  classes?: string[];
  /** kind 'label': the output value of each class. */
  labelValues?: number[];
  /** kind 'threshold': class 1 when the score is >= cut (the threshold, or its logit for a logits output). */
  cut?: number;
}

export interface PredictionProfile extends PredictionPlan {
  edges?: number[];
  /** Reference shares: a class's, plus 'other' last; or [below, ...bins, above] for values. Null without a reference. */
  shares: number[] | null;
}

export interface ReferenceProfile {
  format: typeof PROFILE_FORMAT;
  version: typeof PROFILE_VERSION;
  model: { name: string; sha256: string; inputs: TensorShape[] };
  /** Rows in the server's sliding window. */
  windowRows: number;
  bins: number;
  source: { file: string; format: string; rows: number } | null;
  /** Why there is no reference data; features are then empty and only predicted classes are counted. */
  unavailable?: string;
  /** Things about the reference a user should know (constant columns). */
  warnings: string[];
  features: FeatureProfile[];
  /** Inputs that are not profiled, and why. */
  skipped: { input: string; reason: string }[];
  prediction: PredictionProfile | null;
  /**
   * Reference rows of a tabular model's one input, the background its explanations are measured
   * against (a seeded sample of explain.backgroundRows rows); absent when explain.backgroundRows is 0
   * or the model is not tabular.
   */
  explainBackground?: { input: string; features: string[]; rows: number[][] };
}

/** Which features a model's inputs give: a column each for a tabular input, four row statistics for anything else. */
export function planFeatures(
  inputs: TensorShape[],
  featureNames: Record<string, string[]>,
  text?: TextFeatureRoles,
): { features: FeaturePlan[]; skipped: ReferenceProfile['skipped'] } {
  const features: FeaturePlan[] = [];
  const skipped: ReferenceProfile['skipped'] = [];
  // Token ids are names, not quantities, and their rows are padded differently in a holdout and in a
  // request: a text model is profiled by its length in tokens and its count of unknown tokens.
  if (text) {
    if (text.mask) features.push({ name: 'tokens', input: text.mask, stat: 'sum', index: 0 });
    if (text.unknownId !== undefined) features.push({ name: 'unknown_tokens', input: text.ids, stat: 'count', index: text.unknownId });
  }
  for (const input of inputs) {
    if (text && (input.name === text.ids || input.name === text.mask || input.datatype.startsWith('INT'))) {
      skipped.push({ input: input.name, reason: 'a token input: profiled as tokens and unknown_tokens' });
      continue;
    }
    if (input.datatype === 'BYTES') {
      skipped.push({ input: input.name, reason: 'strings are not profiled' });
      continue;
    }
    const rowShape = input.shape.slice(1);
    const columns = rowShape.length === 0 ? 1 : rowShape.length === 1 && rowShape[0] > 0 ? rowShape[0] : 0;
    if (columns > 0 && columns <= MAX_COLUMNS) {
      const names = featureNames[input.name] ?? [];
      for (let i = 0; i < columns; i++) {
        const name = names.length === columns ? names[i] : columns === 1 ? input.name : `${input.name}[${i}]`;
        features.push({ name, input: input.name, stat: 'value', index: i });
      }
    } else {
      for (const stat of ROW_STATS) features.push({ name: `${input.name}.${stat}`, input: input.name, stat, index: 0 });
    }
  }
  // Names are label values and keys: two inputs with a column of one name would merge.
  const seen = new Set<string>();
  for (const f of features) {
    if (seen.has(f.name)) f.name = `${f.input}.${f.name}`;
    seen.add(f.name);
  }
  return { features, skipped };
}

/** Any tensor's elements as plain numbers (INT64 and FP16 converted; others viewed as they are). */
export function numbersOf(datatype: Datatype, data: TensorData | ArrayLike<number>): ArrayLike<number> {
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return Float64Array.from(data, Number);
  if (datatype === 'FP16' && data instanceof Uint16Array) return Float64Array.from(data, fromHalfBits);
  return data as ArrayLike<number>;
}

/**
 * Rows longer than this (images, audio) are summarised from a sample of this
 * many values, the same at build and at serve time: SAMPLE_CHUNKS runs of
 * contiguous values spread evenly over the row. A full pass over a
 * 150,528-value image cost the server half its throughput on image_cnn (npm run
 * bench, profiling section); 4,096 values one every 37 still cost ~50 µs an
 * image in cache misses in a worker, 64 runs of 64 ~32 µs, 16 runs of 256 ~19 µs.
 */
export const MAX_SUMMARY_VALUES = 4096;
const SAMPLE_CHUNKS = 16;

export interface RowSummary {
  mean: number;
  std: number;
  min: number;
  max: number;
}

/** mean, std (population), min and max of one row in one pass (over a sample past MAX_SUMMARY_VALUES). */
export function summariseRow(values: ArrayLike<number>, offset: number, length: number): RowSummary {
  if (length === 0) return { mean: NaN, std: NaN, min: NaN, max: NaN };
  const chunks = length > MAX_SUMMARY_VALUES ? SAMPLE_CHUNKS : 1;
  const chunk = length > MAX_SUMMARY_VALUES ? MAX_SUMMARY_VALUES / SAMPLE_CHUNKS : length;
  let sum = 0;
  let squares = 0;
  let min = Infinity;
  let max = -Infinity;
  for (let c = 0; c < chunks; c++) {
    const start = offset + (chunks === 1 ? 0 : Math.floor((c * (length - chunk)) / (chunks - 1)));
    const end = start + chunk;
    for (let i = start; i < end; i++) {
      const v = values[i];
      sum += v;
      squares += v * v;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  const n = chunks * chunk;
  const mean = sum / n;
  return { mean, std: Math.sqrt(Math.max(0, squares / n - mean * mean)), min, max };
}

/** One feature's value for the row at values[offset, offset + length). */
export function featureValue(stat: RowStat, index: number, values: ArrayLike<number>, offset: number, length: number): number {
  if (stat === 'value') return index < length ? Number(values[offset + index]) : NaN;
  if (stat === 'sum' || stat === 'count') return countRow(stat, index, values, offset, length);
  return summariseRow(values, offset, length)[stat];
}

/** A row's sum, or its count of values equal to `index`: every value read (text rows are short). */
function countRow(stat: 'sum' | 'count', index: number, values: ArrayLike<number>, offset: number, length: number): number {
  let total = 0;
  for (let i = offset; i < offset + length; i++) total += stat === 'sum' ? Number(values[i]) : Number(values[i]) === index ? 1 : 0;
  return total;
}

/** A row's predicted class index (classes.length for one outside them), or for kind 'value' the predicted value. */
export function predictionValue(plan: PredictionPlan, values: ArrayLike<number>, offset: number, width: number, labelIndex?: Map<number, number>): number {
  switch (plan.kind) {
    case 'value':
      return Number(values[offset]);
    case 'threshold':
      return values[offset] >= plan.cut! ? 1 : 0;
    case 'label':
      return labelIndex?.get(Number(values[offset])) ?? plan.classes!.length;
    case 'argmax': {
      let best = 0;
      for (let j = 1; j < width; j++) if (values[offset + j] > values[offset + best]) best = j;
      return best;
    }
  }
}

/** Counts a slot keeps: [below, ...bins, above, missing] for binned values, or [...classes, other]. */
export function slotWidth(slot: { edges?: number[]; classes?: string[] }): number {
  return slot.edges ? slot.edges.length + 2 : slot.classes!.length + 1;
}

/** The live-count slots of a profile: its features, then the prediction when it can be counted. */
export function countedSlots(profile: ReferenceProfile): { features: FeatureProfile[]; prediction: PredictionProfile | null } {
  const prediction =
    profile.prediction && (profile.prediction.kind === 'value' ? profile.prediction.edges : profile.prediction.classes?.length) ? profile.prediction : null;
  return { features: profile.features, prediction };
}

/**
 * Turns a batch the model ran into one bin index per row and slot, in the
 * server's hot path (or its worker threads): a few comparisons per value.
 */
export class RowBinner {
  readonly slots: number;
  private readonly features: FeatureProfile[];
  private readonly prediction: PredictionProfile | null;
  private readonly datatypes: Map<string, Datatype>;
  private readonly labelIndex?: Map<number, number>;
  /** The inputs features read, and for each feature the position of its input in that list. */
  private readonly inputs: string[];
  private readonly inputOf: Int32Array;

  constructor(profile: ReferenceProfile, inputs: TensorShape[], outputs: TensorShape[]) {
    const counted = countedSlots(profile);
    this.features = counted.features;
    this.prediction = counted.prediction;
    this.slots = this.features.length + (this.prediction ? 1 : 0);
    this.datatypes = new Map([...inputs, ...outputs].map((t) => [t.name, t.datatype]));
    if (this.prediction?.kind === 'label') this.labelIndex = new Map(this.prediction.labelValues!.map((v, i) => [v, i]));
    this.inputs = [...new Set(this.features.map((f) => f.input))];
    this.inputOf = Int32Array.from(this.features, (f) => this.inputs.indexOf(f.input));
  }

  private view(tensors: Tensors, name: string, rows: number): { values: ArrayLike<number>; width: number } | undefined {
    const t = tensors[name];
    if (!t || Array.isArray(t.data) || (t.dims.length === 0 ? 1 : t.dims[0]) !== rows) return undefined;
    return { values: numbersOf(this.datatypes.get(name) ?? 'FP32', t.data), width: rows === 0 ? 0 : t.data.length / rows };
  }

  /** Indices, row-major (rows x slots); null when there is nothing to count. */
  bin(feeds: Tensors, outputs: Tensors | undefined): { rows: number; indices: Uint8Array } | null {
    if (this.slots === 0) return null;
    const first = Object.values(feeds)[0];
    if (!first) return null;
    const rows = first.dims.length === 0 ? 1 : first.dims[0];
    const slots = this.slots;
    const indices = new Uint8Array(rows * slots);
    const views = this.inputs.map((name) => this.view(feeds, name, rows));
    const features = this.features;
    for (let r = 0; r < rows; r++) {
      // Row statistics are shared by an input's four summary features.
      let summaries: (RowSummary | undefined)[] | undefined;
      for (let s = 0; s < features.length; s++) {
        const f = features[s];
        const at = this.inputOf[s];
        const v = views[at];
        let value: number;
        if (!v) value = NaN;
        else if (f.stat === 'value') value = f.index < v.width ? Number(v.values[r * v.width + f.index]) : NaN;
        else if (f.stat === 'sum' || f.stat === 'count') value = countRow(f.stat, f.index, v.values, r * v.width, v.width);
        else {
          summaries ??= [];
          value = (summaries[at] ??= summariseRow(v.values, r * v.width, v.width))[f.stat];
        }
        indices[r * slots + s] = binIndex(f.edges, value);
      }
    }
    const p = this.prediction;
    if (p) {
      const s = slots - 1;
      const v = outputs ? this.view(outputs, p.output, rows) : undefined;
      for (let r = 0; r < rows; r++) {
        const value = v ? predictionValue(p, v.values, r * v.width, v.width, this.labelIndex) : NaN;
        indices[r * slots + s] = p.kind === 'value' ? binIndex(p.edges!, value) : Number.isNaN(value) ? p.classes!.length : value;
      }
    }
    return { rows, indices };
  }
}

/** Checks that a profile fits the model it is served with; the reason when it does not. */
export function profileMismatch(profile: ReferenceProfile, model: { sha256: string; inputs: TensorShape[]; outputs: TensorShape[] }): string | null {
  if (profile.model.sha256 !== model.sha256)
    return `it was built for model sha256 ${profile.model.sha256.slice(0, 12)}, the server runs ${model.sha256.slice(0, 12)}`;
  const inputs = new Map(model.inputs.map((t) => [t.name, t]));
  for (const f of profile.features) {
    const input = inputs.get(f.input);
    if (!input) return `feature '${f.name}' reads input '${f.input}', which the model does not have`;
    const columns = input.shape.slice(1).reduce((n, d) => n * d, 1);
    if (f.stat === 'value' && columns > 0 && f.index >= columns)
      return `feature '${f.name}' reads column ${f.index} of input '${f.input}', which has ${columns}`;
  }
  if (profile.prediction && !model.outputs.some((o) => o.name === profile.prediction!.output))
    return `the prediction is read from output '${profile.prediction.output}', which the model does not have`;
  return null;
}

/** Checks the shape of a profile read from a file or a server; the problem, or null. */
export function profileProblem(value: unknown): string | null {
  const p = value as Partial<ReferenceProfile> | null;
  if (!p || typeof p !== 'object' || p.format !== PROFILE_FORMAT) return 'not an mlops reference profile';
  if (p.version !== PROFILE_VERSION) return `profile version ${String(p.version)}; this mlops reads version ${PROFILE_VERSION}`;
  if (!Array.isArray(p.features) || !p.model || typeof p.model.sha256 !== 'string' || !Number.isInteger(p.windowRows) || !Number.isInteger(p.bins))
    return 'a field is missing';
  const bins = p.bins as number;
  for (const f of p.features) {
    if (typeof f?.name !== 'string' || !Array.isArray(f.edges) || f.edges.length !== bins + 1 || !Array.isArray(f.shares) || f.shares.length !== bins + 2) {
      return `feature '${String(f?.name)}' has malformed bins`;
    }
    if (f.edges.some((e, i) => typeof e !== 'number' || (i > 0 && e < f.edges[i - 1]))) return `feature '${f.name}': bin edges must be ascending numbers`;
  }
  return null;
}

/**
 * Each profiled input's range in the reference data, per column for tabular inputs: the range
 * `mlops bench` draws random inputs from, so they look like what the model will see.
 */
export function referenceRanges(profile: ReferenceProfile): Record<string, ValueRange> {
  const ranges: Record<string, ValueRange> = {};
  for (const feature of profile.features) {
    if (
      feature.stat === 'mean' ||
      feature.stat === 'std' ||
      feature.stat === 'sum' ||
      feature.stat === 'count' ||
      !Number.isFinite(feature.min) ||
      !Number.isFinite(feature.max)
    )
      continue;
    const range = (ranges[feature.input] ??= { min: feature.min, max: feature.max });
    range.min = Math.min(range.min, feature.min);
    range.max = Math.max(range.max, feature.max);
    if (feature.stat === 'value') (range.columns ??= {})[feature.index] = { min: feature.min, max: feature.max };
  }
  return ranges;
}
