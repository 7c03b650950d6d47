/**
 * The drift statistics `mlops monitor` (issue 11) is built on: bins from a
 * reference sample, counts of live values in them, and the distances between
 * the two distributions. Pure functions over numbers; where the bins and counts
 * come from (a reference profile in the image, the server's counters,
 * Prometheus) is the caller's business. Checked against numpy and scipy in
 * test/monitor/drift.test.ts.
 */

/** What Evidently puts in place of an empty bin's share before taking logarithms. */
export const EMPTY_SHARE = 1e-4;

/**
 * Edges at the quantiles of `sorted` (ascending), as numpy.quantile's default
 * (linear) method puts them: bins + 1 edges, the first the minimum, the last
 * the maximum. Repeated edges (a column with few distinct values) are kept, so
 * every feature has the same number of bins; an empty bin then simply counts
 * nothing.
 */
export function quantileEdges(sorted: ArrayLike<number>, bins: number): number[] {
  if (sorted.length === 0) throw new Error('quantileEdges needs at least one value');
  if (!Number.isInteger(bins) || bins < 1) throw new Error(`quantileEdges: bins must be a whole number >= 1, got ${bins}`);
  const last = sorted.length - 1;
  return Array.from({ length: bins + 1 }, (_, i) => {
    const position = (last * i) / bins;
    const below = Math.floor(position);
    const fraction = position - below;
    return fraction === 0 ? sorted[below] : sorted[below] + (sorted[below + 1] - sorted[below]) * fraction;
  });
}

/**
 * Where one value falls, as an index into [below, ...bins, above, missing]:
 * numpy.histogram's bins (each holds its left edge, the last its right edge
 * too), with room at the ends for values outside the range and one more for
 * NaN. The server calls this for every profiled value, so it stays small.
 */
export function binIndex(edges: readonly number[], v: number): number {
  const bins = edges.length - 1;
  if (v < edges[0]) return 0;
  if (v > edges[bins]) return bins + 1;
  if (v === edges[bins]) return bins;
  if (v >= edges[0]) return 1 + lastEdgeAtOrBelow(edges, v);
  return bins + 2;
}

/**
 * Counts of `values` per bin as numpy.histogram makes them, with two more at
 * the ends: the values below the first edge and above the last. The result
 * has bins + 2 entries: [below, ...bins, above]; NaN is not counted.
 */
export function binCounts(values: ArrayLike<number>, edges: readonly number[]): number[] {
  const bins = edges.length - 1;
  const counts = new Array<number>(bins + 3).fill(0);
  for (let i = 0; i < values.length; i++) counts[binIndex(edges, values[i])]++;
  return counts.slice(0, bins + 2);
}

/** The index of the last edge <= v (binary search; edges ascending, v within them). */
function lastEdgeAtOrBelow(edges: readonly number[], v: number): number {
  let lo = 0;
  let hi = edges.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (edges[mid] <= v) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** Counts as shares of their total (all zeros for no values). */
export function shares(counts: readonly number[]): number[] {
  const total = counts.reduce((n, c) => n + c, 0);
  return counts.map((c) => (total === 0 ? 0 : c / total));
}

/**
 * The population stability index as Evidently computes it:
 * sum over bins of (reference - current) * ln(reference / current), with an
 * empty bin's share on either side taken as EMPTY_SHARE. 0 for identical
 * distributions; Evidently calls a feature drifted at 0.1 and above.
 */
export function psi(reference: readonly number[], current: readonly number[]): number {
  sameLength(reference, current, 'psi');
  let sum = 0;
  for (let i = 0; i < reference.length; i++) {
    const r = reference[i] === 0 ? EMPTY_SHARE : reference[i];
    const c = current[i] === 0 ? EMPTY_SHARE : current[i];
    sum += (r - c) * Math.log(r / c);
  }
  return sum;
}

/**
 * The Jensen-Shannon distance (the square root of the divergence) with natural
 * logarithms, as scipy.spatial.distance.jensenshannon computes it: both
 * distributions are normalised first, and empty bins need no special case.
 * From 0 (identical) to sqrt(ln 2) (disjoint).
 */
export function jensenShannon(p: readonly number[], q: readonly number[]): number {
  sameLength(p, q, 'jensenShannon');
  const ps = shares(p);
  const qs = shares(q);
  let divergence = 0;
  for (let i = 0; i < ps.length; i++) {
    const m = (ps[i] + qs[i]) / 2;
    if (ps[i] > 0) divergence += ps[i] * Math.log(ps[i] / m);
    if (qs[i] > 0) divergence += qs[i] * Math.log(qs[i] / m);
  }
  // Rounding can leave a tiny negative where the distributions are equal.
  return Math.sqrt(Math.max(0, divergence / 2));
}

function sameLength(a: readonly number[], b: readonly number[], what: string): void {
  if (a.length !== b.length) throw new Error(`${what}: ${a.length} reference bins against ${b.length} current ones`);
}
