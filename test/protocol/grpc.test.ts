import { describe, expect, it } from 'vitest';
import { decodeGrpcRequest, encodeGrpcRequest } from '../../src/protocol/grpc.js';
import type { Signature } from '../../src/protocol/request.js';
import { error, signature, tensor } from './codec.js';

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
