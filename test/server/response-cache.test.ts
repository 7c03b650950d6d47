/** Issue 34: the opt-in response cache, over REST and gRPC. */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inferenceProto } from '../../src/protocol/grpc.js';
import { startServer, type RunningServer } from '../../src/server/run.js';
import { freePort, serveOptions } from '../helpers.js';

const ROW = Array.from({ length: 13 }, (_, i) => i / 10);
const body = (row: number[], id?: string) =>
  JSON.stringify({ ...(id ? { id } : {}), inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 13], data: row }] });

describe('response cache', () => {
  let server: RunningServer;
  const lines: string[] = [];
  beforeAll(async () => {
    server = await startServer(serveOptions('wine', { modelName: 'wine', grpcPort: await freePort(), responseCacheBytes: 4096 }), (l) => lines.push(l));
  });
  afterAll(async () => {
    await server?.stop();
  });
  const lookups = async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const count = (result: string) => Number(new RegExp(`mlops_response_cache_lookups_total\\{result="${result}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
    return { hit: count('hit'), miss: count('miss'), bytes: Number(/mlops_response_cache_bytes (\d+)/.exec(text)?.[1] ?? -1) };
  };
  const infer = async (text: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${server.url}/v2/models/wine/infer`, { method: 'POST', body: text, headers });
    return { status: res.status, json: (await res.json()) as { id?: string; outputs?: { name: string; data: number[] }[]; error?: string } };
  };

  it("the same inputs again: answered from the cache with the same outputs and the request's own id; Cache-Control: no-cache skips it", async () => {
    expect(lines.join('\n')).toMatch(/response cache: up to 4096 bytes/);
    const before = await lookups();
    const first = await infer(body(ROW, 'one'));
    const second = await infer(body(ROW, 'two'));
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(second.json.outputs).toEqual(first.json.outputs);
    expect([first.json.id, second.json.id]).toEqual(['one', 'two']);
    let after = await lookups();
    expect([after.hit - before.hit, after.miss - before.miss]).toEqual([1, 1]);
    // Other inputs: a miss.
    await infer(body(ROW.map((v) => v + 1)));
    expect((await lookups()).miss - after.miss).toBe(1);
    after = await lookups();
    expect((await infer(body(ROW), { 'cache-control': 'no-cache' })).status).toBe(200);
    const skipped = await lookups();
    expect([skipped.hit, skipped.miss]).toEqual([after.hit, after.miss]);
  });

  it('errors are never kept; the bytes held stay within the budget as distinct inputs arrive', async () => {
    const before = await lookups();
    const bad = await infer(JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 13], data: [1, 2] }] }));
    expect(bad.status).toBe(400);
    expect((await lookups()).miss).toBe(before.miss);
    for (let i = 0; i < 100; i++) expect((await infer(body(ROW.map((v) => v * i)))).status).toBe(200);
    const after = await lookups();
    expect(after.bytes).toBeGreaterThan(0);
    expect(after.bytes).toBeLessThanOrEqual(4096);
  });

  it('gRPC: the same ModelInfer again is a hit, with the same outputs', async () => {
    const pkg = grpc.loadPackageDefinition(inferenceProto()) as unknown as { inference: { GRPCInferenceService: grpc.ServiceClientConstructor } };
    const client = new pkg.inference.GRPCInferenceService(server.grpcAddress!, grpc.credentials.createInsecure()) as unknown as {
      ModelInfer: (r: unknown, cb: (e: Error | null, r: { outputs: unknown[]; raw_output_contents: Buffer[] }) => void) => void;
      close(): void;
    };
    try {
      const request = {
        model_name: 'wine',
        inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 13], contents: { fp32_contents: ROW.map((v) => v / 3) } }],
      };
      const call = () =>
        new Promise<{ raw_output_contents: Buffer[] }>((resolve, reject) => client.ModelInfer(request, (e, r) => (e ? reject(e) : resolve(r))));
      const before = await lookups();
      const first = await call();
      const second = await call();
      expect(second.raw_output_contents).toEqual(first.raw_output_contents);
      const after = await lookups();
      expect([after.hit - before.hit, after.miss - before.miss]).toEqual([1, 1]);
    } finally {
      client.close();
    }
  });
});
