/**
 * The image's AWS Lambda mode: the Runtime API loop against a local stand-in of the Runtime API
 * (AWS's own cannot run here) serving recorded Function URL, HTTP API and REST API events, each
 * answer checked against what the REST server answers to the same request, byte for byte.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventToRequest, runLambdaRuntime, MAX_RESPONSE_BYTES } from '../../src/server/lambda-runtime.js';
import { startServer, type RunningServer } from '../../src/server/run.js';
import { holdoutRows, serveOptions } from '../helpers.js';
import { functionUrlEvent, runtimeApi, type Posted } from '../lambda-runtime-api.js';

describe('AWS Lambda mode: the Runtime API loop', () => {
  let server: RunningServer;
  let echo: RunningServer;
  beforeAll(async () => {
    server = await startServer(serveOptions('breast_cancer', { modelName: 'bc', maxBodyBytes: 64 * 1024 }), () => undefined);
    echo = await startServer(serveOptions('string_echo', { modelName: 'echo' }), () => undefined);
  });
  afterAll(async () => {
    await server?.stop();
    await echo?.stop();
  });

  async function invokeAll(target: RunningServer, events: (object | string)[], firstEventAfterMs = 0): Promise<Posted[]> {
    const api = runtimeApi(events, firstEventAfterMs);
    await new Promise<void>((r) => api.server.listen(0, '127.0.0.1', r));
    try {
      await runLambdaRuntime({
        runtimeApi: `127.0.0.1:${(api.server.address() as AddressInfo).port}`,
        serverUrl: target.url,
        log: () => undefined,
        stopped: api.done,
      });
    } finally {
      api.server.closeAllConnections();
      await new Promise((r) => api.server.close(r));
    }
    return api.posted;
  }

  /** What the REST server answers to the same request: status, content type and the body's bytes. */
  async function direct(target: RunningServer, method: string, path: string, headers: Record<string, string>, body: Buffer | null) {
    const res = await fetch(`${target.url}${path}`, { method, headers, ...(body ? { body } : {}) });
    return { status: res.status, contentType: res.headers.get('content-type'), body: Buffer.from(await res.arrayBuffer()) };
  }
  const bodyOf = (posted: Posted) =>
    posted.body.isBase64Encoded ? Buffer.from(posted.body.body as string, 'base64') : Buffer.from(posted.body.body as string, 'utf8');

  it('answers JSON, binary tensors, a bad body, a too-large body and a health check exactly as the REST server does', async () => {
    const rows = holdoutRows().rows.slice(0, 3);
    const json = Buffer.from(JSON.stringify({ id: 'j1', inputs: [{ name: 'features', datatype: 'FP32', shape: [3, 30], data: rows.flat() }] }));
    const head = Buffer.from(
      JSON.stringify({
        id: 'b1',
        inputs: [{ name: 'features', datatype: 'FP32', shape: [3, 30], parameters: { binary_data_size: 360 } }],
        outputs: [{ name: 'probabilities', parameters: { binary_data: true } }],
      }),
    );
    const binary = Buffer.concat([head, Buffer.from(Float32Array.from(rows.flat()).buffer)]);
    const binaryHeaders = { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length) };
    const bad = Buffer.from('{"inputs": [');
    const large = Buffer.from(JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [3000, 30], data: Array(90_000).fill(0.5) }] }));
    const cases: { method: string; path: string; headers: Record<string, string>; body: Buffer | null; base64: boolean }[] = [
      { method: 'POST', path: '/v2/models/bc/infer', headers: { 'content-type': 'application/json' }, body: json, base64: false },
      { method: 'POST', path: '/v2/models/bc/infer', headers: binaryHeaders, body: binary, base64: true },
      { method: 'POST', path: '/v2/models/bc/infer', headers: { 'content-type': 'application/json' }, body: bad, base64: false },
      { method: 'POST', path: '/v2/models/bc/infer', headers: { 'content-type': 'application/json' }, body: large, base64: false },
      { method: 'GET', path: '/v2/health/ready', headers: {}, body: null, base64: false },
    ];
    const posted = await invokeAll(
      server,
      cases.map((c) => functionUrlEvent(c.method, c.path, c.headers, c.body, c.base64)),
    );
    expect(posted.map((p) => [p.id, p.kind])).toEqual(cases.map((_, i) => [`req-${i + 1}`, 'response']));
    for (const [i, c] of cases.entries()) {
      const expected = await direct(server, c.method, c.path, c.headers, c.body);
      expect(posted[i].body.statusCode, c.path).toBe(expected.status);
      expect((posted[i].body.headers as Record<string, string>)['content-type']).toBe(expected.contentType);
      expect(bodyOf(posted[i])).toEqual(expected.body);
    }
    expect(posted.map((p) => p.body.statusCode)).toEqual([200, 200, 400, 413, 200]);
    // Binary answers travel base64, JSON as text.
    expect(posted[1].body.isBase64Encoded).toBe(true);
    expect(posted[0].body.isBase64Encoded).toBe(false);
  });

  it('takes API Gateway REST API (1.0) events with their query parameters too', async () => {
    const rows = holdoutRows().rows.slice(0, 1);
    const body = JSON.stringify({ id: 'r1', inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: rows.flat() }] });
    const event = {
      resource: '/{proxy+}',
      path: '/v2/models/bc/infer',
      httpMethod: 'POST',
      headers: { 'Content-Type': 'application/json' },
      queryStringParameters: null,
      multiValueQueryStringParameters: null,
      requestContext: { stage: 'prod' },
      body,
      isBase64Encoded: false,
    };
    expect(eventToRequest({ ...event, queryStringParameters: { a: '1' }, multiValueQueryStringParameters: { a: ['1', '2'] } })?.path).toBe(
      '/v2/models/bc/infer?a=1&a=2',
    );
    const [posted] = await invokeAll(server, [event]);
    const expected = await direct(server, 'POST', '/v2/models/bc/infer', { 'content-type': 'application/json' }, Buffer.from(body));
    expect(posted.body.statusCode).toBe(200);
    expect(bodyOf(posted)).toEqual(expected.body);
  });

  it('posts a Lambda error for an event that is not HTTP or not JSON, and keeps serving the next', async () => {
    const s3 = { Records: [{ eventSource: 'aws:s3', s3: { bucket: { name: 'b' }, object: { key: 'k' } } }] };
    const posted = await invokeAll(server, [s3, 'not json at all', functionUrlEvent('GET', '/v2/health/live', {}, null, false)]);
    expect(posted).toEqual([
      {
        id: 'req-1',
        kind: 'error',
        errorType: 'Runtime.UnsupportedEvent',
        body: { errorType: 'Runtime.UnsupportedEvent', errorMessage: expect.stringContaining('HTTP events only') },
      },
      { id: 'req-2', kind: 'error', errorType: 'Runtime.InvalidEvent', body: { errorType: 'Runtime.InvalidEvent', errorMessage: 'the event is not JSON' } },
      expect.objectContaining({ id: 'req-3', kind: 'response', body: expect.objectContaining({ statusCode: 200 }) }),
    ]);
  });

  it("waits for the next event as long as it takes (Node 20's default agent gives up on a socket idle 5 s)", { timeout: 15_000 }, async () => {
    const posted = await invokeAll(server, [functionUrlEvent('GET', '/v2/health/live', {}, null, false)], 6000);
    expect(posted).toEqual([expect.objectContaining({ id: 'req-1', kind: 'response', body: expect.objectContaining({ statusCode: 200 }) })]);
  });

  it("answers 413 itself when the server's answer is over Lambda's 6 MB response limit", async () => {
    const text = 'x'.repeat(1000);
    const count = Math.ceil((MAX_RESPONSE_BYTES * 1.1) / 1000);
    const body = Buffer.from(
      JSON.stringify({
        inputs: [
          { name: 'text', datatype: 'BYTES', shape: [count], data: Array(count).fill(text) },
          { name: 'x', datatype: 'FP32', shape: [count, 2], data: Array(count * 2).fill(1) },
        ],
      }),
    );
    const [posted] = await invokeAll(echo, [functionUrlEvent('POST', '/v2/models/echo/infer', { 'content-type': 'application/json' }, body, false)]);
    expect(posted.kind).toBe('response');
    expect(posted.body.statusCode).toBe(413);
    expect(JSON.parse(posted.body.body as string).error).toMatch(/over AWS Lambda's 6291456-byte response limit/);
  });
});
