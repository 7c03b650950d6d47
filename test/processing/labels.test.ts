import { describe, expect, it } from 'vitest';
import { topLabels } from '../../src/processing/labels.js';

describe('labels', () => {
  it('softmax and sigmoid, top k with names, ties to the lower index', () => {
    const tensor = { data: new Float32Array([0, 0, Math.log(2), 3, 1, 2]), dims: [2, 3] };
    const settings = { output: 'logits', function: 'softmax' as const, names: ['a', 'b', 'c'], topK: 2 };
    const [first, second] = topLabels(tensor, settings);
    expect(first.map((l) => l.label)).toEqual(['c', 'a']);
    expect(first[0].score).toBeCloseTo(0.5, 6);
    expect(first[1].score).toBeCloseTo(0.25, 6);
    expect(second.map((l) => l.label)).toEqual(['a', 'c']);
    const sigmoid = topLabels(tensor, { ...settings, function: 'sigmoid', names: [] }, 1);
    expect(sigmoid[0]).toEqual([{ label: 'LABEL_2', score: expect.closeTo(2 / 3, 6) }]);
  });
});
