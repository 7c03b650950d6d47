/**
 * Issue 22 (begun): hostile requests get a short, clear 4xx, and the connection they came on keeps
 * working. Each case is followed by a liveness check and a valid inference compared with ONNX Runtime's.
 * At test/'s root: a theme suite over every path a request takes (src/protocol, src/server), not one module.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type LoadedModel } from '../src/model/session.js';
import { encodeGrpcRequest } from '../src/protocol/grpc.js';
import { encodeRestRequest, HEADER_LENGTH } from '../src/protocol/rest.js';
import { call, inferenceClient, type InferenceClient } from '../src/protocol/grpc-client.js';
import { startServer, type RunningServer } from '../src/server/run.js';
import { freePort } from '../src/targets/kubectl.js';
import { fixture, ROOT, serveOptions } from './helpers.js';

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
    const answer = await call(
      client,
      client.ModelInfer,
      encodeGrpcRequest('wine', INPUTS, { features: { data: Float32Array.from(ROW), dims: [1, 13] } }),
      5000,
    );
    expect(Array.from(new Float32Array(new Uint8Array(answer.raw_output_contents![0]).slice().buffer))).toEqual(expected);
    expect((await fetch(`${server.url}/v2/health/live`)).status).toBe(200);
  };

  it.each([
    [
      'a model name of 200,000 characters',
      () => encodeGrpcRequest('m'.repeat(200_000), INPUTS, { features: { data: Float32Array.from(ROW), dims: [1, 13] } }),
      'NOT_FOUND',
      /…\[\d+ chars\]/,
    ],
    [
      'a shape of 20,000 dimensions',
      () => ({
        ...encodeGrpcRequest('wine', INPUTS, { features: { data: Float32Array.from(ROW), dims: [1, 13] } }),
        inputs: [{ name: 'features', datatype: 'FP32', shape: Array(20_000).fill(1), contents: { fp32_contents: ROW } }],
      }),
      'INVALID_ARGUMENT',
      /expected shape \[-1, 13\] \(-1 is any size\), got 20000 dimensions$/,
    ],
    [
      'an input name of 100,000 characters',
      () => ({ model_name: 'wine', inputs: [{ name: 'x'.repeat(100_000), datatype: 'FP32', shape: [1, 13], contents: { fp32_contents: ROW } }] }),
      'INVALID_ARGUMENT',
      /…\[\d+ chars\]/,
    ],
  ])('gRPC, %s: a short error, and the next call on the connection succeeds', async (_, request, status, details) => {
    const error = await call(client, client.ModelInfer, request() as never, 5000).then(
      () => null,
      (e: { code: number; details: string }) => e,
    );
    expect(error).not.toBeNull();
    const grpcStatus = (await import('@grpc/grpc-js')).status;
    expect(grpcStatus[error!.code]).toBe(status);
    expect(error!.details.length).toBeLessThanOrEqual(MAX_ERROR_CHARS);
    expect(error!.details).toMatch(details);
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
        raw.makeUnaryRequest(
          '/inference.GRPCInferenceService/ModelInfer',
          (b: Buffer) => b,
          (b: Buffer) => b,
          bytes(valid),
          { deadline: Date.now() + 5000 },
          (e) => resolve(e as never),
        ),
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
    const post = (headers: Record<string, string>, body: Uint8Array | string, path = '/v2/models/wine/infer') =>
      fetch(`${server.url}${path}`, { method: 'POST', headers, body });
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
    const both = await post(
      { 'content-type': 'application/octet-stream', [HEADER_LENGTH]: String(Buffer.byteLength(head)) },
      Buffer.concat([Buffer.from(head), Buffer.from(Float32Array.from(ROW).buffer)]),
    );
    expect(both.status).toBe(400);
    expect(((await both.json()) as { error: string }).error).toBe(
      `input 'features': gives both "data" and parameters.binary_data_size; send the tensor one way`,
    );
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
      await call(grpcClient, grpcClient.ModelInfer, grpcRaw, 5000).then(
        () => 'OK',
        (e: { code: number }) => e.code,
      ),
      await call(grpcClient, grpcClient.ModelInfer, grpcTyped as never, 5000).then(
        () => 'OK',
        (e: { code: number }) => e.code,
      ),
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

/** A binary request (REST binary extension) whose tensors are given as raw bytes: what a hostile client can send. */
function rawBinaryRequest(inputs: { name: string; datatype: string; shape: number[]; bytes: Uint8Array }[]): { body: Buffer; headers: Record<string, string> } {
  const head = Buffer.from(
    JSON.stringify({
      inputs: inputs.map(({ name, datatype, shape, bytes }) => ({ name, datatype, shape, parameters: { binary_data_size: bytes.byteLength } })),
    }),
  );
  return {
    body: Buffer.concat([head, ...inputs.map((i) => i.bytes)]),
    headers: { 'content-type': 'application/octet-stream', [HEADER_LENGTH]: String(head.length) },
  };
}

