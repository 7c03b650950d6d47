import { describe, expect, it } from 'vitest';
import { occlude, spatialLayout, spatialMap } from '../../src/explain/occlusion.js';

describe('occlusion', () => {
  it('finds the spatial axes of channels-first, channels-last and plain images; a vector has none', () => {
    expect(spatialLayout([3, 32, 32])?.axes).toEqual([1, 2]);
    expect(spatialLayout([32, 32, 3])?.axes).toEqual([0, 1]);
    expect(spatialLayout([28, 28])?.axes).toEqual([0, 1]);
    expect(spatialLayout([2, 5, 16, 16])?.axes).toEqual([2, 3]);
    expect(spatialLayout([30])).toBeNull();
    expect(spatialLayout([3, -1, 32])).toBeNull();
  });

  it('zeroes every channel of a patch: a channels-last model that weights one region and one channel', async () => {
    // [H=5, W=6, C=3]; the output is 2 x channel 1 summed over rows 0-1, columns 2-3.
    const dims = [5, 6, 3];
    const f = (x: ArrayLike<number>) => {
      let s = 0;
      for (let y = 0; y < 2; y++) for (let c = 2; c < 4; c++) s += 2 * x[(y * 6 + c) * 3 + 1];
      return s;
    };
    const size = 90;
    const model = async (rows: Float64Array, count: number) => ({
      data: Array.from({ length: count }, (_, r) => f(rows.subarray(r * size, (r + 1) * size))),
      width: 1,
    });
    const row = Float64Array.from({ length: size }, (_, i) => 1 + (i % 5));
    const layout = spatialLayout(dims)!;
    const result = await occlude(model, row, layout, 2, 3);
    expect(layout.axes).toEqual([0, 1]);
    expect(result.grid).toEqual([3, 3]);
    expect(result.modelRows).toBe(10);
    const map = spatialMap(result.patches, result.grid, result.width, 0, [5, 6], 2);
    const total = f(row);
    // Only patch (0, 1) covers the weighted region: it carries the whole output.
    map.forEach((line, y) => line.forEach((cell, x) => expect(cell).toBeCloseTo(y < 2 && x >= 2 && x < 4 ? total : 0, 12)));
  });
});
