import { describe, expect, it } from 'vitest';
import { decodeRestRequest, decodeRestResponse, encodeRestRequest, encodeRestResponse } from '../../src/protocol/rest.js';
import { error, signature } from './codec.js';

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
