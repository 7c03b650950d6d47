/** The seeded draws every global explanation makes: which rows it explains, and which it draws as examples. */

/** Fisher-Yates over row indices, seeded. */
export function shuffled(count: number, random: () => number): Uint32Array {
  const order = Uint32Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** A seeded sample of `wanted` of `count` rows (all of them when there are fewer), in file order. */
export function sampleRows(count: number, wanted: number, random: () => number): number[] {
  return Array.from(shuffled(count, random).subarray(0, Math.min(wanted, count))).sort((a, b) => a - b);
}

/**
 * The positions, among `count` explained rows, of the rows drawn as examples: spread evenly over them
 * (holdouts are often sorted by class), not the first few.
 */
export function spreadExamples(count: number, examples: number): Set<number> {
  const drawn = Math.min(examples, count);
  return new Set(Array.from({ length: drawn }, (_, k) => Math.floor((k * count) / drawn)));
}
