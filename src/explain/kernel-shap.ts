/**
 * Kernel SHAP (Lundberg and Lee, 2017) for one tabular input: each feature's attribution to each
 * model output for one row, against a background sample, such that the base value (the mean output
 * over the background) plus the attributions equals the row's output (the efficiency property,
 * enforced exactly by the constrained regression below).
 *
 * Hand-written: no JavaScript SHAP library exists (npm has none maintained), and the method is a
 * weighted least-squares fit over coalitions, small enough to own.
 */
import { seededRandom } from '../model/random.js';

/** Runs the model on `count` rows of `features` values each (row-major) and answers `count` rows of `width` outputs each. */
export type BatchModel = (rows: Float64Array, count: number) => Promise<{ data: ArrayLike<number>; width: number }>;

export interface KernelShapOptions {
  /**
   * Coalitions evaluated per explanation (each costs one model row per background row, all in one
   * model call). When every coalition fits (2^F - 2 of them), all are taken and the values are exact.
   */
  samples: number;
  /** Seeds the coalition sampling: the same row explains the same way every time. */
  seed?: number;
}

export interface Explanation {
  /** The mean model output over the background, per output column. */
  base: Float64Array;
  /** The row's own output, per output column. */
  output: Float64Array;
  /** Attribution of feature i to output k at [i * width + k]. */
  values: Float64Array;
  width: number;
  /** Coalitions evaluated, and whether that was all of them (exact Shapley values). */
  coalitions: number;
  exact: boolean;
}

export interface KernelExplainer {
  features: number;
  backgroundRows: number;
  /** The mean output over the background (computed once). */
  base(): Promise<Float64Array>;
  explain(row: ArrayLike<number>): Promise<Explanation>;
}

function binomial(n: number, k: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}

/** Every subset of {0..n-1} of one size, as masks. */
function subsetsOfSize(n: number, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const pick = Array.from({ length: size }, (_, i) => i);
  for (;;) {
    const mask = new Uint8Array(n);
    for (const i of pick) mask[i] = 1;
    out.push(mask);
    let i = size - 1;
    while (i >= 0 && pick[i] === n - size + i) i--;
    if (i < 0) return out;
    pick[i]++;
    for (let j = i + 1; j < size; j++) pick[j] = pick[j - 1] + 1;
  }
}

/**
 * The coalitions to evaluate, each a 0/1 mask with its kernel weight, as the SHAP package chooses
 * them: whole coalition sizes from the outside in (1 and F-1, then 2 and F-2, ...), which carry most
 * of the kernel's weight, for as long as every coalition of a size fits the budget; the rest of the
 * budget in complementary pairs drawn from the remaining sizes in proportion to the kernel, sharing
 * those sizes' weight. All 2^F - 2 when they fit: then the values are exact.
 */
export function coalitions(features: number, samples: number, random: () => number): { masks: Uint8Array[]; weights: Float64Array; exact: boolean } {
  const F = features;
  const masks: Uint8Array[] = [];
  const weights: number[] = [];
  // The kernel's total weight per coalition size s, normalized: (F - 1) / (s (F - s)).
  const sizeWeight = Array.from({ length: F }, (_, s) => (s === 0 ? 0 : (F - 1) / (s * (F - s))));
  const total = sizeWeight.reduce((a, b) => a + b, 0);
  let budget = samples;
  let done = 0;
  for (let s = 1; s <= Math.floor(F / 2); s++) {
    const sizes = s === F - s ? [s] : [s, F - s];
    const count = sizes.reduce((n, size) => n + binomial(F, size), 0);
    if (count > budget) break;
    for (const size of sizes) {
      const each = sizeWeight[size] / total / binomial(F, size);
      for (const mask of subsetsOfSize(F, size)) {
        masks.push(mask);
        weights.push(each);
      }
    }
    budget -= count;
    done = s;
  }
  const remaining = Array.from({ length: F - 1 }, (_, i) => i + 1).filter((size) => size > done && size < F - done);
  if (remaining.length === 0) return { masks, weights: Float64Array.from(weights), exact: true };
  const left = remaining.reduce((a, size) => a + sizeWeight[size], 0);
  const pairs = Math.max(1, Math.floor(budget / 2));
  const order = Array.from({ length: F }, (_, i) => i);
  const sampled: Uint8Array[] = [];
  for (let p = 0; p < pairs; p++) {
    let pick = random() * left;
    let k = 0;
    while (k < remaining.length - 1 && pick > sizeWeight[remaining[k]]) pick -= sizeWeight[remaining[k++]];
    const size = remaining[k];
    // A random subset of that size: a partial Fisher-Yates shuffle.
    for (let i = 0; i < size; i++) {
      const j = i + Math.floor(random() * (F - i));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const mask = new Uint8Array(F);
    for (let i = 0; i < size; i++) mask[order[i]] = 1;
    sampled.push(
      mask,
      mask.map((v) => 1 - v),
    );
  }
  for (const mask of sampled) {
    masks.push(mask);
    weights.push(left / total / sampled.length);
  }
  return { masks, weights: Float64Array.from(weights), exact: false };
}

/** Solves A x = b (n x n, row-major) by Gaussian elimination with partial pivoting; a tiny ridge keeps singular systems (features that never vary) solvable. */
function solve(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const m = Float64Array.from(a);
  const x = Float64Array.from(b);
  let scale = 0;
  for (let i = 0; i < n; i++) scale = Math.max(scale, Math.abs(m[i * n + i]));
  for (let i = 0; i < n; i++) m[i * n + i] += 1e-10 * (scale || 1);
  for (let c = 0; c < n; c++) {
    let pivot = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r * n + c]) > Math.abs(m[pivot * n + c])) pivot = r;
    if (pivot !== c) {
      for (let k = 0; k < n; k++) [m[c * n + k], m[pivot * n + k]] = [m[pivot * n + k], m[c * n + k]];
      [x[c], x[pivot]] = [x[pivot], x[c]];
    }
    const d = m[c * n + c];
    if (d === 0) continue;
    for (let r = c + 1; r < n; r++) {
      const f = m[r * n + c] / d;
      if (f === 0) continue;
      for (let k = c; k < n; k++) m[r * n + k] -= f * m[c * n + k];
      x[r] -= f * x[c];
    }
  }
  for (let c = n - 1; c >= 0; c--) {
    let s = x[c];
    for (let k = c + 1; k < n; k++) s -= m[c * n + k] * x[k];
    x[c] = m[c * n + c] === 0 ? 0 : s / m[c * n + c];
  }
  return x;
}

