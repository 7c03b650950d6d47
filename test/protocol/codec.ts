/** A signature of three inputs and two outputs, and the BadRequest a codec throws, for the codec tests. */
import { expect } from 'vitest';
import type { ServableTensor } from '../../src/model/session.js';
import { BadRequest, type Signature } from '../../src/protocol/request.js';

export const tensor = (name: string, datatype: ServableTensor['datatype'], dims: (number | string)[]): ServableTensor => ({
  name,
  datatype,
  dims,
  shape: dims.map((d) => (typeof d === 'number' ? d : -1)),
  isTensor: true,
});

export const signature: Signature = {
  name: 'm',
  version: '1',
  inputs: [tensor('x', 'FP32', ['batch', 3]), tensor('ids', 'INT64', ['batch', 2]), tensor('text', 'BYTES', ['batch'])],
  outputs: [tensor('y', 'FP32', ['batch', 1]), tensor('label', 'INT64', ['batch'])],
};

export const error = (fn: () => unknown): BadRequest => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(BadRequest);
    return e as BadRequest;
  }
  throw new Error('expected a BadRequest');
};
