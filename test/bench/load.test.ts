import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpSender } from '../../src/bench/http-send.js';
import { runLoad } from '../../src/bench/load.js';
import { summarize } from '../../src/bench/stats.js';

describe('open loop measures from the schedule (no coordinated omission)', () => {
  let server: http.Server;
  let url: string;
  let stallFrom = Infinity;
  const STALL_MS = 200;

  beforeAll(async () => {
    // Answers at once, except that everything arriving during a 200 ms window waits for its end.
    server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const now = performance.now();
        const wait = now >= stallFrom && now < stallFrom + STALL_MS ? stallFrom + STALL_MS - now : 0;
        setTimeout(() => res.end('{}'), wait);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/models/m/infer`;
  });
  afterAll(() => new Promise((r) => server.close(r)));

  const measure = async (plan: Parameters<typeof runLoad>[0]) => {
    const { send, close } = httpSender(url, [{ body: Buffer.from('{}'), headers: { 'content-type': 'application/json' } }], 8);
    stallFrom = performance.now() + 400;
    const outcome = await runLoad(plan, send);
    await close();
    return { summary: summarize(outcome.histogram)!, requests: outcome.requests };
  };

  it('shows a stall in p99 at a fixed arrival rate, where a closed loop hides it', async () => {
    const open = await measure({ mode: 'open', rate: 400, durationMs: 1500, warmupMs: 0 });
    const closed = await measure({ mode: 'closed', concurrency: 1, durationMs: 1500, warmupMs: 0 });
    // 200 ms of stall at 400 req/s: ~80 requests (13%) were due during it, waiting up to 200 ms.
    expect(open.summary.p99).toBeGreaterThan(150);
    expect(open.summary.p90).toBeGreaterThan(20);
    // The closed loop sent one request into the stall and waited; its p99 stays low.
    expect(closed.summary.max).toBeGreaterThan(150);
    expect(closed.summary.p99).toBeLessThan(open.summary.p99 / 4);
    expect(open.requests).toBeGreaterThanOrEqual(590);
    expect(open.requests).toBeLessThanOrEqual(601);
  });
});
