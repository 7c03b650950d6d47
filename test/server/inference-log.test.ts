import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordsInLine, type InferenceRecord } from '../../src/monitor/inference-records.js';
import { call, inferenceClient } from '../../src/protocol/grpc-client.js';
import { encodeRestRequest } from '../../src/protocol/rest.js';
import { InferenceLog, INFERENCE_LOG_LIMITS } from '../../src/server/inference-log.js';
import { applyServerEnv } from '../../src/server/options.js';
import { startServer, type RunningServer } from '../../src/server/run.js';
import { freePort, holdoutRows, serveOptions } from '../helpers.js';

const quiet = () => undefined;
const { rows } = holdoutRows();

async function readRecords(file: string): Promise<InferenceRecord[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').flatMap(recordsInLine);
}

async function until(check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function metric(server: RunningServer, name: string, labels = ''): Promise<number> {
  const text = await server.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.split(' ').at(-1)) : NaN;
}

const infer = async (url: string, batch: number[][], extra: { id?: string; headers?: Record<string, string> } = {}) => {
  const body = { ...(extra.id ? { id: extra.id } : {}), inputs: [{ name: 'features', datatype: 'FP32', shape: [batch.length, 30], data: batch.flat() }] };
  const response = await fetch(`${url}/v2/models/breast_cancer/infer`, { method: 'POST', body: JSON.stringify(body), headers: extra.headers });
  expect(response.status).toBe(200);
  return (await response.json()) as { id: string; outputs: { name: string; data: number[] }[] };
};

