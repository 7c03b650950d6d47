import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { binCounts, EMPTY_SHARE, jensenShannon, psi, quantileEdges, shares } from '../../src/monitor/drift.js';
import { fixture } from '../helpers.js';

interface DriftCases {
  reference: number[];
  bins: number;
  edges: number[];
  reference_counts: number[];
  cases: { name: string; current: number[]; counts: number[]; psi: number; jensen_shannon: number }[];
}

const expected = JSON.parse(readFileSync(fixture('drift_cases.numpy.json'), 'utf8')) as DriftCases;

describe('drift statistics (against numpy and scipy, from fixtures/generate.py)', () => {
  const sorted = Float64Array.from(expected.reference).sort();
  const edges = quantileEdges(sorted, expected.bins);

  it('puts bin edges at the reference quantiles as numpy.quantile does', () => {
    expect(edges).toHaveLength(expected.bins + 1);
    edges.forEach((e, i) => expect(Math.abs(e - expected.edges[i])).toBeLessThanOrEqual(1e-12));
  });

  it('counts values per bin as numpy.histogram does, with the values below and above the range apart', () => {
    expect(binCounts(expected.reference, expected.edges)).toEqual(expected.reference_counts);
    for (const c of expected.cases) expect(binCounts(c.current, expected.edges), c.name).toEqual(c.counts);
  });

  it("computes PSI by Evidently's definition and the Jensen-Shannon distance as scipy does, to 1e-9", () => {
    const reference = shares(expected.reference_counts);
    for (const c of expected.cases) {
      const current = shares(c.counts);
      expect(Math.abs(psi(reference, current) - c.psi), `${c.name}: psi`).toBeLessThanOrEqual(1e-9);
      expect(Math.abs(jensenShannon(reference, current) - c.jensen_shannon), `${c.name}: js`).toBeLessThanOrEqual(1e-9);
    }
    // The same distribution stays under Evidently's 0.1 threshold; a shift of half a standard deviation does not.
    const byName = Object.fromEntries(expected.cases.map((c) => [c.name, psi(reference, shares(c.counts))]));
    expect(byName['same distribution']).toBeLessThan(0.1);
    expect(byName['shifted by 0.5']).toBeGreaterThan(0.1);
    expect(byName['scaled by 1.5']).toBeGreaterThan(0.1);
  });

  it('handles the edge cases: identical, disjoint, empty bins, a constant column', () => {
    expect(psi([0.5, 0.5], [0.5, 0.5])).toBe(0);
    expect(jensenShannon([1, 0], [0, 1])).toBeCloseTo(Math.sqrt(Math.LN2), 12);
    expect(jensenShannon([3, 1], [3, 1])).toBe(0);
    // An empty bin counts as EMPTY_SHARE, so PSI stays finite.
    expect(psi([1, 0], [0.5, 0.5])).toBeCloseTo((1 - 0.5) * Math.log(1 / 0.5) + (EMPTY_SHARE - 0.5) * Math.log(EMPTY_SHARE / 0.5), 12);
    // A constant reference: every edge is the one value; it lands in the last bin, anything else is out of range.
    const constant = quantileEdges([2, 2, 2], 4);
    expect(constant).toEqual([2, 2, 2, 2, 2]);
    expect(binCounts([2, 1, 3, 2], constant)).toEqual([1, 0, 0, 0, 2, 1]);
    expect(() => psi([1], [0.5, 0.5])).toThrow('psi: 1 reference bins against 2 current ones');
  });
});
