import { describe, expect, it } from 'vitest';
import { coalitions, kernelExplainer, type BatchModel } from '../../src/explain/kernel-shap.js';

/** A model written in JS: f applied row by row. */
const jsModel =
  (features: number, f: (x: Float64Array) => number[]): BatchModel =>
  async (rows, count) => {
    const out: number[] = [];
    for (let r = 0; r < count; r++) out.push(...f(rows.subarray(r * features, (r + 1) * features)));
    return { data: out, width: out.length / count };
  };

function uniformRows(count: number, features: number, seed: number): Float64Array {
  let s = seed;
  const random = () => (s = (s * 16807) % 2147483647) / 2147483647;
  return Float64Array.from({ length: count * features }, () => random() * 2 - 1);
}

/** Shapley values by their definition, over every subset: the truth the regression must reach. */
function bruteForce(f: (x: Float64Array) => number, x: Float64Array, background: Float64Array, features: number): number[] {
  const rows = background.length / features;
  const value = (mask: number) => {
    let sum = 0;
    for (let b = 0; b < rows; b++) {
      const z = new Float64Array(features);
      for (let i = 0; i < features; i++) z[i] = (mask >> i) & 1 ? x[i] : background[b * features + i];
      sum += f(z);
    }
    return sum / rows;
  };
  const fact = (n: number): number => (n <= 1 ? 1 : n * fact(n - 1));
  return Array.from({ length: features }, (_, i) => {
    let phi = 0;
    for (let mask = 0; mask < 2 ** features; mask++) {
      if ((mask >> i) & 1) continue;
      let size = 0;
      for (let j = 0; j < features; j++) size += (mask >> j) & 1;
      phi += ((fact(size) * fact(features - size - 1)) / fact(features)) * (value(mask | (1 << i)) - value(mask));
    }
    return phi;
  });
}

describe('Kernel SHAP', () => {
  it('a linear model over independent features: exactly w_i * (x_i - mean_i), enumerated (4 features) or sampled (30)', async () => {
    for (const [features, samples] of [
      [4, 2048],
      [30, 200],
    ]) {
      const w = Array.from({ length: features }, (_, i) => (i % 3 === 2 ? 0 : (i + 1) * (i % 2 ? -0.5 : 1)));
      const f = (x: Float64Array) => [w.reduce((s, wi, i) => s + wi * x[i], 0.7)];
      const background = uniformRows(100, features, 11);
      const mean = w.map((_, i) => {
        let s = 0;
        for (let b = 0; b < 100; b++) s += background[b * features + i];
        return s / 100;
      });
      const explainer = kernelExplainer(jsModel(features, f), background, features, { samples });
      const x = uniformRows(1, features, 5);
      const e = await explainer.explain(x);
      expect(e.exact).toBe(features === 4);
      for (let i = 0; i < features; i++) expect(e.values[i]).toBeCloseTo(w[i] * (x[i] - mean[i]), 6);
    }
  });

  it('a non-linear model with every coalition enumerated equals Shapley values by definition', async () => {
    const f = (x: Float64Array) => x[0] * x[1] + Math.sin(3 * x[2]) + (x[3] > 0 ? x[4] : -x[4]);
    const background = uniformRows(20, 5, 3);
    const x = Float64Array.from([0.8, -0.6, 0.4, 0.3, 0.9]);
    const e = await kernelExplainer(
      jsModel(5, (z) => [f(z)]),
      background,
      5,
      { samples: 100 },
    ).explain(x);
    expect(e.exact).toBe(true);
    expect(e.coalitions).toBe(30);
    const truth = bruteForce(f, x, background, 5);
    for (let i = 0; i < 5; i++) expect(e.values[i]).toBeCloseTo(truth[i], 9);
  });

  it('sampled: attributions plus the base value sum to the output exactly, and approach the truth as the budget grows', async () => {
    const features = 10;
    const f = (x: Float64Array) => x[0] * x[1] + Math.sin(3 * x[2]) + x[3] ** 2 - x[4] * x[5] * x[6] + 0.5 * x[7];
    const background = uniformRows(10, features, 8);
    const x = uniformRows(1, features, 21);
    const truth = bruteForce(f, x, background, features);
    const errorAt = async (samples: number) => {
      const e = await kernelExplainer(
        jsModel(features, (z) => [f(z)]),
        background,
        features,
        { samples },
      ).explain(x);
      expect(e.exact).toBe(false);
      const sum = Array.from(e.values).reduce((a, b) => a + b, 0);
      expect(e.base[0] + sum).toBeCloseTo(e.output[0], 10);
      expect(e.output[0]).toBeCloseTo(f(x), 12);
      return Math.max(...truth.map((t, i) => Math.abs(e.values[i] - t)));
    };
    const coarse = await errorAt(40);
    const fine = await errorAt(1000);
    expect(fine).toBeLessThan(0.05);
    expect(fine).toBeLessThan(coarse);
  });

  it('every output column is explained on its own, and the same row explains the same way each time', async () => {
    const f = (x: Float64Array) => [x[0] + 2 * x[1], 3 * x[2] - x[0]];
    const background = uniformRows(30, 3, 4);
    const explainer = kernelExplainer(jsModel(3, f), background, 3, { samples: 4, seed: 1 });
    const x = Float64Array.from([1, 1, 1]);
    const a = await explainer.explain(x);
    expect(a.width).toBe(2);
    expect(a.values[2 * 2 + 0]).toBeCloseTo(0, 9); // x2 does not move output 0
    expect(a.values[1 * 2 + 1]).toBeCloseTo(0, 9); // x1 does not move output 1
    expect(Array.from((await explainer.explain(x)).values)).toEqual(Array.from(a.values));
  });

  it('coalitions: all 2^F - 2 with kernel weights when they fit, complementary pairs when they do not', () => {
    const all = coalitions(4, 14, Math.random);
    expect(all.masks).toHaveLength(14);
    expect(all.exact).toBe(true);
    // 20 features, 100 coalitions: sizes 1 and 19 whole (40), then 30 complementary pairs from the rest.
    const sampled = coalitions(20, 100, () => 0.42);
    expect(sampled.exact).toBe(false);
    expect(sampled.masks).toHaveLength(100);
    const sizes = sampled.masks.map((m) => m.reduce((a, b) => a + b, 0));
    expect(sizes.slice(0, 40).sort((a, b) => a - b)).toEqual([...Array(20).fill(1), ...Array(20).fill(19)]);
    for (let p = 40; p < 100; p += 2) expect(sampled.masks[p].every((v, i) => v + sampled.masks[p + 1][i] === 1)).toBe(true);
    expect(sizes.slice(40).every((s) => s >= 2 && s <= 18)).toBe(true);
    // The weights are the kernel's: they sum to 1 whether enumerated or sampled.
    expect(Array.from(sampled.weights).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    expect(Array.from(all.weights).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
  });
});
