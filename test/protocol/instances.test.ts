import { describe, expect, it } from 'vitest';
import { decodeInstances, encodeInstances } from '../../src/protocol/instances.js';

describe('the instances codec', () => {
  const inputs = [
    { name: 'ids', datatype: 'INT64' as const, shape: [-1, 3], dims: [] },
    { name: 'dense', datatype: 'FP32' as const, shape: [-1, 4], dims: [] },
  ];

  it('round-trips a multi-input batch through the row format', () => {
    const feeds = {
      ids: { data: BigInt64Array.from([1n, 2n, 3n, 4n, 5n, 6n]), dims: [2, 3] },
      dense: { data: Float32Array.from([0.5, 1, 2, 3, 4, 5, 6, 7]), dims: [2, 4] },
    };
    const body = encodeInstances(inputs, feeds);
    expect(body.instances[1]).toEqual({ ids: [4, 5, 6], dense: [4, 5, 6, 7] });
    const decoded = decodeInstances(inputs as any, JSON.parse(JSON.stringify(body)), 'test');
    expect(decoded.rows).toBe(2);
    expect(decoded.feeds.ids).toEqual(feeds.ids);
    expect(decoded.feeds.dense).toEqual(feeds.dense);
  });

  it('names the instance and input that is missing', () => {
    expect(() => decodeInstances(inputs as any, { instances: [{ ids: [1, 2, 3] }] }, ':predict')).toThrow(
      ":predict: instance 0 has no input 'dense'; the model's inputs are ids, dense",
    );
    expect(() => decodeInstances(inputs as any, { rows: [] }, ':predict')).toThrow(':predict: body must be {"instances": [...]}');
  });
});
