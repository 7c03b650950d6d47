/**
 * The data plane: REST binary tensor data, the Open Inference Protocol over gRPC with the official
 * proto, an image model over every encoding, inference off the event loop, and mlops test and bench
 * against servers they know nothing about. At test/'s root: a theme suite across src/protocol,
 * src/server and the clients, not one module.
 */
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../src/model/random.js';
import { loadModel, type LoadedModel } from '../src/model/session.js';
import type { ServeOptions } from '../src/server/options.js';
import { startServer, type RunningServer } from '../src/server/run.js';
import { fixture, freePort, lines, ROOT, runCli, serveOptions, slowLoopBody, withTempDir } from './helpers.js';

const quiet = () => undefined;

async function serve(model: string, overrides: Partial<ServeOptions> = {}, log: (line: string) => void = quiet): Promise<RunningServer> {
  return startServer(serveOptions(model, { shutdownTimeoutMs: 10_000, grpcPort: await freePort(), ...overrides }), log);
}

/** A client built from the proto file with @grpc/grpc-js and proto-loader alone, as a third-party service would. */
function officialClient(address: string) {
  const definition = loadSync(`${ROOT}/src/protocol/open_inference_grpc.proto`, { keepCase: true, longs: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(definition) as any;
  const client = new pkg.inference.GRPCInferenceService(address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
  const rpc = (method: string, request: unknown, deadlineMs?: number): Promise<any> =>
    new Promise((resolve, reject) =>
      client[method](request, ...(deadlineMs ? [{ deadline: Date.now() + deadlineMs }] : []), (error: grpc.ServiceError | null, response: unknown) =>
        error ? reject(error) : resolve(response),
      ),
    );
  return { rpc, close: () => client.close() };
}

const f32bytes = (values: ArrayLike<number>) => Buffer.from(Float32Array.from(values as number[]).buffer);

async function postBinary(url: string, header: object, binary: Buffer[]): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const head = Buffer.from(JSON.stringify(header));
  const res = await fetch(url, { method: 'POST', headers: { 'Inference-Header-Content-Length': String(head.length) }, body: Buffer.concat([head, ...binary]) });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

describe('REST binary tensor data', () => {
  let bc: RunningServer;
  let multi: RunningServer;
  let strings: RunningServer;
  let reference: LoadedModel;
  beforeAll(async () => {
    [bc, multi, strings] = await Promise.all([serve('breast_cancer'), serve('multi_input'), serve('string_echo')]);
    reference = await loadModel({ path: fixture('breast_cancer', 'model.onnx') });
  });
  afterAll(async () => {
    await Promise.all([bc?.stop(), multi?.stop(), strings?.stop()]);
    await reference?.release();
  });

  it('is advertised in GET /v2', async () => {
    expect(((await (await fetch(`${bc.url}/v2`)).json()) as { extensions: string[] }).extensions).toContain('binary_tensor_data');
  });

  it('answers a hand-built binary request with the exact bytes ONNX Runtime produced', async () => {
    const [, ...rows] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split('\n');
    const x = rows.slice(0, 3).flatMap((r) => r.split(',').slice(0, -1).map(Number));
    const res = await postBinary(
      `${bc.url}/v2/models/breast_cancer/infer`,
      {
        id: 'q1',
        inputs: [{ name: 'features', datatype: 'FP32', shape: [3, 30], parameters: { binary_data_size: 360 } }],
        outputs: [{ name: 'probabilities', parameters: { binary_data: true } }],
      },
      [f32bytes(x)],
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    const headerLength = Number(res.headers.get('inference-header-content-length'));
    expect(res.body.subarray(0, headerLength).toString()).toBe(
      '{"model_name":"breast_cancer","model_version":"1","id":"q1","outputs":[{"name":"probabilities","datatype":"FP32","shape":[3,2],"parameters":{"binary_data_size":24}}]}',
    );
    const expected = await reference.run({ features: { data: Float32Array.from(x), dims: [3, 30] } });
    expect(res.body.subarray(headerLength)).toEqual(Buffer.from((expected.probabilities.data as Float32Array).buffer));
  });

  it('takes binary and JSON inputs in one request, and answers JSON for outputs not asked as binary', async () => {
    const expected = JSON.parse(readFileSync(fixture('multi_input', 'expected_outputs.json'), 'utf8'));
    const dense = expected.inputs.dense.flat();
    const res = await postBinary(
      `${multi.url}/v2/models/multi_input/infer`,
      {
        inputs: [
          { name: 'dense', datatype: 'FP32', shape: [5, 4], parameters: { binary_data_size: dense.length * 4 } },
          { name: 'ids', datatype: 'INT64', shape: [5, 3], data: expected.inputs.ids },
        ],
        outputs: [{ name: 'scores', parameters: { binary_data: true } }, { name: 'label' }],
      },
      [f32bytes(dense)],
    );
    expect(res.status).toBe(200);
    const headerLength = Number(res.headers.get('inference-header-content-length'));
    const head = JSON.parse(res.body.subarray(0, headerLength).toString());
    expect(head.outputs[0]).toEqual({ name: 'scores', datatype: 'FP32', shape: [5, 3], parameters: { binary_data_size: 60 } });
    expect(head.outputs[1]).toMatchObject({ name: 'label', datatype: 'INT64', shape: [5], data: expected.outputs.label });
    const scores = new Float32Array(res.body.buffer.slice(res.body.byteOffset + headerLength));
    Array.from(scores).forEach((v, i) => expect(v).toBeCloseTo(expected.outputs.scores.flat()[i], 5));
  });

  it('carries BYTES as length-prefixed elements both ways', async () => {
    const text = Buffer.concat(
      ['héllo', '', 'x y'].map((s) => {
        const b = Buffer.from(s);
        const n = Buffer.alloc(4);
        n.writeUInt32LE(b.length);
        return Buffer.concat([n, b]);
      }),
    );
    const res = await postBinary(
      `${strings.url}/v2/models/string_echo/infer`,
      {
        inputs: [
          { name: 'text', datatype: 'BYTES', shape: [3], parameters: { binary_data_size: text.length } },
          { name: 'x', datatype: 'FP32', shape: [3, 2], data: [1, 2, 3, 4, 5, 6] },
        ],
        parameters: { binary_data_output: true },
      },
      [text],
    );
    expect(res.status).toBe(200);
    const headerLength = Number(res.headers.get('inference-header-content-length'));
    const head = JSON.parse(res.body.subarray(0, headerLength).toString());
    expect(head.outputs.map((o: { parameters: unknown }) => o.parameters)).toEqual([{ binary_data_size: text.length }, { binary_data_size: 24 }]);
    expect(res.body.subarray(headerLength, headerLength + text.length)).toEqual(text);
    expect(Array.from(new Float32Array(res.body.buffer.slice(res.body.byteOffset + headerLength + text.length)))).toEqual([2, 4, 6, 8, 10, 12]);
  });

  it('refuses a bad Inference-Header-Content-Length with 400', async () => {
    const res = await fetch(`${bc.url}/v2/models/breast_cancer/infer`, {
      method: 'POST',
      headers: { 'Inference-Header-Content-Length': '999' },
      body: '{"inputs":[]}',
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe("Inference-Header-Content-Length: 999 must be a whole number from 1 to the body's 13 bytes");
    // A large body is placed in memory by this header before it is checked: a fraction must still be a 400.
    const large = await fetch(`${bc.url}/v2/models/breast_cancer/infer`, {
      method: 'POST',
      headers: { 'Inference-Header-Content-Length': '1.5' },
      body: Buffer.alloc(70_000),
    });
    expect(large.status).toBe(400);
    expect(((await large.json()) as { error: string }).error).toBe(
      "Inference-Header-Content-Length: 1.5 must be a whole number from 1 to the body's 70000 bytes",
    );
  });
});

describe('Open Inference Protocol over gRPC (official proto, @grpc/grpc-js client)', () => {
  let server: RunningServer;
  let client: ReturnType<typeof officialClient>;
  beforeAll(async () => {
    server = await serve('multi_input', { maxBodyBytes: 64 * 1024 });
    client = officialClient(server.grpcAddress!);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  it('answers the health, metadata and readiness RPCs, and grpc.health.v1', async () => {
    expect(await client.rpc('ServerLive', {})).toEqual({ live: true });
    expect(await client.rpc('ServerReady', {})).toEqual({ ready: true });
    expect(await client.rpc('ModelReady', { name: 'multi_input' })).toEqual({ ready: true });
    expect(await client.rpc('ServerMetadata', {})).toMatchObject({ name: 'mlops', extensions: ['binary_tensor_data'] });
    const meta = await client.rpc('ModelMetadata', { name: 'multi_input', version: '1' });
    expect(meta.inputs).toEqual([
      { name: 'dense', datatype: 'FP32', shape: ['-1', '4'] },
      { name: 'ids', datatype: 'INT64', shape: ['-1', '3'] },
    ]);
    const health = loadSync(`${ROOT}/node_modules/grpc-health-check/proto/health/v1/health.proto`, { keepCase: true, enums: String });
    const Health = (grpc.loadPackageDefinition(health) as any).grpc.health.v1.Health;
    const checker = new Health(server.grpcAddress, grpc.credentials.createInsecure());
    for (const service of ['', 'inference.GRPCInferenceService']) {
      const status = await new Promise((resolve, reject) =>
        checker.Check({ service }, (e: Error | null, r: { status: string }) => (e ? reject(e) : resolve(r.status))),
      );
      expect(status).toBe('SERVING');
    }
    checker.close();
  });

  it('infers from raw and from typed contents, answering raw contents equal to REST', async () => {
    const expected = JSON.parse(readFileSync(fixture('multi_input', 'expected_outputs.json'), 'utf8'));
    const dense: number[] = expected.inputs.dense.flat();
    const ids: number[] = expected.inputs.ids.flat();
    const raw = await client.rpc('ModelInfer', {
      model_name: 'multi_input',
      id: 'g1',
      inputs: [
        { name: 'dense', datatype: 'FP32', shape: [5, 4] },
        { name: 'ids', datatype: 'INT64', shape: [5, 3] },
      ],
      raw_input_contents: [f32bytes(dense), Buffer.from(BigInt64Array.from(ids.map(BigInt)).buffer)],
    });
    const typed = await client.rpc('ModelInfer', {
      model_name: 'multi_input',
      inputs: [
        { name: 'dense', datatype: 'FP32', shape: [5, 4], contents: { fp32_contents: dense } },
        { name: 'ids', datatype: 'INT64', shape: [5, 3], contents: { int64_contents: ids } },
      ],
      outputs: [{ name: 'label' }],
    });
    expect(raw.id).toBe('g1');
    expect(raw.outputs.map((o: { name: string; shape: string[] }) => [o.name, o.shape])).toEqual([
      ['scores', ['5', '3']],
      ['label', ['5']],
    ]);
    const rest = (await (
      await fetch(`${server.url}/v2/models/multi_input/infer`, {
        method: 'POST',
        body: JSON.stringify({
          inputs: [
            { name: 'dense', datatype: 'FP32', shape: [5, 4], data: dense },
            { name: 'ids', datatype: 'INT64', shape: [5, 3], data: ids },
          ],
        }),
      })
    ).json()) as { outputs: { data: number[] }[] };
    expect(Array.from(new Float32Array(new Uint8Array(raw.raw_output_contents[0]).buffer))).toEqual(rest.outputs[0].data);
    expect(Array.from(new BigInt64Array(new Uint8Array(raw.raw_output_contents[1]).buffer), Number)).toEqual(expected.outputs.label);
    expect(typed.outputs.map((o: { name: string }) => o.name)).toEqual(['label']);
    expect(Buffer.from(typed.raw_output_contents[0])).toEqual(Buffer.from(raw.raw_output_contents[1]));
  });

  it('answers errors with gRPC status codes', async () => {
    const code = (request: unknown) =>
      client.rpc('ModelInfer', request).then(
        () => grpc.status.OK,
        (e: grpc.ServiceError) => [grpc.status[e.code], e.details],
      );
    expect(await code({ model_name: 'nope', inputs: [] })).toEqual(['NOT_FOUND', "unknown model 'nope'; this server serves 'multi_input'"]);
    expect(
      await code({ model_name: 'multi_input', inputs: [{ name: 'dense', datatype: 'FP32', shape: [1, 5], contents: { fp32_contents: [1, 2, 3, 4, 5] } }] }),
    ).toEqual(['INVALID_ARGUMENT', "input 'dense': expected shape [-1, 4] (-1 is any size), got [1, 5]"]);
    expect(await code({ model_name: 'multi_input', inputs: [{ name: 'dense', datatype: 'FP64', shape: [1, 4] }] })).toEqual([
      'INVALID_ARGUMENT',
      'input \'dense\': expected datatype FP32, got "FP64"',
    ]);
    const [status] = (await code({
      model_name: 'multi_input',
      inputs: [{ name: 'dense', datatype: 'FP32', shape: [1, 4] }],
      raw_input_contents: [Buffer.alloc(100_000)],
    })) as string[];
    expect(status).toBe('RESOURCE_EXHAUSTED');
    await expect(client.rpc('ModelMetadata', { name: 'multi_input', version: '7' })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/mlops_http_requests_total\{protocol="grpc",route="ModelInfer",method="POST",code="INVALID_ARGUMENT",model="multi_input"\} 2/);
    expect(metrics).toMatch(/mlops_http_requests_total\{protocol="grpc",route="ModelInfer",method="POST",code="NOT_FOUND",model=""\} 1/);
  });
});

describe('a 3x224x224 image model over JSON, binary and gRPC', () => {
  let server: RunningServer;
  let reference: LoadedModel;
  let client: ReturnType<typeof officialClient>;
  beforeAll(async () => {
    server = await serve('image_cnn');
    reference = await loadModel({ path: fixture('image_cnn', 'model.onnx') });
    client = officialClient(server.grpcAddress!);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
    await reference?.release();
  });

  it('gives exactly what in-process ONNX Runtime gives, whichever way the tensor travels', async () => {
    const random = seededRandom(11);
    const image = Float32Array.from({ length: 3 * 224 * 224 }, () => random());
    const expected = Array.from((await reference.run({ image: { data: image, dims: [1, 3, 224, 224] } })).logits.data as Float32Array);
    const json = (await (
      await fetch(`${server.url}/v2/models/image_cnn/infer`, {
        method: 'POST',
        body: JSON.stringify({ inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 3, 224, 224], data: Array.from(image) }] }),
      })
    ).json()) as { outputs: { data: number[] }[] };
    expect(json.outputs[0].data).toEqual(expected);
    const binary = await postBinary(
      `${server.url}/v2/models/image_cnn/infer`,
      {
        inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 3, 224, 224], parameters: { binary_data_size: image.byteLength } }],
        parameters: { binary_data_output: true },
      },
      [Buffer.from(image.buffer)],
    );
    const headerLength = Number(binary.headers.get('inference-header-content-length'));
    expect(Array.from(new Float32Array(binary.body.buffer.slice(binary.body.byteOffset + headerLength)))).toEqual(expected);
    const viaGrpc = await client.rpc('ModelInfer', {
      model_name: 'image_cnn',
      inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 3, 224, 224] }],
      raw_input_contents: [Buffer.from(image.buffer)],
    });
    expect(Array.from(new Float32Array(new Uint8Array(viaGrpc.raw_output_contents[0]).buffer))).toEqual(expected);
    // The torch model agrees too, to float32 rounding (its inputs come from numpy's generator, not this one).
    expect(expected).toHaveLength(10);
  });
});

