import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMlopsError } from '../../src/errors.js';
import { loadModel, type LoadedModel } from '../../src/model/session.js';
import { startServer, type RunningServer } from '../../src/server/run.js';
import { ROOT, fixture, serveOptions } from '../helpers.js';

const options = serveOptions;

const quiet = () => undefined;

async function post(url: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(url, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

/** The breast cancer holdout features, read from the committed CSV. */
function holdoutRows(name: string): number[][] {
  const [, ...rows] = readFileSync(fixture(name, 'holdout.csv'), 'utf8').trim().split('\n');
  return rows.map((r) => r.split(',').slice(0, -1).map(Number));
}

describe('inference server (real ONNX Runtime over HTTP)', () => {
  let bc: RunningServer;
  let reference: LoadedModel;
  const rows = holdoutRows('breast_cancer');
  const infer = (data: unknown, shape = [Array.isArray(data) ? (data as unknown[]).length : 1, 30]) => ({
    inputs: [{ name: 'features', datatype: 'FP32', shape, data }],
  });

  beforeAll(async () => {
    bc = await startServer(options('breast_cancer'), quiet);
    reference = await loadModel({ path: fixture('breast_cancer', 'model.onnx') });
  });
  afterAll(async () => {
    await bc?.stop();
    await reference?.release();
  });

  it('answers the server, health and model routes', async () => {
    const get = async (p: string): Promise<{ status: number; json: any }> => {
      const res = await fetch(bc.url + p);
      return { status: res.status, json: await res.json() };
    };
    expect(await get('/v2')).toMatchObject({ status: 200, json: { name: 'mlops' } });
    expect(await get('/v2/health/live')).toEqual({ status: 200, json: { live: true } });
    expect(await get('/v2/health/ready')).toEqual({ status: 200, json: { ready: true } });
    const meta = await get('/v2/models/breast_cancer');
    expect(meta.json).toEqual({
      name: 'breast_cancer',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, 30] }],
      outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [-1, 2] }],
    });
    expect((await get('/v2/models/breast_cancer/versions/1')).json).toEqual(meta.json);
    expect(await get('/v2/models/breast_cancer/ready')).toEqual({ status: 200, json: { name: 'breast_cancer', ready: true } });
    expect((await get('/v2/models/breast_cancer/versions/1/ready')).status).toBe(200);
    expect((await get('/v2/models/other')).status).toBe(404);
    expect((await get('/v2/models/breast_cancer/versions/7')).json.error).toContain("has no version '7'");
    expect((await get('/nope')).status).toBe(404);
  });

  it("matches the framework's outputs and in-process ONNX Runtime exactly", async () => {
    const expected = JSON.parse(readFileSync(fixture('breast_cancer', 'expected_outputs.json'), 'utf8')).probabilities as number[][];
    const { status, json } = await post(`${bc.url}/v2/models/breast_cancer/infer`, { id: 'req-7', ...infer(rows) });
    expect(status).toBe(200);
    expect(json.id).toBe('req-7');
    expect(json.model_name).toBe('breast_cancer');
    const [out] = json.outputs;
    expect(out).toMatchObject({ name: 'probabilities', datatype: 'FP32', shape: [rows.length, 2] });
    const local = await reference.run({ features: { data: Float32Array.from(rows.flat()), dims: [rows.length, 30] } });
    expect(out.data).toEqual(Array.from(local.probabilities.data as Float32Array));
    out.data.forEach((v: number, i: number) => expect(v).toBeCloseTo(expected[Math.floor(i / 2)][i % 2], 5));
  });

  it('accepts flat and nested data, also under the versioned route', async () => {
    const nested = await post(`${bc.url}/v2/models/breast_cancer/versions/1/infer`, infer(rows.slice(0, 3)));
    const flat = await post(`${bc.url}/v2/models/breast_cancer/infer`, infer(rows.slice(0, 3).flat(), [3, 30]));
    expect(flat.json.outputs).toEqual(nested.json.outputs);
  });

  it('batches concurrent requests and returns what each would get alone', async () => {
    const alone = await startServer(options('breast_cancer', { batching: { enabled: false, maxBatchSize: 1, maxWaitMs: 0 } }), quiet);
    try {
      const requests = rows.slice(0, 64).map((row) => infer([row]));
      const sequential = [];
      for (const r of requests) sequential.push((await post(`${alone.url}/v2/models/breast_cancer/infer`, r)).json.outputs);
      const before = await batchRuns(bc.url);
      const concurrent = await Promise.all(requests.map((r) => post(`${bc.url}/v2/models/breast_cancer/infer`, r)));
      expect(concurrent.map((c) => c.json.outputs)).toEqual(sequential);
      const after = await batchRuns(bc.url);
      // 64 requests ran in fewer than 64 model runs: they were batched.
      expect(after.rows - before.rows).toBe(64);
      expect(after.runs - before.runs).toBeLessThan(64);
    } finally {
      await alone.stop();
    }
  });

  it('answers the v1 :predict route for a single-input model', async () => {
    const { status, json } = await post(`${bc.url}/v1/models/breast_cancer:predict`, { instances: rows.slice(0, 2) });
    expect(status).toBe(200);
    const v2 = await post(`${bc.url}/v2/models/breast_cancer/infer`, infer(rows.slice(0, 2)));
    expect(json.predictions).toEqual([v2.json.outputs[0].data.slice(0, 2), v2.json.outputs[0].data.slice(2, 4)]);
  });

  it('exposes Prometheus metrics, with the model info', async () => {
    await post(`${bc.url}/v2/models/breast_cancer/infer`, infer([rows[0]]));
    const text = await (await fetch(`${bc.url}/metrics`)).text();
    for (const name of [
      'mlops_http_requests_total{protocol="rest",route="/v2/models/{name}/infer",method="POST",code="200",model="breast_cancer"}',
      'mlops_http_request_duration_seconds_bucket',
      'mlops_inference_duration_seconds_bucket',
      'mlops_batch_size_bucket',
      'mlops_http_requests_in_flight',
    ]) {
      expect(text).toContain(name);
    }
    expect(text).toContain(`mlops_model_info{name="breast_cancer",version="1",sha256="${reference.info.sha256}",role="serving",weight="1"} 1`);
    expect(text).toContain('mlops_model_ready{model="breast_cancer",version="1"} 1');
    expect(text).toMatch(/^mlops_batch_size_count\{model="breast_cancer",version="1"\} \d+$/m);
  });

  const big = 1e9;
  const badRequests: [string, unknown, number, RegExp][] = [
    ['malformed JSON', '{"inputs": [', 400, /malformed JSON/],
    ['an empty body', '', 400, /empty/],
    ['a JSON array body', '[1, 2]', 400, /must be a JSON object/],
    ['no inputs', { inputs: [] }, 400, /'features' \(FP32 \[-1, 30\]\)/],
    ['an unknown input', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 30], data: Array(30).fill(0) }] }, 400, /unknown input 'x'/],
    [
      'a wrong datatype',
      { inputs: [{ name: 'features', datatype: 'INT64', shape: [1, 30], data: Array(30).fill(0) }] },
      400,
      /expected datatype FP32, got "INT64"/,
    ],
    ['a wrong shape', { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 29], data: Array(29).fill(0) }] }, 400, /expected shape \[-1, 30\]/],
    ['too little data', { inputs: [{ name: 'features', datatype: 'FP32', shape: [2, 30], data: Array(30).fill(0) }] }, 400, /needs 60 elements, "data" has 30/],
    ['a ragged tensor', { inputs: [{ name: 'features', datatype: 'FP32', shape: [2, 30], data: [Array(30).fill(0), Array(29).fill(0)] }] }, 400, /ragged/],
    ['a NaN string', { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: ['NaN', ...Array(29).fill(0)] }] }, 400, /element 0 is "NaN"/],
    [
      'an infinite number',
      `{"inputs":[{"name":"features","datatype":"FP32","shape":[1,30],"data":[1e400${',0'.repeat(29)}]}]}`,
      400,
      /element 0 is null; FP32 expects finite numbers|element 0 is Infinity/,
    ],
    ['null elements', { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: Array(30).fill(null) }] }, 400, /element 0 is null/],
    ['an empty tensor', { inputs: [{ name: 'features', datatype: 'FP32', shape: [0, 30], data: [] }] }, 400, /has no elements/],
    ['a huge shape', { inputs: [{ name: 'features', datatype: 'FP32', shape: [big, 30], data: Array(30).fill(0) }] }, 400, /needs 30000000000 elements/],
    ['a huge nested shape', { inputs: [{ name: 'features', datatype: 'FP32', shape: [big, 30], data: [Array(30).fill(0)] }] }, 400, /does not match shape/],
    ['a negative dimension', { inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, 30], data: Array(30).fill(0) }] }, 400, /non-negative integers/],
    ['data that is not an array', { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: 'zeros' }] }, 400, /"data" must be an array/],
    ['an input given twice', { inputs: [infer([rows[0]]).inputs[0], infer([rows[0]]).inputs[0]] }, 400, /given twice/],
    ['an unknown output', { ...infer([rows[0]]), outputs: [{ name: 'nope' }] }, 400, /unknown output 'nope'/],
    ['a numeric id', { ...infer([rows[0]]), id: 5 }, 400, /"id" must be a string/],
  ];
  for (const [what, body, status, message] of badRequests) {
    it(`answers ${status} to ${what} and stays healthy`, async () => {
      const res = await post(`${bc.url}/v2/models/breast_cancer/infer`, body);
      expect(res.status).toBe(status);
      expect(res.json.error).toMatch(message);
      expect((await fetch(`${bc.url}/v2/health/ready`)).status).toBe(200);
      expect((await post(`${bc.url}/v2/models/breast_cancer/infer`, infer([rows[0]]))).status).toBe(200);
    });
  }

  it('ignores unknown fields and honours the outputs filter', async () => {
    const res = await post(`${bc.url}/v2/models/breast_cancer/infer`, {
      ...infer([rows[0]]),
      parameters: { anything: true },
      extra: 1,
      outputs: [{ name: 'probabilities' }],
    });
    expect(res.status).toBe(200);
    expect(res.json.outputs).toHaveLength(1);
  });

  it('answers 405 with Allow for a wrong method', async () => {
    const res = await fetch(`${bc.url}/v2/models/breast_cancer/infer`, { method: 'PUT', body: '{}' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    expect((await fetch(`${bc.url}/v2/health/live`, { method: 'POST' })).status).toBe(405);
  });

  it('answers 400 to garbage that is not HTTP and stays up', async () => {
    const reply = await new Promise<string>((resolve) => {
      const socket = net.connect(bc.port, '127.0.0.1', () => socket.write('GARBAGE\r\n\r\n'));
      let data = '';
      socket.on('data', (d) => (data += String(d)));
      socket.on('close', () => resolve(data));
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    expect((await fetch(`${bc.url}/v2/health/live`)).status).toBe(200);
  });
});

async function batchRuns(url: string): Promise<{ runs: number; rows: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  return { runs: value('mlops_batch_size_count'), rows: value('mlops_batch_size_sum') };
}

describe('inference server with other model shapes', () => {
  it('serves two inputs with INT64 and returns INT64 outputs', async () => {
    const server = await startServer(options('multi_input'), quiet);
    try {
      const expected = JSON.parse(readFileSync(fixture('multi_input', 'expected_outputs.json'), 'utf8'));
      const { dense, ids } = expected.inputs;
      const { status, json } = await post(`${server.url}/v2/models/multi_input/infer`, {
        inputs: [
          { name: 'ids', datatype: 'INT64', shape: [ids.length, 3], data: ids },
          { name: 'dense', datatype: 'FP32', shape: [dense.length, 4], data: dense.flat() },
        ],
      });
      expect(status).toBe(200);
      const byName = Object.fromEntries(json.outputs.map((o: any) => [o.name, o]));
      expect(byName.label).toEqual({ name: 'label', datatype: 'INT64', shape: [ids.length], data: expected.outputs.label });
      byName.scores.data.forEach((v: number, i: number) => expect(v).toBeCloseTo(expected.outputs.scores.flat()[i], 5));
      const pred = await post(`${server.url}/v1/models/multi_input:predict`, { instances: [[0, 0, 0, 0]] });
      expect(pred.status).toBe(400);
      expect(pred.json.error).toContain('must be an object keyed by input name (dense, ids)');
      // TF Serving's row format: one object per instance, keyed by input name.
      const keyed = await post(`${server.url}/v1/models/multi_input:predict`, {
        instances: ids.map((row: number[], i: number) => ({ ids: row, dense: dense[i] })),
      });
      expect(keyed.status).toBe(200);
      expect(keyed.json.predictions.map((p: any) => p.label)).toEqual(expected.outputs.label);
      expect(keyed.json.predictions[0].scores[0]).toBeCloseTo(expected.outputs.scores[0][0], 5);
      const mismatch = await post(`${server.url}/v2/models/multi_input/infer`, {
        inputs: [
          { name: 'ids', datatype: 'INT64', shape: [1, 3], data: [1, 2, 99999999999] },
          { name: 'dense', datatype: 'FP32', shape: [1, 4], data: [0, 0, 0, 0] },
        ],
      });
      expect(mismatch.status).toBeGreaterThanOrEqual(400);
      expect((await fetch(`${server.url}/v2/health/ready`)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });

  it('runs a fixed-batch model request by request', async () => {
    const server = await startServer(options('fixed_batch'), quiet);
    try {
      expect(server.batching).toBe(false);
      const expected = JSON.parse(readFileSync(fixture('fixed_batch', 'expected_outputs.json'), 'utf8'));
      const x = expected.inputs.x;
      const one = await post(`${server.url}/v2/models/fixed_batch/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }] });
      expect(one.status).toBe(200);
      one.json.outputs[0].data.forEach((v: number, i: number) => expect(v).toBeCloseTo(expected.outputs.y[0][i], 6));
      const two = await post(`${server.url}/v2/models/fixed_batch/infer`, {
        inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 4], data: [...x[0], ...x[0]] }],
      });
      expect(two.status).toBe(400);
      expect(two.json.error).toContain('expected shape [1, 4]');
      const results = await Promise.all(
        Array.from({ length: 8 }, () =>
          post(`${server.url}/v2/models/fixed_batch/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: x }] }),
        ),
      );
      expect(results.every((r) => r.status === 200)).toBe(true);
      const predicted = await post(`${server.url}/v1/models/fixed_batch:predict`, { instances: [x[0], x[0], x[0]] });
      expect(predicted.status).toBe(200);
      expect(predicted.json.predictions).toHaveLength(3);
      expect(predicted.json.predictions[2]).toEqual(one.json.outputs[0].data);
    } finally {
      await server.stop();
    }
  });

  it('answers 413 to a body over the limit and stays up', async () => {
    const server = await startServer(options('breast_cancer', { maxBodyBytes: 2048 }), quiet);
    try {
      const data = Array.from({ length: 20 }, () => Array(30).fill(123.456));
      const res = await post(`${server.url}/v2/models/breast_cancer/infer`, { inputs: [{ name: 'features', datatype: 'FP32', shape: [20, 30], data }] });
      expect(res.status).toBe(413);
      expect(res.json.error).toContain('2048');
      expect((await fetch(`${server.url}/v2/health/ready`)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });

  it('refuses to start when the model sha256 differs from the expected one', async () => {
    const error = await startServer(options('wine', { expectedSha256: '0'.repeat(64) }), quiet).catch((e) => e);
    expect(isMlopsError(error) && error.exitCode).toBe(2);
    expect(error.message).toMatch(/sha256 is [0-9a-f]{64} but 0{64} was expected/);
  });
});

describe('graceful shutdown', () => {
  it('turns readiness off, refuses new connections and finishes requests in flight', async () => {
    const server = await startServer(options('breast_cancer'), quiet);
    const rows = holdoutRows('breast_cancer');
    const body = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: rows[0] }] });
    // A request whose body is still arriving when shutdown starts.
    const socket = net.connect(server.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    let reply = '';
    socket.on('data', (d) => (reply += String(d)));
    const closed = new Promise((resolve) => socket.on('close', resolve));
    socket.write(`POST /v2/models/breast_cancer/infer HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`);
    await new Promise((r) => setTimeout(r, 100));
    const stopping = server.stop();
    expect(server.ready).toBe(false);
    await expect(fetch(`${server.url}/v2/health/live`)).rejects.toThrow();
    socket.write(body.slice(10));
    expect(await stopping).toEqual({ forced: false, abandonedRuns: 0 });
    await closed;
    expect(reply).toMatch(/^HTTP\/1\.1 200/);
    expect(reply).toContain('"probabilities"');
  });

  it('`mlops serve` prints its URL, serves, and exits 0 on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      [path.join(ROOT, 'bin/mlops.js'), 'serve', '--model', fixture('wine', 'model.onnx'), '--port', '0', '--grpc-port', '0', '--json'],
      {
        cwd: ROOT,
        env: { ...process.env, CI: 'true' },
      },
    );
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const started = Date.now();
    while (!stdout.includes('}') && Date.now() - started < 20_000) await new Promise((r) => setTimeout(r, 50));
    const { url, model } = JSON.parse(stdout);
    expect(model).toBe('wine');
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await fetch(`${url}/v2/health/ready`)).status).toBe(200);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
