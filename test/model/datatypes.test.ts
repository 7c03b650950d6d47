import { describe, expect, it } from 'vitest';
import { tensorFromBytes, tensorToBytes } from '../../src/model/datatypes.js';

describe('binary tensor bytes', () => {
  it('views aligned bytes without copying and copies misaligned ones', () => {
    const source = new Uint8Array(16);
    new Float32Array(source.buffer, 4, 2).set([1.5, -2]);
    const aligned = tensorFromBytes('FP32', source.subarray(4, 12), 2) as Float32Array;
    expect(aligned.buffer).toBe(source.buffer);
    expect(Array.from(aligned)).toEqual([1.5, -2]);
    const shifted = new Uint8Array(9);
    shifted.set(source.subarray(4, 12), 1);
    const copied = tensorFromBytes('FP32', shifted.subarray(1), 2) as Float32Array;
    expect(copied.buffer).not.toBe(shifted.buffer);
    expect(Array.from(copied)).toEqual([1.5, -2]);
    expect(tensorFromBytes('FP32', source.subarray(0, 7), 2)).toBeUndefined();
  });

  it('frames BYTES elements as a 4-byte little-endian length and the bytes, both ways', () => {
    const bytes = tensorToBytes('BYTES', ['ab', '', 'é']);
    expect(Array.from(bytes)).toEqual([2, 0, 0, 0, 97, 98, 0, 0, 0, 0, 2, 0, 0, 0, 0xc3, 0xa9]);
    expect(tensorFromBytes('BYTES', bytes, 3)).toEqual(['ab', '', 'é']);
    expect(tensorFromBytes('BYTES', bytes, 2)).toBeUndefined();
    expect(tensorFromBytes('BYTES', bytes.subarray(0, 15), 3)).toBeUndefined();
  });
});