/** A collector for the HTTP sink: records every POST; `fail` answers 503. */
async function collector(fail = false) {
  const posts: { contentType: string; events: { specversion: string; id: string; type: string; source: string; data: InferenceRecord }[] }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      if (!fail) posts.push({ contentType: String(req.headers['content-type']), events: JSON.parse(body) });
      res.writeHead(fail ? 503 : 202).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`, posts, close: () => new Promise((r) => server.close(r)) };
}

describe('inference ids', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer(serveOptions('breast_cancer', { grpcPort: await freePort() }), quiet);
  });
  afterAll(() => server.stop());

  it("answers every inference with an id: the request's own, X-Request-Id, or a generated one", async () => {
    expect((await infer(server.url, rows.slice(0, 1), { id: 'mine-1' })).id).toBe('mine-1');
    expect((await infer(server.url, rows.slice(0, 1), { headers: { 'x-request-id': 'from-gateway' } })).id).toBe('from-gateway');
    const a = (await infer(server.url, rows.slice(0, 1))).id;
    const b = (await infer(server.url, rows.slice(0, 1))).id;
    expect(a).toMatch(/^[0-9a-f-]{36}$/);
    expect(b).not.toBe(a);
    // Binary answers carry it in their JSON header.
    const request = encodeRestRequest(
      [{ name: 'features', datatype: 'FP32' }],
      { features: { data: new Float32Array(rows[0]), dims: [1, 30] } },
      { binary: true },
    );
    const binary = await fetch(`${server.url}/v2/models/breast_cancer/infer`, { method: 'POST', body: request.body, headers: request.headers });
    const header = Number(binary.headers.get('inference-header-content-length'));
    const json = JSON.parse(
      Buffer.from(await binary.arrayBuffer())
        .subarray(0, header)
        .toString('utf8'),
    );
    expect(json.id).toMatch(/^[0-9a-f-]{36}$/);
    // v1 has no id field: the header carries it.
    const v1 = await fetch(`${server.url}/v1/models/breast_cancer:predict`, { method: 'POST', body: JSON.stringify({ instances: [rows[0]] }) });
    expect(v1.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    // gRPC: the response id.
    const client = inferenceClient(server.grpcAddress!);
    try {
      const bytes = Buffer.from(new Float32Array(rows[0]).buffer);
      const answer = await call(client, client.ModelInfer, {
        model_name: 'breast_cancer',
        inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30] }],
        raw_input_contents: [bytes],
      });
      expect(answer.id).toMatch(/^[0-9a-f-]{36}$/);
      const own = await call(client, client.ModelInfer, {
        model_name: 'breast_cancer',
        id: 'grpc-7',
        inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30] }],
        raw_input_contents: [bytes],
      });
      expect(own.id).toBe('grpc-7');
    } finally {
      client.close();
    }
  });
});

describe('the inference log, file sink', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'mlops-inference-log-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('writes a line per row for every protocol, with the id answered, the model and the outputs answered (and inputs when asked)', async () => {
    const file = path.join(dir, 'all.jsonl');
    // Offloading bodies over 4 KiB sends the 20-row request below through a worker thread, which writes its own lines.
    const server = await startServer(
      serveOptions('breast_cancer', { grpcPort: await freePort(), offloadBytes: 4096, inferenceLog: { sample: 1, sink: `file:${file}`, inputs: true } }),
      quiet,
    );
    const answered = new Map<string, number[][]>();
    try {
      const one = await infer(server.url, rows.slice(0, 1));
      answered.set(one.id, [one.outputs[0].data]);
      const many = await infer(server.url, rows.slice(1, 21), { id: 'twenty' });
      answered.set(
        'twenty',
        Array.from({ length: 20 }, (_, r) => many.outputs[0].data.slice(r * 2, r * 2 + 2)),
      );
      const v1 = await fetch(`${server.url}/v1/models/breast_cancer:predict`, { method: 'POST', body: JSON.stringify({ instances: rows.slice(21, 24) }) });
      const v1Body = (await v1.json()) as { predictions: number[][] };
      answered.set(v1.headers.get('x-request-id')!, v1Body.predictions);
      const client = inferenceClient(server.grpcAddress!);
      const answer = await call(client, client.ModelInfer, {
        model_name: 'breast_cancer',
        id: 'grpc-1',
        inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30] }],
        raw_input_contents: [Buffer.from(new Float32Array(rows[24]).buffer)],
      });
      client.close();
      const grpcScores = new Float32Array(new Uint8Array(answer.raw_output_contents![0]).slice().buffer);
      answered.set('grpc-1', [Array.from(grpcScores)]);
      expect(one.outputs[0].data).toHaveLength(2);
    } finally {
      await server.stop();
    }
    const records = await readRecords(file);
    expect(records).toHaveLength(1 + 20 + 3 + 1);
    for (const [id, outputs] of answered) {
      const mine = records.filter((r) => r.id === id).sort((a, b) => a.row - b.row);
      expect(mine.map((r) => r.row)).toEqual(outputs.map((_, i) => i));
      mine.forEach((record, r) => {
        expect(record).toMatchObject({ type: 'mlops.inference', rows: outputs.length, model: 'breast_cancer', version: '1' });
        expect(record.sha256).toMatch(/^[0-9a-f]{64}$/);
        expect(Date.parse(record.time)).toBeGreaterThan(Date.now() - 60_000);
        const scores = record.outputs.find((o) => o.name === 'probabilities') ?? record.outputs[0];
        expect(scores.shape).toEqual([1, 2]);
        // Exactly the numbers answered (float32 written in full).
        expect(scores.data).toEqual(outputs[r].map((v) => Math.fround(v)));
        expect(record.inputs?.[0]).toMatchObject({ name: 'features', datatype: 'FP32', shape: [1, 30] });
      });
    }
    const twenty = records.filter((r) => r.id === 'twenty').sort((a, b) => a.row - b.row);
    expect(twenty[5].inputs![0].data).toEqual(rows[6].map(Math.fround));
  });

  it('logs the share of requests asked for, within statistical bounds, and only outputs by default', async () => {
    const file = path.join(dir, 'sampled.jsonl');
    const sample = 0.2;
    const requests = 1500;
    const server = await startServer(serveOptions('breast_cancer', { inferenceLog: { sample, sink: `file:${file}`, inputs: false } }), quiet);
    try {
      for (let i = 0; i < requests; i += 50)
        await Promise.all(Array.from({ length: 50 }, (_, j) => infer(server.url, [rows[(i + j) % rows.length], rows[(i + j + 1) % rows.length]])));
    } finally {
      await server.stop();
    }
    const records = await readRecords(file);
    const logged = new Set(records.map((r) => r.id));
    // Binomial(1500, 0.2): mean 300, sd 15.5; 5 sd either side fails one run in a few million.
    const sd = Math.sqrt(requests * sample * (1 - sample));
    expect(Math.abs(logged.size - requests * sample)).toBeLessThan(5 * sd);
    // A sampled request is logged whole: both of its rows.
    expect(records).toHaveLength(logged.size * 2);
    expect(records.every((r) => r.inputs === undefined)).toBe(true);
  });

  it('stops the server at start, naming the file, when the file sink cannot be opened', async () => {
    const error = await startServer(
      serveOptions('breast_cancer', { inferenceLog: { sample: 1, sink: 'file:/nonexistent-dir/x.jsonl', inputs: false } }),
      quiet,
    ).catch((e) => e);
    expect(error).toMatchObject({ exitCode: 2 });
    expect(error.message).toMatch(/cannot open \/nonexistent-dir\/x\.jsonl for appending: ENOENT/);
  });

  it('reads its settings from the environment, and refuses bad ones with the variable named', () => {
    const base = serveOptions('breast_cancer');
    const set = applyServerEnv(base, {
      MLOPS_INFERENCE_LOG_SAMPLE: '0.05',
      MLOPS_INFERENCE_LOG_SINK: 'https://collector.example/v1',
      MLOPS_INFERENCE_LOG_INPUTS: 'true',
    });
    expect(set.inferenceLog).toEqual({ sample: 0.05, sink: 'https://collector.example/v1', inputs: true });
    expect(() => applyServerEnv(base, { MLOPS_INFERENCE_LOG_SAMPLE: '2' })).toThrow(/MLOPS_INFERENCE_LOG_SAMPLE=2: expected a number from 0 to 1/);
    expect(() => applyServerEnv(base, { MLOPS_INFERENCE_LOG_SINK: 'file:relative.jsonl' })).toThrow(
      /MLOPS_INFERENCE_LOG_SINK: file:relative.jsonl: the file sink needs an absolute path/,
    );
    expect(() => applyServerEnv(base, { MLOPS_INFERENCE_LOG_SINK: 'kafka://x' })).toThrow(/is not a sink/);
  });
});

describe('the inference log, HTTP sink', () => {
  it('posts CloudEvents in batches, a structured event per row whose data is the record', async () => {
    const sink = await collector();
    const server = await startServer(serveOptions('breast_cancer', { inferenceLog: { sample: 1, sink: sink.url, inputs: false } }), quiet);
    const ids: string[] = [];
    try {
      for (let i = 0; i < 40; i++) ids.push((await infer(server.url, rows.slice(i, i + 3))).id);
      await until(async () => (await metric(server, 'mlops_inference_log_rows_total')) === 120);
    } finally {
      await server.stop();
      await sink.close();
    }
    // Batched: far fewer POSTs than requests.
    expect(sink.posts.length).toBeGreaterThan(0);
    expect(sink.posts.length).toBeLessThan(10);
    const events = sink.posts.flatMap((p) => p.events);
    expect(new Set(sink.posts.map((p) => p.contentType))).toEqual(new Set(['application/cloudevents-batch+json']));
    expect(events).toHaveLength(120);
    expect(new Set(events.map((e) => e.id)).size).toBe(120);
    for (const event of events) {
      expect(event).toMatchObject({
        specversion: '1.0',
        type: 'dev.mlops.inference.row',
        source: '/mlops/models/breast_cancer/versions/1',
        datacontenttype: 'application/json',
      });
      expect(event.data.type).toBe('mlops.inference');
    }
    expect(new Set(events.map((e) => e.data.id))).toEqual(new Set(ids));
    // A saved batch reads back as records.
    expect(recordsInLine(JSON.stringify(sink.posts[0].events))).toHaveLength(sink.posts[0].events.length);
  });

  it('when the collector is down or failing: every inference still answers, and the rows are dropped and counted', async () => {
    for (const down of ['refused', 'failing'] as const) {
      const failing = await collector(true);
      const url = down === 'refused' ? `http://127.0.0.1:${await freePort()}/events` : failing.url;
      const lines: string[] = [];
      const server = await startServer(serveOptions('breast_cancer', { inferenceLog: { sample: 1, sink: url, inputs: false } }), (l) => lines.push(l));
      try {
        for (let i = 0; i < 30; i++) await infer(server.url, rows.slice(i, i + 2));
        await until(async () => (await metric(server, 'mlops_inference_log_dropped_total', 'reason="sink-error"')) > 0);
        expect(await metric(server, 'mlops_inference_log_rows_total')).toBe(0);
      } finally {
        await server.stop();
        await failing.close();
      }
      // One warning, not one per batch.
      expect(lines.filter((l) => l.includes('inference log:') && l.includes('failed'))).toHaveLength(1);
      expect(lines.join('\n')).toMatch(down === 'refused' ? /ECONNREFUSED/ : /HTTP 503/);
    }
  });

  it('holds a bounded queue while the collector hangs, and drops what does not fit', async () => {
    // A collector that never answers: every POST waits for the timeout.
    const hanging = http.createServer(() => undefined);
    await new Promise<void>((r) => hanging.listen(0, '127.0.0.1', r));
    const registry = new Registry();
    const log = new InferenceLog(
      { sample: 1, sink: `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/`, inputs: false },
      { name: 'm', version: '1', sha256: 'a'.repeat(64) },
      registry,
      quiet,
      { ...INFERENCE_LOG_LIMITS, maxQueueBytes: 20_000, batchBytes: 5_000, flushMs: 10, timeoutMs: 300 },
    );
    const line = `${JSON.stringify({ type: 'mlops.inference', id: 'x', row: 0, rows: 1, outputs: [], pad: 'p'.repeat(900) })}\n`;
    for (let i = 0; i < 200; i++) log.add(line, 1);
    const queued = (await registry.getSingleMetric('mlops_inference_log_queue_bytes')!.get()).values[0].value;
    expect(queued).toBeLessThanOrEqual(20_000);
    const dropped = (await registry.getSingleMetric('mlops_inference_log_dropped_total')!.get()).values.find((v) => v.labels.reason === 'queue-full')!.value;
    // 200 rows of ~950 bytes against a queue of 20,000 bytes: most are dropped at once, none waits in memory.
    expect(dropped).toBeGreaterThanOrEqual(200 - Math.ceil(20_000 / line.length));
    await log.close(100);
    hanging.closeAllConnections();
    await new Promise((r) => hanging.close(r));
  });
});