/** Waits until no abandoned run is still inside ONNX Runtime (mlops_inference_abandoned_runs 0). */
async function untilNoAbandonedRuns(url: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (/mlops_inference_abandoned_runs 0/.test(await (await fetch(`${url}/metrics`)).text())) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('abandoned runs did not end within 10 s');
}

/** Times GET /v2/health/live every 10 ms while `load` runs. */
async function healthDuring(url: string, load: Promise<unknown>): Promise<number[]> {
  const times: number[] = [];
  let done = false;
  void load.finally(() => (done = true));
  while (!done) {
    const started = performance.now();
    const res = await fetch(`${url}/v2/health/live`);
    await res.arrayBuffer();
    times.push(performance.now() - started);
    await new Promise((r) => setTimeout(r, 10));
  }
  return times.sort((a, b) => a - b);
}

describe('inference off the event loop', () => {
  const slow = slowLoopBody;
  const flood = (url: string, clients: number, requests: number, iterations: number) =>
    Promise.all(
      Array.from({ length: clients }, async () => {
        const codes: number[] = [];
        for (let i = 0; i < requests; i++) codes.push((await fetch(`${url}/v2/models/slow_loop/infer`, { method: 'POST', body: slow(iterations) })).status);
        return codes;
      }),
    );

  it('never runs a model with a Loop on the main thread, however fast its start-up probe', async () => {
    const lines: string[] = [];
    const server = await serve('slow_loop', { intraOpThreads: 1 }, (l) => lines.push(l));
    try {
      // Its probe (a few loop rounds) would be fast, but a loop count taken from an input can cost any time,
      // and only a worker can be abandoned at a deadline.
      expect(server.placement).toEqual({ where: 'workers', reason: "the model has Loop, whose cost can depend on its inputs' values" });
      expect(lines.join('\n')).toMatch(/inference: 2 worker thread\(s\); the model has Loop/);
      expect(await (await fetch(`${server.url}/metrics`)).text()).toContain('mlops_inference_placement{where="workers"} 1');
      expect((await fetch(`${server.url}/v2/models/slow_loop/infer`, { method: 'POST', body: slow(12000) })).status).toBe(200);
    } finally {
      await server.stop();
    }
  });

  it("a run past the deadline: 504 and DEADLINE_EXCEEDED (the server's or the client's), its worker replaced, other requests answered, health answering throughout", async () => {
    const lines: string[] = [];
    const server = await serve('slow_loop', { workers: 2, intraOpThreads: 1, inferenceTimeoutMs: 400 }, (l) => lines.push(l));
    const client = officialClient(server.grpcAddress!);
    // About 5 µs a loop round here: 300,000 rounds run about 1.5 s, far past the deadline.
    const HEAVY = 300_000;
    let probing = true;
    const probes: number[] = [];
    const probe = (async () => {
      while (probing) {
        const started = performance.now();
        expect((await fetch(`${server.url}/v2/health/live`)).status).toBe(200);
        probes.push(performance.now() - started);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    try {
      const started = performance.now();
      const heavyRest = fetch(`${server.url}/v2/models/slow_loop/infer`, { method: 'POST', body: slow(HEAVY) }).then(async (r) => [
        r.status,
        ((await r.json()) as { error: string }).error,
      ]);
      const heavyGrpc = client
        .rpc('ModelInfer', {
          model_name: 'slow_loop',
          inputs: [
            { name: 'iterations', datatype: 'INT64', shape: [], contents: { int64_contents: [HEAVY] } },
            { name: 'x', datatype: 'FP32', shape: [1, 256], contents: { fp32_contents: Array(256).fill(0.01) } },
          ],
        })
        .then(
          () => 'OK',
          (e: { code: number; details: string }) => `${e.code} ${e.details}`,
        );
      expect(await heavyRest).toEqual([504, 'inference overstayed the deadline; the run was abandoned']);
      expect(await heavyGrpc).toBe('4 inference overstayed the deadline; the run was abandoned');
      // Answered at the deadline, not when the run would have ended; the abandoned threads end when their
      // runs return (a thread cannot be ended inside one).
      expect(performance.now() - started).toBeLessThan(1200);
      expect(await (await fetch(`${server.url}/metrics`)).text()).toMatch(/mlops_inference_abandoned_runs [12]/);
      // Light requests are answered by the replacement workers meanwhile.
      const light = await Promise.all(
        Array.from({ length: 6 }, () => fetch(`${server.url}/v2/models/slow_loop/infer`, { method: 'POST', body: slow(10) }).then((r) => r.status)),
      );
      expect(light).toEqual(Array(6).fill(200));

      // A client's own deadline, shorter than the server's, abandons the run too.
      const shortServer = await serve('slow_loop', { workers: 1, intraOpThreads: 1, inferenceTimeoutMs: 60_000 });
      const shortClient = officialClient(shortServer.grpcAddress!);
      try {
        const answer = await shortClient
          .rpc(
            'ModelInfer',
            {
              model_name: 'slow_loop',
              inputs: [
                { name: 'iterations', datatype: 'INT64', shape: [], contents: { int64_contents: [HEAVY] } },
                { name: 'x', datatype: 'FP32', shape: [1, 256], contents: { fp32_contents: Array(256).fill(0.01) } },
              ],
            },
            300,
          )
          .then(
            () => 'OK',
            (e: { code: number }) => e.code,
          );
        expect(answer).toBe(4);
        await new Promise((r) => setTimeout(r, 100));
        const text = await (await fetch(`${shortServer.url}/metrics`)).text();
        expect(text).toMatch(/mlops_inference_workers_replaced_total\{reason="deadline",model="[^"]+",version="1"\} 1/);
        expect((await fetch(`${shortServer.url}/v2/models/slow_loop/infer`, { method: 'POST', body: slow(10) })).status).toBe(200);
        await untilNoAbandonedRuns(shortServer.url);
      } finally {
        shortClient.close();
        await shortServer.stop();
      }

      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toMatch(/mlops_inference_deadline_exceeded_total\{stage="running",model="[^"]+",version="1"\} 2/);
      expect(metrics).toMatch(/mlops_inference_workers_replaced_total\{reason="deadline",model="[^"]+",version="1"\} 2/);
      expect(metrics).toMatch(/mlops_http_requests_total\{protocol="rest",route="\/v2\/models\/\{name\}\/infer",method="POST",code="504",model="[^"]+"\} 1/);
      expect(lines.filter((l) => /overstayed its deadline/.test(l))).toHaveLength(2);
      await untilNoAbandonedRuns(server.url);
    } finally {
      probing = false;
      await probe;
      client.close();
      await server.stop();
    }
    probes.sort((a, b) => a - b);
    expect(probes.length).toBeGreaterThan(50);
    // A main thread held by the run would show as a probe of about the run's 1.5 s. 50 ms was asserted
    // here once, and a machine busy with other work took 81 ms: timing it keeps is what is asserted.
    expect(probes.at(-1)).toBeLessThan(400);
  }, 60_000);

  it('keeps health answering in milliseconds while every worker runs long inferences, where the main thread stalls', async () => {
    // Each inference takes ~30-60 ms here; on the main thread a health check waits for it.
    const onMain = await serve('slow_loop', { workers: 0, intraOpThreads: 1 });
    const inWorkers = await serve('slow_loop', { workers: 2, inlineMaxMs: 0, intraOpThreads: 1 });
    try {
      const mainTimes = await healthDuring(onMain.url, flood(onMain.url, 4, 10, 8000));
      const load = flood(inWorkers.url, 4, 10, 8000);
      const workerTimes = await healthDuring(inWorkers.url, load);
      expect((await load).flat().every((c) => c === 200)).toBe(true);
      const at = (t: number[], q: number) => t[Math.floor(t.length * q)];
      expect(inWorkers.placement.where).toBe('workers');
      // Behaviour, not a speed figure (those are in npm run bench): on the main thread a health check
      // waits for the inference in progress; with workers it does not. The margins are wide on purpose.
      expect(at(mainTimes, 0.5)).toBeGreaterThan(15);
      expect(at(workerTimes, 0.5)).toBeLessThan(10);
      expect(at(workerTimes, 0.9)).toBeLessThan(at(mainTimes, 0.5));
    } finally {
      await Promise.all([onMain.stop(), inWorkers.stop()]);
    }
  });

  it('`mlops serve` stopped while an abandoned run is still inside ONNX Runtime ends by the signal at once, not by an abort when the run returns', async () => {
    const child = spawn(
      process.execPath,
      [path.join(ROOT, 'bin/mlops.js'), 'serve', '--model', fixture('slow_loop', 'model.onnx'), '--port', '0', '--grpc-port', '0', '--json'],
      {
        env: { ...process.env, CI: 'true', MLOPS_INFERENCE_TIMEOUT_MS: '300' },
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    );
    while (!stdout.includes('"url"')) await new Promise((r) => setTimeout(r, 20));
    const { url } = JSON.parse(stdout) as { url: string };
    // About 10 s of loop rounds: still running long after its 504.
    expect((await fetch(`${url}/v2/models/slow_loop/infer`, { method: 'POST', body: slow(2_000_000) })).status).toBe(504);
    const stopping = performance.now();
    child.kill('SIGTERM');
    expect(await ended).toEqual({ code: null, signal: 'SIGTERM' });
    expect(performance.now() - stopping).toBeLessThan(3000);
    expect(stderr).toMatch(/1 abandoned inference run\(s\) still inside ONNX Runtime: ending by SIGTERM now/);
    expect(stderr).not.toMatch(/terminate called|Napi::Error/);
  }, 30_000);

  it('drains both protocols on shutdown: every request in flight is answered', async () => {
    const server = await serve('slow_loop', { workers: 2, inlineMaxMs: 0 });
    const client = officialClient(server.grpcAddress!);
    try {
      const rest = Array.from({ length: 4 }, () =>
        fetch(`${server.url}/v2/models/slow_loop/infer`, { method: 'POST', body: slow(4000) }).then((r) => r.status),
      );
      const viaGrpc = Array.from({ length: 4 }, () =>
        client
          .rpc('ModelInfer', {
            model_name: 'slow_loop',
            inputs: [
              { name: 'iterations', datatype: 'INT64', shape: [], contents: { int64_contents: [4000] } },
              { name: 'x', datatype: 'FP32', shape: [1, 256], contents: { fp32_contents: Array(256).fill(0.01) } },
            ],
          })
          .then(
            () => 'OK',
            (e: grpc.ServiceError) => grpc.status[e.code],
          ),
      );
      await new Promise((r) => setTimeout(r, 50));
      const outcome = await server.stop();
      expect(outcome).toEqual({ forced: false, abandonedRuns: 0 });
      expect(await Promise.all(rest)).toEqual([200, 200, 200, 200]);
      expect(await Promise.all(viaGrpc)).toEqual(['OK', 'OK', 'OK', 'OK']);
    } finally {
      client.close();
    }
  });
});

describe('the general case', () => {
  it('serves a model whose dimensions have no names, with a recurrent state and a scalar (the silero_vad signature)', async () => {
    const server = await serve('recurrent_state');
    try {
      expect(server.batching).toBe(false);
      const res = await fetch(`${server.url}/v2/models/recurrent_state/infer`, {
        method: 'POST',
        body: JSON.stringify({
          inputs: [
            { name: 'input', datatype: 'FP32', shape: [1, 512], data: Array(512).fill(0.5) },
            { name: 'state', datatype: 'FP32', shape: [2, 1, 128], data: Array(256).fill(0) },
            { name: 'sr', datatype: 'INT64', shape: [], data: [16000] },
          ],
        }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { outputs: { name: string; shape: number[]; data: number[] }[] };
      expect(body.outputs.map((o) => [o.name, o.shape])).toEqual([
        ['output', [1, 1]],
        ['stateN', [2, 1, 128]],
      ]);
      expect(body.outputs[0].data).toEqual([8000]);
    } finally {
      await server.stop();
    }
  });

  it('lets a client that writes its whole body before reading (as Python does) read the 413', async () => {
    const server = await serve('breast_cancer', { maxBodyBytes: 64 * 1024 });
    try {
      const body = Buffer.alloc(4 * 1024 * 1024, 0x20);
      const socket = net.connect(server.port, '127.0.0.1');
      let reply = '';
      socket.on('data', (d) => (reply += String(d)));
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      const written = await new Promise<Error | null>((resolve) => {
        socket.on('error', resolve);
        socket.write(`POST /v2/models/breast_cancer/infer HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`);
        socket.write(body, (error) => resolve(error ?? null));
      });
      expect(written).toBeNull();
      await closed;
      expect(reply).toMatch(/^HTTP\/1\.1 413 /);
      expect(reply).toContain('the limit is 65536 bytes (server.maxBodyBytes): send large tensors as binary data');
      expect((await fetch(`${server.url}/v2/health/ready`)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });
});

describe('mlops test and bench against a server they know nothing about', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await serve('breast_cancer');
  });
  afterAll(() => server?.stop());

  it('find the model on a single-model server without a config naming it, over REST and gRPC alike', async () => {
    await withTempDir(async (dir) => {
      // Only the class names of the holdout's labels: no model path, no model name.
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ test: { labels: ['malignant', 'benign'] } }));
      const holdout = fixture('breast_cancer', 'holdout.csv');
      const viaRest = await runCli(['test', '--url', server.url, '--holdout', holdout, '--json'], { cwd: dir });
      expect(viaRest.code, viaRest.stderr).toBe(0);
      const viaGrpc = await runCli(['test', '--url', `grpc://${server.grpcAddress}`, '--holdout', holdout, '--json'], { cwd: dir });
      expect(viaGrpc.code, viaGrpc.stderr).toBe(0);
      const [rest, grpcReport] = [JSON.parse(viaRest.stdout), JSON.parse(viaGrpc.stdout)];
      expect(rest).toMatchObject({ model: 'breast_cancer', protocol: 'rest-binary', rows: 114 });
      expect(grpcReport).toMatchObject({ model: 'breast_cancer', protocol: 'grpc', rows: 114 });
      expect(grpcReport.metrics).toEqual(rest.metrics);
      const bench = await runCli(['bench', '--url', `grpc://${server.grpcAddress}`, '--concurrency', '2', '--requests', '300', '--warmup', '0ms', '--json'], {
        cwd: dir,
      });
      expect(bench.code, bench.stderr).toBe(0);
      const report = JSON.parse(bench.stdout);
      expect(report).toMatchObject({ model: 'breast_cancer', target: { protocol: 'grpc', url: `grpc://${server.grpcAddress}` } });
      expect(report.runs[0]).toMatchObject({ requests: 300, errors: { count: 0 } });
    });
  });

  it('name an unreachable gRPC server in one line, and a gRPC port in use with its flag', async () => {
    const unreachable = await runCli(['bench', '--url', 'grpc://127.0.0.1:1', '--requests', '5']);
    expect(unreachable.code).toBe(3);
    expect(lines(unreachable.stderr).filter((l) => l.startsWith('error:'))).toEqual([
      'error: cannot reach the gRPC server at 127.0.0.1:1: 14 UNAVAILABLE: connect ECONNREFUSED 127.0.0.1:1',
    ]);
    const port = Number(server.grpcAddress!.split(':')[1]);
    const error = await startServer(serveOptions('breast_cancer', { grpcPort: port }), quiet).catch((e) => e);
    expect(error.exitCode).toBe(3);
    expect(error.message).toBe(`cannot listen on 127.0.0.1:${port}: the port is in use`);
    expect(error.hint).toBe('pick another port with --grpc-port (0 turns gRPC off)');
  });

  it('say which protocols exist when given another', async () => {
    const { code, stderr } = await runCli(['bench', '--url', server.url, '--protocol', 'soap']);
    expect(code).toBe(2);
    expect(lines(stderr).find((l) => l.startsWith('error:'))).toBe('error: --protocol soap: expected rest-json, rest-binary, grpc');
  });
});
