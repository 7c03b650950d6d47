import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../../src/server/run.js';
import { fixture, serveOptions } from '../../helpers.js';

/** The container side of a Batch Transform job (SplitType Line, BatchStrategy MultiRecord, AssembleWith Line), on real ONNX Runtime. */
describe('the image under SageMaker Batch Transform', () => {
  let server: RunningServer;
  const [, ...lines] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split('\n');
  const rows = lines.slice(0, 4).map((r) => r.split(',').slice(0, -1).map(Number));
  let expected: number[][];

  beforeAll(async () => {
    server = await startServer(serveOptions('breast_cancer'), () => undefined);
    const res = await fetch(`${server.url}/invocations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ instances: rows }),
    });
    expected = ((await res.json()) as { predictions: number[][] }).predictions;
  });
  afterAll(async () => server?.stop());

  const invoke = (body: string, contentType: string, accept?: string) =>
    fetch(`${server.url}/invocations`, { method: 'POST', body, headers: { 'content-type': contentType, ...(accept ? { accept } : {}) } });

  it('GET /execution-parameters answers as Batch Transform asks', async () => {
    const res = await fetch(`${server.url}/execution-parameters`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body.BatchStrategy).toBe('MULTI_RECORD');
    expect(body.MaxConcurrentTransforms).toBeGreaterThanOrEqual(2);
    expect(body.MaxPayloadInMB).toBeGreaterThanOrEqual(1);
    expect(body.MaxPayloadInMB).toBeLessThanOrEqual(100);
  });

  it('CSV lines in, one CSV line per input line out, in order, with Accept: text/csv', async () => {
    const res = await invoke(rows.map((r) => r.join(',')).join('\n') + '\n', 'text/csv', 'text/csv');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/csv');
    const text = await res.text();
    expect(text.endsWith('\n')).toBe(true);
    const out = text.trimEnd().split('\n');
    expect(out).toHaveLength(rows.length);
    out.forEach((line, r) => line.split(',').forEach((v, i) => expect(Number(v)).toBeCloseTo(expected[r][i], 6)));
  });

  it('JSON Lines in and out (application/jsonlines), one prediction a line', async () => {
    const res = await invoke(rows.map((r) => JSON.stringify(r)).join('\n'), 'application/jsonlines', 'application/jsonlines');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/jsonlines');
    const out = (await res.text())
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as number[]);
    expect(out).toHaveLength(rows.length);
    out.forEach((p, r) => p.forEach((v, i) => expect(v).toBeCloseTo(expected[r][i], 6)));
  });

  it('without such an Accept the answer is JSON as before; a bad line is a 400 in JSON', async () => {
    const res = await invoke(rows.map((r) => r.join(',')).join('\n'), 'text/csv');
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(((await res.json()) as { predictions: unknown[] }).predictions).toHaveLength(rows.length);
    const bad = await invoke(`${JSON.stringify(rows[0])}\n{oops`, 'application/jsonlines', 'application/jsonlines');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/^application\/jsonlines: line 2 is not JSON/);
    const short = await invoke(rows[0].slice(0, 5).join(','), 'text/csv', 'text/csv');
    expect(short.status).toBe(400);
    expect(((await short.json()) as { error: string }).error).toContain("input 'features' takes rows of shape [30]");
  });
});
