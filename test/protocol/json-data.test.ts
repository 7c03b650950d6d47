import { describe, expect, it } from 'vitest';
import { decodeTensorData, jsonDataText } from '../../src/protocol/json-data.js';
import { error } from './codec.js';

describe('JSON tensor data', () => {
  it('writes the same text JSON.stringify writes, keeps every digit of 64-bit integers, and turns non-finite floats into null', () => {
    const floats = Float32Array.from([0.1, -2.5e-8, 1e30, 3, -0]);
    expect(jsonDataText('FP32', floats)).toBe(JSON.stringify(Array.from(floats)));
    const doubles = Float64Array.from([Math.PI, 1 / 3, -1e-300]);
    expect(jsonDataText('FP64', doubles)).toBe(JSON.stringify(Array.from(doubles)));
    expect(jsonDataText('INT64', BigInt64Array.from([2n ** 62n + 1n, -5n]))).toBe('[4611686018427387905,-5]');
    expect(jsonDataText('FP32', Float32Array.from([1, NaN, Infinity]))).toBe('[1,null,null]');
    expect(jsonDataText('BOOL', Uint8Array.from([1, 0]))).toBe('[true,false]');
    expect(JSON.parse(jsonDataText('BYTES', ['a"b', 'é']))).toEqual(['a"b', 'é']);
  });

  it('decodes flat and nested data into typed arrays and names the bad element', () => {
    expect(
      Array.from(
        decodeTensorData(
          'x',
          'FP32',
          [2, 2],
          [
            [1, 2],
            [3, 4],
          ],
        ) as Float32Array,
      ),
    ).toEqual([1, 2, 3, 4]);
    expect(Array.from(decodeTensorData('x', 'INT8', [3], [1, -2, 127]) as Int8Array)).toEqual([1, -2, 127]);
    expect(error(() => decodeTensorData('x', 'INT8', [2], [1, 128])).message).toBe("input 'x': element 1 is 128; INT8 expects integers from -128 to 127");
    expect(
      error(() =>
        decodeTensorData(
          'x',
          'FP32',
          [2, 2],
          [
            [1, 2],
            [3, 'a'],
          ],
        ),
      ).message,
    ).toBe('input \'x\': element 3 is "a"; FP32 expects finite numbers');
    expect(error(() => decodeTensorData('x', 'FP32', [2, 2], [[1, 2], [3]])).message).toMatch(/ragged .* at depth 1 \(found 1 items, expected 2\)/);
    expect(Array.from(decodeTensorData('s', 'INT64', [], [7]) as BigInt64Array)).toEqual([7n]);
  });
});
