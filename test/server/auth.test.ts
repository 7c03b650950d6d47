/**
 * Issue 23, src/server/auth.ts: bearer tokens on every route but the probes, over REST and gRPC; lock-out
 * of an address that keeps failing. TLS is in tls.test.ts.
 */
import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FailureTracker, parseTokenFile } from '../../src/server/auth.js';
import { startServer, type RunningServer } from '../../src/server/run.js';
import { freePort } from '../../src/targets/kubectl.js';
import { loadSync } from '@grpc/proto-loader';
import { ROOT, serveOptions } from '../helpers.js';
import { grpcClient, waitFor } from './security.js';

const TOKEN_A = 'tok-a-0123456789abcdef0123456789';
const TOKEN_B = 'tok-b-fedcba9876543210fedcba9876';
const TOKEN_C = 'tok-c-secret-from-a-sha256-line-0';
const ROW = Array.from({ length: 13 }, (_, i) => i / 10);
const BODY = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 13], data: ROW }] });

describe('bearer tokens', () => {
  let dir: string;
  let tokenFile: string;
  let server: RunningServer;
  let grpcAddress: string;
  const lines: string[] = [];
  let logFile: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'mlops-auth-'));
    tokenFile = path.join(dir, 'tokens');
    writeFileSync(tokenFile, `# rotated by the platform\n${TOKEN_A}\nsha256:${createHash('sha256').update(TOKEN_C).digest('hex')}\n`);
    logFile = path.join(dir, 'inference.jsonl');
    const grpcPort = await freePort();
    server = await startServer(
      serveOptions('wine', {
        modelName: 'wine',
        grpcPort,
        auth: { tokenFile, tokens: [], metrics: false, clientAddressHeader: 'x-forwarded-for', reloadIntervalMs: 100 },
        // The tests play clients at many addresses through a proxy on loopback.
        trustedProxies: ['127.0.0.1', '::1'],
        inferenceLog: { sample: 1, sink: `file:${logFile}`, inputs: true },
      }),
      (l) => lines.push(l),
    );
    grpcAddress = `127.0.0.1:${grpcPort}`;
  });
  afterAll(async () => {
    await server?.stop();
  });

  const rest = async (route: string, token?: string, init: RequestInit = {}, from = '198.51.100.1') => {
    const headers: Record<string, string> = { 'x-forwarded-for': from, ...(init.headers as Record<string, string>) };
    if (token !== undefined) headers.authorization = token;
    const res = await fetch(`${server.url}${route}`, { ...init, headers });
    return { status: res.status, challenge: res.headers.get('www-authenticate'), retryAfter: res.headers.get('retry-after'), text: await res.text() };
  };
  const PROTECTED: [string, RequestInit][] = [
    ['/v2', {}],
    ['/v2/models/wine', {}],
    ['/v2/models/wine/infer', { method: 'POST', body: BODY }],
    ['/v2/models/wine/profile', {}],
    ['/v2/repository/index', { method: 'POST' }],
    ['/v1/models/wine:predict', { method: 'POST', body: JSON.stringify({ instances: [ROW] }) }],
    ['/invocations', { method: 'POST', body: JSON.stringify({ instances: [ROW] }) }],
  ];

  it('REST: every route but the probes and /metrics answers 401 without a token or with a wrong one, and serves the right one (a clear token or a sha256: line)', async () => {
    for (const [i, [route, init]] of PROTECTED.entries()) {
      // Each route from its own address: failures are counted per address (and per wrong token), and 21 would lock one out.
      const from = `198.51.100.${100 + i}`;
      const none = await rest(route, undefined, init, from);
      expect([route, none.status, none.challenge]).toEqual([route, 401, 'Bearer realm="mlops"']);
      expect((await rest(route, `Bearer wrong-for-${i}-0123456789abcdef`, init, from)).status).toBe(401);
      expect((await rest(route, TOKEN_A, init, from)).status).toBe(401);
      const right = await rest(route, `Bearer ${TOKEN_A}`, init, from);
      expect([route, right.status]).not.toEqual([route, 401]);
      expect((await rest(route, `Bearer ${TOKEN_C}`, init, from)).status).toBe(right.status);
    }
    for (const open of ['/v2/health/live', '/v2/health/ready', '/v2/models/wine/ready', '/ping', '/metrics'])
      expect([open, (await rest(open)).status]).toEqual([open, 200]);
  });

  it('gRPC: UNAUTHENTICATED without the authorization metadata or with a wrong token; ServerLive, ServerReady, ModelReady and grpc.health.v1 stay open', async () => {
    const client = grpcClient(grpcAddress);
    try {
      const infer = { model_name: 'wine', inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 13], contents: { fp32_contents: ROW } }] };
      for (const [method, request] of [
        ['ModelInfer', infer],
        ['ModelMetadata', { name: 'wine' }],
        ['ServerMetadata', {}],
      ] as const) {
        expect([method, await client.rpc(method, request)]).toEqual([method, 'UNAUTHENTICATED']);
        expect([method, await client.rpc(method, request, `Bearer ${TOKEN_B}`)]).toEqual([method, 'UNAUTHENTICATED']);
        expect([method, await client.rpc(method, request, `Bearer ${TOKEN_A}`)]).toEqual([method, 'OK']);
      }
      for (const [method, request] of [
        ['ServerLive', {}],
        ['ServerReady', {}],
        ['ModelReady', { name: 'wine' }],
      ] as const)
        expect([method, await client.rpc(method, request)]).toEqual([method, 'OK']);
      const definition = loadSync(`${ROOT}/node_modules/grpc-health-check/proto/health/v1/health.proto`, { keepCase: true, enums: String });
      const Health = (grpc.loadPackageDefinition(definition) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } }).grpc.health
        .v1.Health;
      const health = new Health(grpcAddress, grpc.credentials.createInsecure()) as unknown as {
        check: (r: object, cb: (e: Error | null, r: { status: string }) => void) => void;
        close(): void;
      };
      expect(await new Promise((resolve) => health.check({ service: '' }, (e, r) => resolve(e ? e.message : r.status)))).toBe('SERVING');
      health.close();
    } finally {
      client.close();
    }
  });

  it('Expect: 100-continue without a token: 401 at once, no invitation to upload; with the token, 100 Continue', async () => {
    const net = await import('node:net');
    const ask = (authorization: string) =>
      new Promise<string>((resolve) => {
        let got = '';
        const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1', () =>
          socket.write(
            `POST /v2/models/wine/infer HTTP/1.1\r\nHost: x\r\n${authorization}Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: ${BODY.length}\r\nX-Forwarded-For: 198.51.100.20\r\n\r\n`,
          ),
        );
        socket.on('data', (d) => {
          got += String(d);
          socket.destroy();
          resolve(got);
        });
      });
    expect(await ask('')).toMatch(/^HTTP\/1\.1 401 [^]*www-authenticate: Bearer realm="mlops"/i);
    expect(await ask(`Authorization: Bearer ${TOKEN_A}\r\n`)).toMatch(/^HTTP\/1\.1 100 Continue/);
  });

  it('rotation: a new file makes old and new tokens valid, then the old one is refused; a broken file keeps the tokens in use', async () => {
    writeFileSync(tokenFile, `${TOKEN_A}\n${TOKEN_B}\n`);
    await waitFor(async () => (await rest('/v2/models/wine', `Bearer ${TOKEN_B}`, {}, '198.51.100.2')).status === 200);
    expect((await rest('/v2/models/wine', `Bearer ${TOKEN_A}`, {}, '198.51.100.2')).status).toBe(200);
    writeFileSync(tokenFile, `${TOKEN_B}\n`);
    await waitFor(async () => (await rest('/v2/models/wine', `Bearer ${TOKEN_A}`, {}, '198.51.100.3')).status === 401);
    expect((await rest('/v2/models/wine', `Bearer ${TOKEN_B}`, {}, '198.51.100.3')).status).toBe(200);
    writeFileSync(tokenFile, 'sha256:nothex\n');
    await waitFor(async () => lines.some((l) => /changed but is not usable, so the tokens in use stay: .* line 1: a sha256: line needs 64 hex digits/.test(l)));
    expect((await rest('/v2/models/wine', `Bearer ${TOKEN_B}`, {}, '198.51.100.3')).status).toBe(200);
    writeFileSync(tokenFile, `${TOKEN_A}\n${TOKEN_B}\n`);
    await waitFor(async () => (await rest('/v2/models/wine', `Bearer ${TOKEN_A}`, {}, '198.51.100.3')).status === 200);
  });

  it('a burst of wrong tokens from one address: slowed, then 429 with Retry-After for its failing requests; the right token from that address is still served (clients behind one NAT); failures counted by reason', async () => {
    expect((await rest('/v2/models/wine', undefined, {}, '192.0.2.65')).status).toBe(401);
    const statuses: number[] = [];
    for (let i = 0; i < 21; i++) statuses.push((await rest('/v2/models/wine', `Bearer wrong-${i}-0123456789abcdef`, {}, '192.0.2.66')).status);
    expect(statuses.slice(0, 19).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(19)).toEqual([429, 429]);
    const locked = await rest('/v2/models/wine', undefined, {}, '192.0.2.66');
    expect(locked.status).toBe(429);
    expect(Number(locked.retryAfter)).toBeGreaterThan(0);
    // Issue 34: the lock-out was per address, so one attacker behind a NAT locked everyone out.
    expect((await rest('/v2/models/wine', `Bearer ${TOKEN_A}`, {}, '192.0.2.66')).status).toBe(200);
    expect((await rest('/v2/models/wine', `Bearer ${TOKEN_A}`, {}, '192.0.2.67')).status).toBe(200);
    const metrics = (await rest('/metrics')).text;
    expect(metrics).toMatch(/mlops_auth_failures_total\{reason="invalid"\} \d+/);
    expect(metrics).toMatch(/mlops_auth_failures_total\{reason="missing"\} \d+/);
    expect(metrics).toMatch(/mlops_auth_failures_total\{reason="locked"\} [1-9]/);
  });

  it('the tokens appear nowhere: not in the log lines, the inference log, errors or metrics, even when sent in every wrong place', async () => {
    const planted = 'planted-0123456789abcdef-secret';
    await rest(`/v2/models/${planted}/infer`, `Bearer ${planted}`, { method: 'POST', body: BODY, headers: { 'x-request-id': planted } }, '198.51.100.9');
    const wrongPlaces = await rest(
      `/v2/models/wine/infer?token=${TOKEN_A}`,
      `Bearer ${TOKEN_A}`,
      { method: 'POST', body: JSON.stringify({ id: 'req-1', inputs: [{ name: TOKEN_A, datatype: 'FP32', shape: [1, 13], data: ROW }] }) },
      '198.51.100.9',
    );
    expect(wrongPlaces.status).toBe(400);
    await rest('/v2/models/wine/infer', `Bearer ${TOKEN_A}`, { method: 'POST', body: BODY }, '198.51.100.9');
    await waitFor(() => /"rows":1/.test(readFileSync(logFile, 'utf8')));
    const everything = [lines.join('\n'), (await rest('/metrics')).text, readFileSync(logFile, 'utf8')].join('\n');
    expect(readFileSync(logFile, 'utf8')).toMatch(/"rows":1/);
    for (const secret of [TOKEN_A, TOKEN_B, TOKEN_C]) expect(everything).not.toContain(secret);
    // The one echoed back is the client's own input name, in the 400 to that client only.
    expect(wrongPlaces.text).not.toContain(TOKEN_B);
  });
});

describe('the lock-out is bounded in memory', () => {
  it('100,000 distinct failing addresses: at most 10,000 remembered, the oldest forgotten first', () => {
    const tracker = new FailureTracker();
    for (let i = 0; i < 100_000; i++) tracker.fail(`198.51.${(i >> 8) & 255}.${i & 255}-${i}`);
    expect(tracker.size).toBe(10_000);
    for (let i = 0; i < 20; i++) tracker.fail('203.0.113.1');
    expect(tracker.lockedFor('203.0.113.1')).toBeGreaterThan(0);
    for (let i = 0; i < 10_000; i++) tracker.fail(`flood-${i}`);
    expect(tracker.lockedFor('203.0.113.1')).toBe(0);
  });

  it('a token file with no token, a short token or a bad sha256: line is refused naming the line', () => {
    expect(() => parseTokenFile('# nothing\n\n', 't')).toThrow('t holds no token');
    expect(() => parseTokenFile('short\n', 't')).toThrow('t line 1: a token of 5 characters is too short');
    expect(() => parseTokenFile(`${TOKEN_A}\nsha256:abc\n`, 't')).toThrow('t line 2: a sha256: line needs 64 hex digits');
  });
});
