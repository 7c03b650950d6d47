import { describe, expect, it } from 'vitest';
import { tensorFromBytes, tensorToBytes } from '../src/model/datatypes.js';
import type { ServableTensor } from '../src/model/session.js';
import { decodeGrpcRequest, encodeGrpcRequest } from '../src/protocol/grpc.js';
import { decodeTensorData, jsonDataText } from '../src/protocol/json-data.js';
import { BadRequest, type Signature } from '../src/protocol/request.js';
import { decodeRestRequest, decodeRestResponse, encodeRestRequest, encodeRestResponse } from '../src/protocol/rest.js';

const tensor = (name: string, datatype: ServableTensor['datatype'], dims: (number | string)[]): ServableTensor => ({
  name,
  datatype,
  dims,
  shape: dims.map((d) => (typeof d === 'number' ? d : -1)),
  isTensor: true,
});

const signature: Signature = {
  name: 'm',
  version: '1',
  inputs: [tensor('x', 'FP32', ['batch', 3]), tensor('ids', 'INT64', ['batch', 2]), tensor('text', 'BYTES', ['batch'])],
  outputs: [tensor('y', 'FP32', ['batch', 1]), tensor('label', 'INT64', ['batch'])],
};

const error = (fn: () => unknown): BadRequest => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(BadRequest);
    return e as BadRequest;
  }
  throw new Error('expected a BadRequest');
};

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

describe('REST requests, JSON and binary', () => {
  const feeds = {
    x: { data: Float32Array.from([1, 2, 3, 4, 5, 6]), dims: [2, 3] },
    ids: { data: BigInt64Array.from([1n, 2n, 3n, 4n]), dims: [2, 2] },
    text: { data: ['hello', 'wörld'], dims: [2] },
  };

  it('decodes what the client encodes, in either form, to the same tensors', () => {
    for (const binary of [false, true]) {
      const { body, headers } = encodeRestRequest(signature.inputs, feeds, { binary, id: 'r1' });
      const header = headers['inference-header-content-length'];
      const request = decodeRestRequest(body, header ? Number(header) : undefined, signature);
      expect(request.id).toBe('r1');
      expect(request.rows).toBe(2);
      expect(Array.from(request.inputs.x.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(Array.from(request.inputs.ids.data as BigInt64Array)).toEqual([1n, 2n, 3n, 4n]);
      expect(request.inputs.text.data).toEqual(['hello', 'wörld']);
      expect([...request.binaryOutputs]).toEqual(binary ? ['y', 'label'] : []);
    }
  });

  it('answers binary outputs after the JSON header, and JSON outputs inline', () => {
    const result = { y: { data: Float32Array.from([0.5, 0.25]), dims: [2, 1] }, label: { data: BigInt64Array.from([1n, 0n]), dims: [2] } };
    const response = encodeRestResponse(signature, result, { id: undefined, outputs: undefined, binaryOutputs: new Set(['y']) });
    expect(Buffer.isBuffer(response.body)).toBe(true);
    const body = response.body as Buffer;
    const head = body.subarray(0, response.headerLength).toString();
    expect(head).toBe(
      '{"model_name":"m","model_version":"1","outputs":[{"name":"y","datatype":"FP32","shape":[2,1],"parameters":{"binary_data_size":8}},{"name":"label","datatype":"INT64","shape":[2],"data":[1,0]}]}',
    );
    expect(body.subarray(response.headerLength)).toEqual(Buffer.from(Float32Array.from([0.5, 0.25]).buffer));
    const decoded = decodeRestResponse(body, response.headerLength);
    expect(Array.from(decoded.y.data as Float32Array)).toEqual([0.5, 0.25]);
    expect(decoded.label.data).toEqual([1, 0]);
  });

  it('names what is wrong with a binary request', () => {
    const head = (inputs: unknown[]) => Buffer.from(JSON.stringify({ inputs }));
    const x = (size: number) => ({ name: 'x', datatype: 'FP32', shape: [1, 3], parameters: { binary_data_size: size } });
    const rest = [
      { name: 'ids', datatype: 'INT64', shape: [1, 2], data: [1, 2] },
      { name: 'text', datatype: 'BYTES', shape: [1], data: ['a'] },
    ];
    const h = head([x(12), ...rest]);
    expect(error(() => decodeRestRequest(Buffer.concat([h, Buffer.alloc(8)]), h.length, signature)).message).toBe(
      "input 'x': binary_data_size 12 runs past the end of the body (8 bytes left)",
    );
    const h2 = head([x(8), ...rest]);
    expect(error(() => decodeRestRequest(Buffer.concat([h2, Buffer.alloc(8)]), h2.length, signature)).message).toBe(
      "input 'x': 8 bytes of binary data do not hold FP32 [1, 3]",
    );
    expect(error(() => decodeRestRequest(Buffer.concat([h, Buffer.alloc(16)]), h.length, signature)).message).toBe(
      "the body has 4 bytes of binary data that no input's binary_data_size accounts for",
    );
    expect(error(() => decodeRestRequest(h, undefined, signature)).message).toMatch(
      /needs the binary data extension; send the Inference-Header-Content-Length header/,
    );
    expect(error(() => decodeRestRequest(Buffer.from('{"inputs": ['), undefined, signature)).message).toMatch(/^malformed JSON: /);
  });
});

describe('gRPC messages', () => {
  const feeds = {
    x: { data: Float32Array.from([1, 2, 3]), dims: [1, 3] },
    ids: { data: BigInt64Array.from([9n, 8n]), dims: [1, 2] },
    text: { data: ['z'], dims: [1] },
  };

  it('decodes raw contents and typed contents to the same tensors', () => {
    const raw = decodeGrpcRequest(encodeGrpcRequest('m', signature.inputs, feeds), signature);
    const typed = decodeGrpcRequest(
      {
        inputs: [
          { name: 'x', datatype: 'FP32', shape: [1, 3], contents: { fp32_contents: [1, 2, 3] } },
          { name: 'ids', datatype: 'INT64', shape: [1, 2], contents: { int64_contents: [9, 8] } },
          { name: 'text', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [Buffer.from('z')] } },
        ],
      },
      signature,
    );
    for (const request of [raw, typed]) {
      expect(Array.from(request.inputs.x.data as Float32Array)).toEqual([1, 2, 3]);
      expect(Array.from(request.inputs.ids.data as BigInt64Array)).toEqual([9n, 8n]);
      expect(request.inputs.text.data).toEqual(['z']);
    }
  });

  it('refuses a mix of raw and typed contents, a wrong count, and FP16 without raw bytes', () => {
    const message = encodeGrpcRequest('m', signature.inputs, feeds);
    message.inputs![0].contents = { fp32_contents: [1, 2, 3] };
    expect(error(() => decodeGrpcRequest(message, signature)).message).toBe("input 'x': contents and raw_input_contents exclude each other");
    message.raw_input_contents = message.raw_input_contents!.slice(0, 2);
    expect(error(() => decodeGrpcRequest(message, signature)).message).toBe('raw_input_contents has 2 entries for 3 inputs; send one per input, in order');
    const half: Signature = { ...signature, inputs: [tensor('h', 'FP16', [2])] };
    expect(error(() => decodeGrpcRequest({ inputs: [{ name: 'h', datatype: 'FP16', shape: [2] }] }, half)).message).toBe(
      "input 'h': FP16 has no typed contents field; send it in raw_input_contents",
    );
  });
});
