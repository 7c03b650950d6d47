/**
 * One server, every platform contract: SageMaker's, Vertex AI's and KServe's routes on a real ONNX
 * Runtime server. At test/'s root beside e2e/platform-contracts.test.ts: a theme suite over
 * src/server/routes/ and src/server/app.ts, not one module; the image's environment is in
 * server/options.test.ts and the instances codec in protocol/instances.test.ts.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRestResponse, encodeRestRequest } from '../src/protocol/rest.js';
import { SAGEMAKER_BINARY } from '../src/server/app.js';
import { applyServerEnv } from '../src/server/options.js';
import { startServer, type RunningServer } from '../src/server/run.js';
import { fixture, serveOptions } from './helpers.js';

const quiet = () => undefined;
const features = (rows: number[][]) => ({ features: { data: Float32Array.from(rows.flat()), dims: [rows.length, 30] } });
const SPEC = [{ name: 'features', datatype: 'FP32' as const }];

function holdoutRows(): number[][] {
  const [, ...rows] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split('\n');
  return rows.map((r) => r.split(',').slice(0, -1).map(Number));
}

describe('one server, every platform contract (real ONNX Runtime over HTTP)', () => {
  let server: RunningServer;
  const rows = holdoutRows().slice(0, 3);
  let expected: number[][];

  beforeAll(async () => {
    // Vertex AI's routes, as it sets them when a model is uploaded without explicit routes.
    const options = applyServerEnv(serveOptions('breast_cancer'), {
      AIP_HEALTH_ROUTE: '/v1/endpoints/123/deployedModels/456',
      AIP_PREDICT_ROUTE: '/v1/endpoints/123/deployedModels/456:predict',
    });
    server = await startServer(options, quiet);
    const res = await fetch(`${server.url}/v2/models/breast_cancer/infer`, { method: 'POST', ...encodeRestRequest(SPEC, features(rows), { binary: false }) });
    const outputs = ((await res.json()) as any).outputs as { data: number[] }[];
    expected = rows.map((_, r) => outputs[0].data.slice(r * 2, r * 2 + 2));
  });
  afterAll(async () => server?.stop());

  const invoke = (body: string | Buffer, contentType?: string) =>
    fetch(`${server.url}/invocations`, { method: 'POST', body, headers: contentType ? { 'content-type': contentType } : {} });

  it('SageMaker: /ping is the readiness check', async () => {
    const ping = await fetch(`${server.url}/ping`);
    expect(ping.status).toBe(200);
    expect(await ping.json()).toEqual({ ready: true });
  });

  it('SageMaker: /invocations takes JSON instances, also under the generic types curl and fetch send', async () => {
    for (const type of ['application/json', 'application/json; charset=utf-8', 'application/x-www-form-urlencoded', undefined]) {
      const res = await invoke(JSON.stringify({ instances: rows }), type);
      expect(res.status).toBe(200);
      expect(res.headers.get('x-request-id')).toBeTruthy();
      const { predictions } = (await res.json()) as any;
      predictions.forEach((p: number[], r: number) => p.forEach((v, i) => expect(v).toBeCloseTo(expected[r][i], 6)));
    }
  });

  it('SageMaker: /invocations takes an OIP v2 body, JSON or binary framed as SageMaker Triton clients send it', async () => {
    const json = await invoke(encodeRestRequest(SPEC, features(rows), { binary: false, id: 'sm-1' }).body, 'application/json');
    expect(json.status).toBe(200);
    const answer = (await json.json()) as any;
    expect(answer).toMatchObject({ id: 'sm-1', model_name: 'breast_cancer' });
    expect(answer.outputs[0].data).toEqual(expected.flat());

    const binary = encodeRestRequest(SPEC, features(rows), { binary: true });
    const res = await invoke(binary.body, `${SAGEMAKER_BINARY};json-header-size=${binary.headers['inference-header-content-length']}`);
    expect(res.status).toBe(200);
    const type = res.headers.get('content-type') ?? '';
    expect(type).toMatch(new RegExp(`^${SAGEMAKER_BINARY.replace(/[.+]/g, '\\$&')};json-header-size=\\d+$`));
    const decoded = decodeRestResponse(new Uint8Array(await res.arrayBuffer()), Number(type.split('=')[1]));
    expect(Array.from(decoded.probabilities.data as Float32Array)).toEqual(expected.flat());

    const missing = await invoke(binary.body, SAGEMAKER_BINARY);
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as any).error).toContain('json-header-size=');
  });

  it('SageMaker: /invocations takes CSV rows and names a bad cell', async () => {
    const res = await invoke(rows.map((r) => r.join(',')).join('\n') + '\n', 'text/csv');
    expect(res.status).toBe(200);
    expect(((await res.json()) as any).predictions[1][0]).toBeCloseTo(expected[1][0], 6);
    // Quoted cells go through csv-parse, CRLF line ends included.
    const quoted = await invoke(
      rows
        .slice(0, 2)
        .map((r) => r.map((v) => `"${v}"`).join(','))
        .join('\r\n'),
      'text/csv',
    );
    expect(((await quoted.json()) as any).predictions[1][0]).toBeCloseTo(expected[1][0], 6);
    const bad = await invoke(`${rows[0].join(',')}\n${rows[1].slice(0, 29).join(',')},abc\n`, 'text/csv');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error).toBe("text/csv: row 2, column 30 is 'abc', not a number (send rows of numbers, no header line)");
    const short = await invoke(rows[0].slice(0, 5).join(','), 'text/csv');
    expect(short.status).toBe(400);
    expect(((await short.json()) as any).error).toContain("input 'features' takes rows of shape [30]");
  });

  it('SageMaker: /invocations refuses other content types with 415 and the ones it takes', async () => {
    const res = await invoke('x', 'application/x-protobuf');
    expect(res.status).toBe(415);
    expect(((await res.json()) as any).error).toContain("does not take content type 'application/x-protobuf'");
  });

  it("Vertex AI: answers on the routes AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE name, in Vertex's format", async () => {
    expect((await fetch(`${server.url}/v1/endpoints/123/deployedModels/456`)).status).toBe(200);
    const res = await fetch(`${server.url}/v1/endpoints/123/deployedModels/456:predict`, {
      method: 'POST',
      body: JSON.stringify({ instances: rows, parameters: {} }),
    });
    expect(res.status).toBe(200);
    const { predictions } = (await res.json()) as any;
    expect(predictions).toHaveLength(3);
    expect(predictions[2][1]).toBeCloseTo(expected[2][1], 6);
    // The route is matched exactly: not a prefix, not a pattern.
    expect((await fetch(`${server.url}/v1/endpoints/123/deployedModels/4567`)).status).toBe(404);
  });

  it('KServe: the OIP v2 routes are unchanged beside them', async () => {
    expect((await fetch(`${server.url}/v2/health/ready`)).status).toBe(200);
    expect((await fetch(`${server.url}/v2/models/breast_cancer/ready`)).status).toBe(200);
  });
});