/**
 * An explainer over a background sample (`backgroundRows` rows of `features` values, row-major).
 * Each explanation is one model call of coalitions x background rows, plus one for the row itself.
 */
export function kernelExplainer(model: BatchModel, background: Float64Array, features: number, options: KernelShapOptions): KernelExplainer {
  const backgroundRows = background.length / features;
  if (!Number.isInteger(backgroundRows) || backgroundRows < 1)
    throw new Error(`the background holds ${background.length} values, not whole rows of ${features}`);
  let base: Promise<Float64Array> | undefined;
  const meanOf = (data: ArrayLike<number>, width: number, from: number, count: number) => {
    const out = new Float64Array(width);
    for (let r = from; r < from + count; r++) for (let k = 0; k < width; k++) out[k] += data[r * width + k];
    for (let k = 0; k < width; k++) out[k] /= count;
    return out;
  };
  const baseValue = () => (base ??= model(background, backgroundRows).then(({ data, width }) => meanOf(data, width, 0, backgroundRows)));

  return {
    features,
    backgroundRows,
    base: baseValue,
    async explain(row) {
      if (row.length !== features) throw new Error(`the row has ${row.length} values; the model takes ${features}`);
      const x = Float64Array.from(row);
      const baseOut = await baseValue();
      const random = seededRandom(options.seed ?? 7);
      const { masks, weights, exact } =
        features > 1 ? coalitions(features, Math.max(2, options.samples), random) : { masks: [], weights: new Float64Array(0), exact: true };
      // One call: the row itself, then every coalition over every background row.
      const count = 1 + masks.length * backgroundRows;
      const rows = new Float64Array(count * features);
      rows.set(x, 0);
      let at = features;
      for (const mask of masks) {
        for (let b = 0; b < backgroundRows; b++) {
          for (let i = 0; i < features; i++) rows[at + i] = mask[i] ? x[i] : background[b * features + i];
          at += features;
        }
      }
      const { data, width } = await model(rows, count);
      const output = meanOf(data, width, 0, 1);
      const values = new Float64Array(features * width);
      if (features === 1) {
        for (let k = 0; k < width; k++) values[k] = output[k] - baseOut[k];
        return { base: baseOut, output, values, width, coalitions: 0, exact: true };
      }
      // Constrained weighted least squares: the last feature's value is what the others leave of
      // output - base, so efficiency holds exactly; the rest solve (X'WX) phi = X'W y'.
      const n = features - 1;
      const last = features - 1;
      const xtwx = new Float64Array(n * n);
      const xtwy = Array.from({ length: width }, () => new Float64Array(n));
      for (let m = 0; m < masks.length; m++) {
        const mask = masks[m];
        const w = weights[m];
        const ey = meanOf(data, width, 1 + m * backgroundRows, backgroundRows);
        for (let i = 0; i < n; i++) {
          const xi = mask[i] - mask[last];
          if (xi === 0) continue;
          for (let j = 0; j < n; j++) xtwx[i * n + j] += w * xi * (mask[j] - mask[last]);
          for (let k = 0; k < width; k++) xtwy[k][i] += w * xi * (ey[k] - baseOut[k] - mask[last] * (output[k] - baseOut[k]));
        }
      }
      for (let k = 0; k < width; k++) {
        const phi = solve(xtwx, xtwy[k], n);
        let sum = 0;
        for (let i = 0; i < n; i++) {
          values[i * width + k] = phi[i];
          sum += phi[i];
        }
        values[last * width + k] = output[k] - baseOut[k] - sum;
      }
      return { base: baseOut, output, values, width, coalitions: masks.length, exact };
    },
  };
}
