import { seededRandom } from '../model/random.js';

export interface FeatureSummary {
  count: number;
  mean: number;
  std: number;
  min: number;
  max: number;
  /** From a uniform sample of up to SAMPLE_ROWS rows, so memory stays flat. */
  quantiles: { p01: number; p05: number; p25: number; p50: number; p75: number; p95: number; p99: number };
}

const SAMPLE_ROWS = 10_000;
/** Inputs with more elements a row than this (images, sequences) are summarised as one feature. */
const MAX_FEATURES_PER_INPUT = 256;

/** Per-feature count, mean, population std (Welford), min and max, one value at a time. */
export class Moments {
  readonly count: Float64Array;
  readonly mean: Float64Array;
  private readonly m2: Float64Array;
  readonly min: Float64Array;
  readonly max: Float64Array;

  constructor(features: number) {
    this.count = new Float64Array(features);
    this.mean = new Float64Array(features);
    this.m2 = new Float64Array(features);
    this.min = new Float64Array(features).fill(Infinity);
    this.max = new Float64Array(features).fill(-Infinity);
  }

  add(f: number, v: number): void {
    this.count[f]++;
    const delta = v - this.mean[f];
    this.mean[f] += delta / this.count[f];
    this.m2[f] += delta * (v - this.mean[f]);
    if (v < this.min[f]) this.min[f] = v;
    if (v > this.max[f]) this.max[f] = v;
  }

  std(f: number): number {
    return Math.sqrt(this.m2[f] / this.count[f]);
  }
}

/** A uniform sample of up to `size` rows (a reservoir), seeded so that it repeats from run to run. */
export class RowReservoir<T> {
  readonly rows: T[] = [];
  private seen = 0;
  private readonly random: () => number;

  constructor(
    private readonly size: number,
    seed: number,
  ) {
    this.random = seededRandom(seed);
  }

  offer(row: T): void {
    this.seen++;
    if (this.rows.length < this.size) this.rows.push(row);
    else {
      const j = Math.floor(this.random() * this.seen);
      if (j < this.size) this.rows[j] = row;
    }
  }
}

/**
 * Per-feature statistics of a holdout in one pass: exact count, mean, std
 * (population), min and max (Welford); quantiles from a row sample.
 */
export class FeatureStatistics {
  private readonly names: string[] = [];
  private readonly slots: { input: string; from: number; to: number }[] = [];
  private readonly moments: Moments;
  private readonly sample = new RowReservoir<Float64Array>(SAMPLE_ROWS, 7);

  constructor(featureNames: Record<string, string[]>) {
    for (const [input, names] of Object.entries(featureNames)) {
      if (names.length > MAX_FEATURES_PER_INPUT) {
        this.slots.push({ input, from: 0, to: Infinity });
        this.names.push(input);
      } else {
        names.forEach((name, i) => {
          this.slots.push({ input, from: i, to: i + 1 });
          this.names.push(name);
        });
      }
    }
    this.moments = new Moments(this.names.length);
  }

  add(inputs: Record<string, ArrayLike<number | string>>): void {
    const values = new Float64Array(this.slots.length);
    this.slots.forEach((slot, f) => {
      const row = inputs[slot.input];
      const end = Math.min(slot.to, row.length);
      let sum = 0;
      let n = 0;
      for (let i = slot.from; i < end; i++) {
        const v = row[i];
        if (typeof v !== 'number') continue;
        n++;
        sum += v;
        this.moments.add(f, v);
      }
      values[f] = n === 0 ? NaN : sum / n;
    });
    this.sample.offer(values);
  }

  summary(): Record<string, FeatureSummary> {
    const out: Record<string, FeatureSummary> = {};
    this.names.forEach((name, f) => {
      const m = this.moments;
      if (m.count[f] === 0) return;
      const sorted = this.sample.rows
        .map((row) => row[f])
        .filter((v) => !Number.isNaN(v))
        .sort((a, b) => a - b);
      const q = (p: number) => {
        const position = (sorted.length - 1) * p;
        const low = Math.floor(position);
        const high = Math.ceil(position);
        return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
      };
      out[name] = {
        count: m.count[f],
        mean: m.mean[f],
        std: m.std(f),
        min: m.min[f],
        max: m.max[f],
        quantiles: { p01: q(0.01), p05: q(0.05), p25: q(0.25), p50: q(0.5), p75: q(0.75), p95: q(0.95), p99: q(0.99) },
      };
    });
    return out;
  }
}
