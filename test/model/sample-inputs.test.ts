import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSampleInputs, parseShapeFlag, type SampleInputSettings, type SampleInputSpec } from '../../src/model/sample-inputs.js';
import { referenceRanges, type ReferenceProfile } from '../../src/monitor/profile.js';
import { withTempDir } from '../helpers.js';

const settings = (over: Partial<SampleInputSettings> = {}): SampleInputSettings => ({
  shapes: {},
  data: 'random',
  seed: 1,
  shapeKey: '--shape',
  dataKey: '--input-data',
  ...over,
});
const VAD: SampleInputSpec[] = [
  { name: 'input', datatype: 'FP32', shape: [-1, -1], dims: ['batch', 'samples'] },
  { name: 'sr', datatype: 'INT64', shape: [] },
  { name: 'h', datatype: 'FP32', shape: [2, -1, 64], dims: [2, 'batch', 64] },
];

describe('sample inputs', () => {
  it('sizes the batch everywhere its symbol stands, and a symbol fixed once everywhere it stands', async () => {
    const twoInputs: SampleInputSpec[] = [
      { name: 'a', datatype: 'FP32', shape: [-1, -1], dims: ['batch', 'seq'] },
      { name: 'mask', datatype: 'INT64', shape: [-1, -1], dims: ['batch', 'seq'] },
    ];
    const feeds = (await openSampleInputs(twoInputs, settings({ shapes: { a: [1, 7] } }), '/')).feeds(3, 0);
    expect(feeds.a.dims).toEqual([3, 7]);
    expect(feeds.mask.dims).toEqual([3, 7]);
    const vad = (await openSampleInputs(VAD, settings({ shapes: { input: [1, 512] } }), '/')).feeds(4, 0);
    expect(vad.input.dims).toEqual([4, 512]);
    expect(vad.h.dims).toEqual([2, 4, 64]);
    expect(vad.sr.dims).toEqual([]);
  });

  it('zero gives zeros; random repeats with the seed and differs between inputs of one shape', async () => {
    const twin: SampleInputSpec[] = [
      { name: 'x', datatype: 'FP32', shape: [-1, 4] },
      { name: 'y', datatype: 'FP32', shape: [-1, 4] },
    ];
    const zero = (await openSampleInputs(twin, settings({ data: 'zero' }), '/')).feeds(2, 0);
    expect([...(zero.x.data as Float32Array)]).toEqual(Array(8).fill(0));
    const a = (await openSampleInputs(twin, settings(), '/')).feeds(1, 0);
    const b = (await openSampleInputs(twin, settings(), '/')).feeds(1, 0);
    expect([...(a.x.data as Float32Array)]).toEqual([...(b.x.data as Float32Array)]);
    expect([...(a.x.data as Float32Array)]).not.toEqual([...(a.y.data as Float32Array)]);
  });

  it('reads perf_analyzer data: lists, content with shape, b64, bare scalars; repeats a one-row entry for larger batches', async () => {
    await withTempDir(async (dir) => {
      const bytes = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer).toString('base64');
      const file = path.join(dir, 'data.json');
      await writeFile(
        file,
        JSON.stringify({
          data: [
            { x: [[1, 2, 3, 4]], n: 7 },
            { x: { b64: bytes, shape: [1, 4] }, n: [8] },
            { x: { content: [5, 6, 7, 8, 9, 10, 11, 12], shape: [2, 4] }, n: 9 },
          ],
        }),
      );
      const inputs: SampleInputSpec[] = [
        { name: 'x', datatype: 'FP32', shape: [-1, 4] },
        { name: 'n', datatype: 'INT64', shape: [] },
      ];
      const samples = await openSampleInputs(inputs, settings({ data: file }), dir);
      expect(samples.entries).toBe(3);
      const first = samples.feeds(1, 0);
      expect([...(first.x.data as Float32Array)]).toEqual([1, 2, 3, 4]);
      expect(first.n.data).toEqual(BigInt64Array.from([7n]));
      expect([...(samples.feeds(1, 1).x.data as Float32Array)]).toEqual([1, 2, 3, 4]);
      const tiled = samples.feeds(3, 0);
      expect(tiled.x.dims).toEqual([3, 4]);
      expect([...(tiled.x.data as Float32Array)]).toEqual([1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4]);
      // Request 3 uses entry 0 again; entry 2 has 2 rows and cannot serve requests of 3.
      expect(samples.feeds(1, 3).n.data).toEqual(BigInt64Array.from([7n]));
      expect(() => samples.feeds(3, 2)).toThrow('--input-data: data[2].x: the entry has 2 in its batch dimension but requests of 3 rows were asked for');
    });
  });

  it("draws random values within the reference profile's range, column by column", async () => {
    const profile = {
      features: [
        { name: 'x[0]', input: 'x', stat: 'value', index: 0, min: 100, max: 101, edges: [], shares: [], count: 1, mean: 0, std: 0 },
        { name: 'x[1]', input: 'x', stat: 'value', index: 1, min: -5, max: -4, edges: [], shares: [], count: 1, mean: 0, std: 0 },
        { name: 'img min', input: 'img', stat: 'min', index: 0, min: 0, max: 10, edges: [], shares: [], count: 1, mean: 0, std: 0 },
        { name: 'img max', input: 'img', stat: 'max', index: 0, min: 200, max: 255, edges: [], shares: [], count: 1, mean: 0, std: 0 },
      ],
    } as unknown as ReferenceProfile;
    const ranges = referenceRanges(profile);
    expect(ranges.img).toEqual({ min: 0, max: 255 });
    const inputs: SampleInputSpec[] = [
      { name: 'x', datatype: 'FP32', shape: [-1, 2] },
      { name: 'img', datatype: 'UINT8', shape: [-1, 3, 4, 4] },
    ];
    const feeds = (await openSampleInputs(inputs, settings({ ranges }), '/')).feeds(50, 0);
    const x = feeds.x.data as Float32Array;
    for (let r = 0; r < 50; r++) {
      expect(x[2 * r]).toBeGreaterThanOrEqual(100);
      expect(x[2 * r]).toBeLessThan(101);
      expect(x[2 * r + 1]).toBeGreaterThanOrEqual(-5);
      expect(x[2 * r + 1]).toBeLessThan(-4);
    }
    const img = feeds.img.data as Uint8Array;
    // Integers over the whole range, both ends reachable.
    expect(Math.max(...img)).toBeGreaterThan(200);
    expect(Math.max(...img)).toBeLessThanOrEqual(255);
  });

  it('parses --shape as name and dimensions, the name may hold colons', () => {
    expect(parseShapeFlag('input:1,512')).toEqual(['input', [1, 512]]);
    expect(parseShapeFlag('ns:x:2, 3')).toEqual(['ns:x', [2, 3]]);
    expect(() => parseShapeFlag('input')).toThrow("--shape input: expected an input name and its dimensions, like 'input:1,512'");
    expect(() => parseShapeFlag('input:1,-1')).toThrow('expected an input name');
  });
});