/** BYTES elements as the binary formats carry them: a 4-byte little-endian length, then the bytes. */
function lengthPrefixed(elements: Uint8Array[]): Buffer {
  return Buffer.concat(elements.flatMap((e) => [Buffer.from(Uint32Array.of(e.byteLength).buffer), Buffer.from(e)]));
}

describe('one validation for every path: shapes against the signature, text ONNX Runtime can take', () => {
  let vad: RunningServer;
  let echo: RunningServer;
  let vadClient: InferenceClient;
  let echoClient: InferenceClient;
  let vadLocal: LoadedModel;
  const SAMPLES = 512;
  const vadFeeds = () => ({
    input: { data: Float32Array.from({ length: SAMPLES }, (_, i) => Math.sin(i / 10)), dims: [1, SAMPLES] },
    sr: { data: BigInt64Array.of(16000n), dims: [] as number[] },
    h: { data: new Float32Array(128), dims: [2, 1, 64] },
    c: { data: new Float32Array(128), dims: [2, 1, 64] },
  });
  const VAD_INPUTS = [
    { name: 'input', datatype: 'FP32' as const, shape: [-1, -1] },
    { name: 'sr', datatype: 'INT64' as const, shape: [] },
    { name: 'h', datatype: 'FP32' as const, shape: [2, -1, 64] },
    { name: 'c', datatype: 'FP32' as const, shape: [2, -1, 64] },
  ];
  const ECHO_INPUTS = [
    { name: 'text', datatype: 'BYTES' as const, shape: [-1] },
    { name: 'x', datatype: 'FP32' as const, shape: [-1, 2] },
  ];

  beforeAll(async () => {
    const [vadGrpc, echoGrpc] = [await freePort(), await freePort()];
    vad = await startServer(serveOptions('streaming_vad', { modelName: 'vad', grpcPort: vadGrpc }), () => undefined);
    echo = await startServer(serveOptions('string_echo', { modelName: 'echo', grpcPort: echoGrpc }), () => undefined);
    vadClient = inferenceClient(`127.0.0.1:${vadGrpc}`);
    echoClient = inferenceClient(`127.0.0.1:${echoGrpc}`);
    vadLocal = await loadModel({ path: fixture('streaming_vad', 'model.onnx') });
  });
  afterAll(async () => {
    vadClient?.close();
    echoClient?.close();
    await vadLocal?.release();
    await vad?.stop();
    await echo?.stop();
  });

  /** Liveness, then a valid VAD request over REST and gRPC answered exactly as ONNX Runtime answers in process. */
  const vadStillServes = async () => {
    expect((await fetch(`${vad.url}/v2/health/live`)).status).toBe(200);
    const expected = Array.from((await vadLocal.run(vadFeeds())).output.data as Float32Array);
    const { body, headers } = encodeRestRequest(VAD_INPUTS, vadFeeds(), { binary: false });
    const res = await fetch(`${vad.url}/v2/models/vad/infer`, { method: 'POST', headers, body });
    expect(res.status).toBe(200);
    const outputs = ((await res.json()) as { outputs: { name: string; data: number[] }[] }).outputs;
    expect(outputs.find((o) => o.name === 'output')!.data).toEqual(expected.map((v) => Math.fround(v)));
    const answer = await call(vadClient, vadClient.ModelInfer, encodeGrpcRequest('vad', VAD_INPUTS, vadFeeds()), 5000);
    expect(Array.from(new Float32Array(new Uint8Array(answer.raw_output_contents![0]).slice().buffer))).toEqual(expected);
  };

  /** The VAD request with `sr` given another shape, over JSON, binary and gRPC (typed and raw). */
  const srShapedAs = async (shape: number[]) => {
    const elements = shape.reduce((n, d) => n * d, 1);
    const json = {
      inputs: VAD_INPUTS.map((spec) =>
        spec.name === 'sr'
          ? { ...spec, shape, data: Array(elements).fill(16000) }
          : { ...spec, shape: vadFeeds()[spec.name as 'input'].dims, data: Array.from(vadFeeds()[spec.name as 'input'].data as Float32Array) },
      ),
    };
    const rest = await fetch(`${vad.url}/v2/models/vad/infer`, { method: 'POST', body: JSON.stringify(json) });
    const rawFeeds = { ...vadFeeds(), sr: { data: new BigInt64Array(elements).fill(16000n), dims: shape } };
    const raw = await call(vadClient, vadClient.ModelInfer, encodeGrpcRequest('vad', VAD_INPUTS, rawFeeds), 5000).then(
      () => 'OK',
      (e: { code: number; details: string }) => `${e.code} ${e.details}`,
    );
    const binary = encodeRestRequest(VAD_INPUTS, rawFeeds, { binary: true });
    const bin = await fetch(`${vad.url}/v2/models/vad/infer`, { method: 'POST', headers: binary.headers, body: binary.body });
    return { rest: rest.status, restError: ((await rest.json()) as { error: string }).error, binary: bin.status, grpc: raw };
  };

  it.each([
    ['[3]', [3]],
    ['5,000 dimensions of 1', Array(5000).fill(1)],
    ['100,000 dimensions of 1', Array(100_000).fill(1)],
  ])('a scalar input sent as %s: 400 / INVALID_ARGUMENT naming the scalar, on every path', async (_, shape) => {
    const answer = await srShapedAs(shape);
    expect(answer).toMatchObject({ rest: 400, binary: 400 });
    expect(answer.restError).toMatch(/^input 'sr': expected a scalar, shape \[\], got \d+ dimensions?/);
    expect(answer.restError.length).toBeLessThanOrEqual(MAX_ERROR_CHARS);
    expect(answer.grpc).toMatch(/^3 input 'sr': expected a scalar, shape \[\]/);
    await vadStillServes();
  });

  it('a scalar has no rows: /invocations instances for the VAD model get a 400 that says so', async () => {
    const res = await fetch(`${vad.url}/invocations`, {
      method: 'POST',
      body: JSON.stringify({ instances: [{ input: [0.1, 0.2], sr: 16000, h: [[0]], c: [[0]] }] }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/input 'sr' is a scalar/);
    await vadStillServes();
  });

  /** Liveness, then a text that is valid UTF-8 (accents, an emoji) round-trips exactly on JSON, binary and gRPC. */
  const echoStillServes = async () => {
    expect((await fetch(`${echo.url}/v2/health/live`)).status).toBe(200);
    const text = ['héllo ✓', '😀 two', ''];
    const feeds = { text: { data: text, dims: [3] }, x: { data: new Float32Array(6), dims: [3, 2] } };
    for (const binary of [false, true]) {
      const req = encodeRestRequest(ECHO_INPUTS, feeds, { binary });
      const res = await fetch(`${echo.url}/v2/models/echo/infer`, { method: 'POST', headers: req.headers, body: req.body });
      expect(res.status).toBe(200);
      const bytes = new Uint8Array(await res.arrayBuffer());
      const header = res.headers.get(HEADER_LENGTH);
      const outputs = (await import('../src/protocol/rest.js')).decodeRestResponse(bytes, header === null ? undefined : Number(header));
      expect(outputs.echo.data).toEqual(text);
    }
    const answer = await call(echoClient, echoClient.ModelInfer, encodeGrpcRequest('echo', ECHO_INPUTS, feeds), 5000);
    const decoded = (await import('../src/protocol/grpc.js')).decodeGrpcResponse(answer);
    expect(decoded.echo.data).toEqual(text);
  };

  it('BYTES of shape [4294967296] in 12 bytes: 400 / INVALID_ARGUMENT before anything is allocated (binary REST, gRPC raw)', async () => {
    const bytes = lengthPrefixed([Buffer.from('abcdefgh')]);
    const req = rawBinaryRequest([
      { name: 'text', datatype: 'BYTES', shape: [4294967296], bytes },
      { name: 'x', datatype: 'FP32', shape: [1, 2], bytes: new Uint8Array(8) },
    ]);
    const res = await fetch(`${echo.url}/v2/models/echo/infer`, { method: 'POST', headers: req.headers, body: req.body });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/^input 'text': 12 bytes of binary data do not hold BYTES \[4294967296\]/);
    const grpcAnswer = await call(
      echoClient,
      echoClient.ModelInfer,
      {
        model_name: 'echo',
        inputs: [
          { name: 'text', datatype: 'BYTES', shape: [4294967296] },
          { name: 'x', datatype: 'FP32', shape: [1, 2] },
        ],
        raw_input_contents: [bytes, new Uint8Array(8)],
      },
      5000,
    ).then(
      () => 'OK',
      (e: { code: number; details: string }) => `${e.code} ${e.details}`,
    );
    expect(grpcAnswer).toMatch(/^3 input 'text': 12 raw bytes do not hold BYTES \[4294967296\]/);
    await echoStillServes();
  });

  it('BYTES that could not reach the model as sent (a NUL, bytes not UTF-8, a lone surrogate): 400 / INVALID_ARGUMENT naming the element, never a silent change', async () => {
    const x = { name: 'x', datatype: 'FP32', shape: [2, 2], data: [0, 0, 0, 0] };
    const jsonCases = [
      `{"inputs":[{"name":"text","datatype":"BYTES","shape":[2],"data":["ok","ab\\u0000cd"]},${JSON.stringify(x)}]}`,
      `{"inputs":[{"name":"text","datatype":"BYTES","shape":[2],"data":["ok","\\ud800z"]},${JSON.stringify(x)}]}`,
    ];
    const errors: string[] = [];
    for (const body of jsonCases) {
      const res = await fetch(`${echo.url}/v2/models/echo/infer`, { method: 'POST', body });
      expect(res.status).toBe(400);
      errors.push(((await res.json()) as { error: string }).error);
    }
    for (const element of [Buffer.from('ab\0cd'), Buffer.from([0x61, 0xff, 0xfe])]) {
      const req = rawBinaryRequest([
        { name: 'text', datatype: 'BYTES', shape: [2], bytes: lengthPrefixed([Buffer.from('ok'), element]) },
        { name: 'x', datatype: 'FP32', shape: [2, 2], bytes: new Uint8Array(16) },
      ]);
      const res = await fetch(`${echo.url}/v2/models/echo/infer`, { method: 'POST', headers: req.headers, body: req.body });
      expect(res.status).toBe(400);
      errors.push(((await res.json()) as { error: string }).error);
      const typed = {
        model_name: 'echo',
        inputs: [
          { name: 'text', datatype: 'BYTES', shape: [2], contents: { bytes_contents: [Buffer.from('ok'), element] } },
          { name: 'x', datatype: 'FP32', shape: [2, 2], contents: { fp32_contents: [0, 0, 0, 0] } },
        ],
      };
      const rawGrpc = {
        model_name: 'echo',
        inputs: [
          { name: 'text', datatype: 'BYTES', shape: [2] },
          { name: 'x', datatype: 'FP32', shape: [2, 2] },
        ],
        raw_input_contents: [lengthPrefixed([Buffer.from('ok'), element]), new Uint8Array(16)],
      };
      for (const message of [typed, rawGrpc]) {
        errors.push(
          await call(echoClient, echoClient.ModelInfer, message as never, 5000).then(
            () => 'OK',
            (e: { code: number; details: string }) => `${e.code} ${e.details}`,
          ),
        );
      }
    }
    const v1 = await fetch(`${echo.url}/v1/models/echo:predict`, { method: 'POST', body: `{"instances":[{"text":"a\\u0000b","x":[0,0]}]}` });
    expect(v1.status).toBe(400);
    errors.push(((await v1.json()) as { error: string }).error);
    expect(errors.map((e) => e.replace(/;.*/, ''))).toEqual([
      "input 'text': element 1 holds a NUL byte",
      "input 'text': element 1 is not UTF-8 (a lone surrogate)",
      "input 'text': element 1 holds a NUL byte",
      "3 input 'text': element 1 holds a NUL byte",
      "3 input 'text': element 1 holds a NUL byte",
      "input 'text': element 1 is not UTF-8",
      "3 input 'text': element 1 is not UTF-8",
      "3 input 'text': element 1 is not UTF-8",
      "input 'text': element 0 holds a NUL byte",
    ]);
    expect(errors[0]).toMatch(/onnxruntime-node ends at the first NUL/);
    await echoStillServes();
  });
});

/** `mlops serve` in a process of its own, so its memory can be read from /proc. */
async function serveProcess(
  model: string,
  env: Record<string, string> = {},
): Promise<{ url: string; port: number; pid: number; stop: () => Promise<number | null> }> {
  const child = spawn(
    process.execPath,
    [path.join(ROOT, 'bin/mlops.js'), 'serve', '--model', fixture(model, 'model.onnx'), '--port', '0', '--grpc-port', '0', '--json'],
    { env: { ...process.env, CI: 'true', ...env } },
  );
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  while (!stdout.includes('"url"')) {
    if (child.exitCode !== null) throw new Error(`mlops serve exited with ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const { url } = JSON.parse(stdout) as { url: string };
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { url, port: Number(new URL(url).port), pid: child.pid!, stop: () => (child.kill('SIGTERM'), exited) };
}

/** Virtual and resident size of a process, in MiB. */
function memoryMiB(pid: number): { virtual: number; resident: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)![1]);
  return { virtual: kib('VmSize') / 1024, resident: kib('VmRSS') / 1024 };
}

/** Raw HTTP over one socket: what a client that declares more than it sends looks like. */
function rawSocket(port: number, head: string): Promise<{ socket: net.Socket; received: () => string }> {
  return new Promise((resolve, reject) => {
    let received = '';
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(head);
      resolve({ socket, received: () => received });
    });
    socket.on('data', (d) => (received += d.toString('latin1')));
    socket.on('error', reject);
  });
}

describe('memory follows the bytes received, never what a client declares', () => {
  const BODY = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 13], data: ROW }] });
  /** Bound on growth for 1,000 connections that each declared 16 MiB and sent 100 bytes: about 100 KB of bodies, plus sockets and parsers. */
  const BOUND_MIB = 64;

  it('1,000 connections declaring 16 MiB each: virtual and resident size grow by less than 64 MiB, valid requests keep working, and SIGTERM does not wait for those bodies', async () => {
    const server = await serveProcess('wine');
    const sockets: net.Socket[] = [];
    try {
      await fetch(`${server.url}/v2/models/wine/infer`, { method: 'POST', body: BODY });
      const before = memoryMiB(server.pid);
      for (let i = 0; i < 1000; i++) {
        const { socket } = await rawSocket(
          server.port,
          `POST /v2/models/wine/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${16 * 2 ** 20}\r\n\r\n${'['.repeat(100)}`,
        );
        sockets.push(socket);
      }
      await new Promise((r) => setTimeout(r, 500));
      const after = memoryMiB(server.pid);
      expect(after.virtual - before.virtual).toBeLessThan(BOUND_MIB);
      expect(after.resident - before.resident).toBeLessThan(BOUND_MIB);
      const res = await fetch(`${server.url}/v2/models/wine/infer`, { method: 'POST', body: BODY });
      expect(res.status).toBe(200);
      expect((await fetch(`${server.url}/v2/health/live`)).status).toBe(200);
      // No work has started for a body still arriving: shutdown answers those 503 and closes them, where it
      // waited the whole server.shutdownTimeoutMs (10 s) before.
      const answers = sockets.slice(0, 5).map(
        (s) =>
          new Promise<string>((r) => {
            let got = '';
            s.on('data', (d) => (got += String(d)));
            s.on('close', () => r(got));
          }),
      );
      const stopping = performance.now();
      expect(await server.stop()).toBe(0);
      expect(performance.now() - stopping).toBeLessThan(3000);
      for (const answer of await Promise.all(answers)) expect(answer).toMatch(/^HTTP\/1\.1 503 [^]*the server is shutting down/);
    } finally {
      for (const s of sockets) s.destroy();
      await server.stop();
    }
  }, 60_000);

  it('bodies arriving together past server.maxPendingBodyBytes: 503 with Retry-After for the newcomer, never a 500; it succeeds once the first has arrived', async () => {
    const grpcPort = await freePort();
    const server = await startServer(
      serveOptions('wine', { modelName: 'wine', grpcPort, maxBodyBytes: 1024 * 1024, maxPendingBodyBytes: 1024 * 1024 }),
      () => undefined,
    );
    try {
      // 900 KB of a 1 MiB body (JSON whitespace, then a valid request) arrive and wait.
      const padding = 1024 * 1024 - BODY.length;
      const first = await rawSocket(
        Number(new URL(server.url).port),
        `POST /v2/models/wine/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${padding + BODY.length}\r\n\r\n${' '.repeat(900 * 1024)}`,
      );
      await new Promise((r) => setTimeout(r, 200));
      const second = await fetch(`${server.url}/v2/models/wine/infer`, { method: 'POST', body: ' '.repeat(200 * 1024) + BODY });
      expect(second.status).toBe(503);
      expect(second.headers.get('retry-after')).toBe('1');
      expect(((await second.json()) as { error: string }).error).toMatch(
        /^the server is receiving \d+ bytes of other request bodies, its limit \(server\.maxPendingBodyBytes 1048576\); retry shortly$/,
      );
      first.socket.write(' '.repeat(padding - 900 * 1024) + BODY);
      for (let i = 0; i < 100 && !first.received().includes('\r\n\r\n{'); i++) await new Promise((r) => setTimeout(r, 20));
      expect(first.received()).toMatch(/^HTTP\/1\.1 200 /);
      first.socket.destroy();
      expect((await fetch(`${server.url}/v2/models/wine/infer`, { method: 'POST', body: ' '.repeat(200 * 1024) + BODY })).status).toBe(200);
    } finally {
      await server.stop();
    }
  });

  it('Expect: 100-continue with 200 MB declared: the 413 comes first, no 100 Continue; a body that fits gets its 100 Continue and its answer', async () => {
    const grpcPort = await freePort();
    const server = await startServer(serveOptions('wine', { modelName: 'wine', grpcPort }), () => undefined);
    const port = Number(new URL(server.url).port);
    try {
      const big = await rawSocket(
        port,
        `POST /v2/models/wine/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: ${200 * 1000 * 1000}\r\n\r\n`,
      );
      for (let i = 0; i < 100 && !big.received().includes('}'); i++) await new Promise((r) => setTimeout(r, 20));
      expect(big.received()).toMatch(/^HTTP\/1\.1 413 /);
      expect(big.received()).not.toMatch(/100 Continue/);
      expect(big.received()).toMatch(/request body is 200000000 bytes; the limit is 16777216 bytes \(server\.maxBodyBytes\)/);
      big.socket.destroy();

      const fits = await rawSocket(
        port,
        `POST /v2/models/wine/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: ${BODY.length}\r\n\r\n`,
      );
      for (let i = 0; i < 100 && !fits.received().includes('100 Continue'); i++) await new Promise((r) => setTimeout(r, 20));
      expect(fits.received()).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\n$/);
      fits.socket.write(BODY);
      for (let i = 0; i < 100 && !fits.received().includes('"outputs"'); i++) await new Promise((r) => setTimeout(r, 20));
      expect(fits.received()).toMatch(/HTTP\/1\.1 200 OK/);
      fits.socket.destroy();
    } finally {
      await server.stop();
    }
  });

  it('the 413 for a client already sending binary tensors does not tell it to send binary tensors', async () => {
    const grpcPort = await freePort();
    const server = await startServer(serveOptions('wine', { modelName: 'wine', grpcPort, maxBodyBytes: 4096 }), () => undefined);
    try {
      const binary = encodeRestRequest(INPUTS, { features: { data: new Float32Array(13 * 100), dims: [100, 13] } }, { binary: true });
      const res = await fetch(`${server.url}/v2/models/wine/infer`, { method: 'POST', headers: binary.headers, body: binary.body });
      expect(res.status).toBe(413);
      const { error } = (await res.json()) as { error: string };
      expect(error).toMatch(/send fewer rows per request, or raise server\.maxBodyBytes \(MLOPS_MAX_BODY_BYTES\)$/);
      expect(error).not.toMatch(/binary data/);
      const json = await fetch(`${server.url}/v2/models/wine/infer`, { method: 'POST', body: ' '.repeat(5000) + BODY });
      expect(((await json.json()) as { error: string }).error).toMatch(/send large tensors as binary data/);
    } finally {
      await server.stop();
    }
  });
});
