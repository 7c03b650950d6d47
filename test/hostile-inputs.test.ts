/**
 * Issue 22 (begun): hostile requests get a short, clear 4xx, and the connection they came on keeps
 * working. Each case is followed by a liveness check and a valid inference compared with ONNX Runtime's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type LoadedModel } from '../src/model/session.js';
import { encodeGrpcRequest } from '../src/protocol/grpc.js';
import { encodeRestRequest, HEADER_LENGTH } from '../src/protocol/rest.js';
import { call, inferenceClient, type InferenceClient } from '../src/protocol/grpc-client.js';
import { startServer, type RunningServer } from '../src/server/run.js';
import { freePort } from '../src/targets/kubectl.js';
import { fixture, serveOptions } from './helpers.js';

const ROW = Array.from({ length: 13 }, (_, i) => i / 10);
const INPUTS = [{ name: 'features', datatype: 'FP32' as const, shape: [-1, 13] }];
/** The longest error text a client may get back: long enough to say what was wrong, short enough for any transport. */
const MAX_ERROR_CHARS = 1024;

describe('error text is bounded, and the connection survives every error', () => {
  let server: RunningServer;
  let client: InferenceClient;
  let local: LoadedModel;
  let expected: number[];
  let grpcAddress: string;

  beforeAll(async () => {
    const grpcPort = await freePort();
    server = await startServer(serveOptions('wine', { modelName: 'wine', grpcPort }), () => undefined);
    grpcAddress = `127.0.0.1:${grpcPort}`;
    client = inferenceClient(grpcAddress);
    local = await loadModel({ path: fixture('wine', 'model.onnx') });
    const out = await local.run({ features: { data: Float32Array.from(ROW), dims: [1, 13] } });
    expected = Array.from(Object.values(out)[0].data as Float32Array);
  });
  afterAll(async () => {
    client?.close();
    await local?.release();
    await server?.stop();
  });

  /** A valid call on the same client (the same HTTP/2 connection), answered as ONNX Runtime answers. */
  const stillServes = async () => {
    const answer = await call(client, client.ModelInfer, encodeGrpcRequest('wine', INPUTS, { features: { data: Float32Array.from(ROW), dims: [1, 13] } }), 5000);
    expect(Array.from(new Float32Array(new Uint8Array(answer.raw_output_contents![0]).slice().buffer))).toEqual(expected);
    expect((await fetch(`${server.url}/v2/health/live`)).status).toBe(200);
  };

  it.each([
    ['a model name of 200,000 characters', () => encodeGrpcRequest('m'.repeat(200_000), INPUTS, { features: { data: Float32Array.from(ROW), dims: [1, 13] } }), 'NOT_FOUND'],
    ['a shape of 20,000 dimensions', () => ({ ...encodeGrpcRequest('wine', INPUTS, { features: { data: Float32Array.from(ROW), dims: [1, 13] } }), inputs: [{ name: 'features', datatype: 'FP32', shape: Array(20_000).fill(1), contents: { fp32_contents: ROW } }] }), 'INVALID_ARGUMENT'],
    ['an input name of 100,000 characters', () => ({ model_name: 'wine', inputs: [{ name: 'x'.repeat(100_000), datatype: 'FP32', shape: [1, 13], contents: { fp32_contents: ROW } }] }), 'INVALID_ARGUMENT'],
  ])('gRPC, %s: a short error, and the next call on the connection succeeds', async (_, request, status) => {
    const error = await call(client, client.ModelInfer, request() as never, 5000).then(
      () => null,
      (e: { code: number; details: string }) => e,
    );
    expect(error).not.toBeNull();
    const grpcStatus = (await import('@grpc/grpc-js')).status;
    expect(grpcStatus[error!.code]).toBe(status);
    expect(error!.details.length).toBeLessThanOrEqual(MAX_ERROR_CHARS);
    expect(error!.details).toMatch(/…\[\d+ chars\]/);
    await stillServes();
  });

  it('REST, the same requests: a bounded JSON error', async () => {
    const bodies = [
      { url: `/v2/models/${'m'.repeat(10_000)}/infer`, body: { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 13], data: ROW }] } },
      { url: '/v2/models/wine/infer', body: { inputs: [{ name: 'features', datatype: 'FP32', shape: Array(20_000).fill(1), data: ROW }] } },
      { url: '/v2/models/wine/infer', body: { inputs: [{ name: 'y'.repeat(100_000), datatype: 'FP32', shape: [1, 13], data: ROW }] } },
    ];
    for (const { url, body } of bodies) {
      const res = await fetch(`${server.url}${url}`, { method: 'POST', body: JSON.stringify(body) });
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      const { error } = (await res.json()) as { error: string };
      expect(error.length).toBeLessThanOrEqual(MAX_ERROR_CHARS);
    }
    await stillServes();
  });

  it.each([
    ['bytes that are not protobuf', () => Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a])],
    ['a valid request cut in half', (valid: Buffer) => valid.subarray(0, Math.floor(valid.length / 2))],
  ])('gRPC, %s: INVALID_ARGUMENT with a short reason, and the connection survives', async (_, bytes) => {
    const grpc = await import('@grpc/grpc-js');
    const { inferenceProto } = await import('../src/protocol/grpc.js');
    const method = (inferenceProto()['inference.GRPCInferenceService'] as Record<string, { requestSerialize: (m: unknown) => Buffer }>).ModelInfer;
    const valid = method.requestSerialize(encodeGrpcRequest('wine', INPUTS, { features: { data: Float32Array.from(ROW), dims: [1, 13] } }));
    const raw = new grpc.Client(grpcAddress, grpc.credentials.createInsecure());
    try {
      const error = await new Promise<{ code: number; details: string } | null>((resolve) =>
        raw.makeUnaryRequest('/inference.GRPCInferenceService/ModelInfer', (b: Buffer) => b, (b: Buffer) => b, bytes(valid), { deadline: Date.now() + 5000 }, (e) => resolve(e as never)),
      );
      expect(error && grpc.status[error.code]).toBe('INVALID_ARGUMENT');
      expect(error!.details).toMatch(/^malformed ModelInfer request: /);
      expect(error!.details.length).toBeLessThanOrEqual(MAX_ERROR_CHARS);
    } finally {
      raw.close();
    }
    await stillServes();
  });

  it('strict numbers: the binary header length and CSV cells are plain decimals; data and binary_data_size together are refused', async () => {
    const binary = encodeRestRequest(INPUTS, { features: { data: Float32Array.from(ROW), dims: [1, 13] } }, { binary: true });
    const header = Number(binary.headers[HEADER_LENGTH]);
    const post = (headers: Record<string, string>, body: Uint8Array | string, path = '/v2/models/wine/infer') => fetch(`${server.url}${path}`, { method: 'POST', headers, body });
    expect((await post(binary.headers, binary.body)).status).toBe(200);
    for (const written of [`${header}e0`, `0x${header.toString(16)}`, `+${header}`, `${header}.0`]) {
      const res = await post({ ...binary.headers, [HEADER_LENGTH]: written }, binary.body);
      expect(res.status, written).toBe(400);
      expect(((await res.json()) as { error: string }).error).toContain('must be a whole number');
    }
    const csv = await post({ 'content-type': 'text/csv' }, `${ROW.slice(0, 12).join(',')},0x10\n`, '/invocations');
    expect(csv.status).toBe(400);
    expect(((await csv.json()) as { error: string }).error).toBe("text/csv: row 1, column 13 is '0x10', not a number (send rows of numbers, no header line)");
    expect((await post({ 'content-type': 'text/csv' }, `${ROW.join(',')}\n`, '/invocations')).status).toBe(200);
    const head = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 13], data: ROW, parameters: { binary_data_size: 52 } }] });
    const both = await post({ 'content-type': 'application/octet-stream', [HEADER_LENGTH]: String(Buffer.byteLength(head)) }, Buffer.concat([Buffer.from(head), Buffer.from(Float32Array.from(ROW).buffer)]));
    expect(both.status).toBe(400);
    expect(((await both.json()) as { error: string }).error).toBe(`input 'features': gives both "data" and parameters.binary_data_size; send the tensor one way`);
    await stillServes();
  });

  it('non-finite numbers are refused on every path (JSON 1e39 as FP32, binary NaN, gRPC typed and raw NaN), and allowed with allowNonFinite', async () => {
    const nan = ROW.map((v, i) => (i === 3 ? NaN : v));
    const binary = encodeRestRequest(INPUTS, { features: { data: Float32Array.from(nan), dims: [1, 13] } }, { binary: true });
    const grpcRaw = encodeGrpcRequest('wine', INPUTS, { features: { data: Float32Array.from(nan), dims: [1, 13] } });
    const grpcTyped = { model_name: 'wine', inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 13], contents: { fp32_contents: nan } }] };
    const json = `{"inputs":[{"name":"features","datatype":"FP32","shape":[1,13],"data":[${ROW.map((v, i) => (i === 3 ? '1e39' : v)).join(',')}]}]}`;
    const attempt = async (target: RunningServer, grpcClient: InferenceClient) => [
      (await fetch(`${target.url}/v2/models/wine/infer`, { method: 'POST', headers: binary.headers, body: binary.body })).status,
      (await fetch(`${target.url}/v2/models/wine/infer`, { method: 'POST', body: json })).status,
      await call(grpcClient, grpcClient.ModelInfer, grpcRaw, 5000).then(() => 'OK', (e: { code: number }) => e.code),
      await call(grpcClient, grpcClient.ModelInfer, grpcTyped as never, 5000).then(() => 'OK', (e: { code: number }) => e.code),
    ];
    expect(await attempt(server, client)).toEqual([400, 400, 3, 3]);
    const res = await fetch(`${server.url}/v2/models/wine/infer`, { method: 'POST', headers: binary.headers, body: binary.body });
    expect(((await res.json()) as { error: string }).error).toMatch(/^input 'features': element 3 is NaN; FP32 inputs must be finite/);
    await stillServes();

    const grpcPort = await freePort();
    const lenient = await startServer(serveOptions('wine', { modelName: 'wine', grpcPort, allowNonFinite: true }), () => undefined);
    const lenientClient = inferenceClient(`127.0.0.1:${grpcPort}`);
    try {
      expect(await attempt(lenient, lenientClient)).toEqual([200, 200, 'OK', 'OK']);
    } finally {
      lenientClient.close();
      await lenient.stop();
    }
  });
});
