/**
 * Issue 23: bearer tokens on every route but the probes, over REST and gRPC; lock-out of an address
 * that keeps failing; TLS and mutual TLS with certificates made here, and their rotation.
 */
import * as grpc from '@grpc/grpc-js';
import { createHash, X509Certificate } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FailureTracker, parseTokenFile } from '../src/server/auth.js';
import { inferenceProto } from '../src/protocol/grpc.js';
import { startServer, type RunningServer } from '../src/server/run.js';
import { freePort } from '../src/targets/kubectl.js';
import { makeCertificates, type TestCertificates } from './certificates.js';
import { loadSync } from '@grpc/proto-loader';
import { fixture, ROOT, runCli, serveOptions } from './helpers.js';

const execFileAsync = promisify(execFile);
const TOKEN_A = 'tok-a-0123456789abcdef0123456789';
const TOKEN_B = 'tok-b-fedcba9876543210fedcba9876';
const TOKEN_C = 'tok-c-secret-from-a-sha256-line-0';
const ROW = Array.from({ length: 13 }, (_, i) => i / 10);
const BODY = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 13], data: ROW }] });

function grpcClient(address: string, credentials = grpc.credentials.createInsecure()) {
  const pkg = grpc.loadPackageDefinition(inferenceProto()) as unknown as { inference: { GRPCInferenceService: grpc.ServiceClientConstructor } };
  const client = new pkg.inference.GRPCInferenceService(address, credentials) as unknown as Record<string, (...args: unknown[]) => void> & { close(): void };
  const rpc = (method: string, request: unknown, token?: string): Promise<string> =>
    new Promise((resolve) => {
      const metadata = new grpc.Metadata();
      if (token !== undefined) metadata.set('authorization', token);
      client[method](request, metadata, { deadline: Date.now() + 5000 }, (error: grpc.ServiceError | null) => resolve(error ? grpc.status[error.code] : 'OK'));
    });
  return { rpc, close: () => client.close() };
}

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
          got += d;
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

async function waitFor(check: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('TLS and mutual TLS', () => {
  let certs: TestCertificates;
  beforeAll(() => {
    certs = makeCertificates();
  });

  const get = (url: string, options: https.RequestOptions = {}): Promise<{ status: number; serial: string }> =>
    new Promise((resolve, reject) => {
      const req = https.get(url, { ...options, agent: false }, (res) => {
        const serial = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().serialNumber;
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, serial }));
      });
      req.on('error', reject);
    });

  it('HTTPS and gRPC over TLS on the usual ports; refused by a client that does not trust the CA; TLS 1.1 refused', async () => {
    const grpcPort = await freePort();
    const server = await startServer(
      serveOptions('wine', { modelName: 'wine', grpcPort, tls: { cert: certs.serverCert, key: certs.serverKey, clientCa: '', reloadIntervalMs: 100 } }),
      () => undefined,
    );
    try {
      expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect((await get(`${server.url}/v2/health/ready`, { ca: readFileSync(certs.ca) })).status).toBe(200);
      await expect(get(`${server.url}/v2/health/ready`)).rejects.toThrow(/self-signed|unable to verify|certificate/);
      await expect(get(`${server.url}/v2/health/ready`, { ca: readFileSync(certs.ca), maxVersion: 'TLSv1.1', minVersion: 'TLSv1' })).rejects.toThrow();
      const client = grpcClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createSsl(readFileSync(certs.ca)));
      try {
        expect(await client.rpc('ServerLive', {})).toBe('OK');
      } finally {
        client.close();
      }
      const plain = grpcClient(`127.0.0.1:${grpcPort}`);
      try {
        expect(await plain.rpc('ServerLive', {})).toBe('UNAVAILABLE');
      } finally {
        plain.close();
      }
      // Python's ssl, where present (not spawnSync: this server runs in this process).
      if (existsSync('/usr/bin/python3')) {
        const { stdout } = await execFileAsync('/usr/bin/python3', [
          '-c',
          `import ssl, urllib.request; c = ssl.create_default_context(cafile='${certs.ca}'); print(urllib.request.urlopen('${server.url}/v2/health/live', context=c).status)`,
        ]);
        expect(stdout.trim()).toBe('200');
      }
    } finally {
      await server.stop();
    }
  });

  it('mutual TLS: no client certificate and one from another CA are refused (403 over HTTPS, at the handshake over gRPC); the right one is served; health probes need none', async () => {
    const grpcPort = await freePort();
    const server = await startServer(
      serveOptions('wine', { modelName: 'wine', grpcPort, tls: { cert: certs.serverCert, key: certs.serverKey, clientCa: certs.ca, reloadIntervalMs: 100 } }),
      () => undefined,
    );
    const ca = readFileSync(certs.ca);
    try {
      const client = { cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) };
      const other = { cert: readFileSync(certs.otherClientCert), key: readFileSync(certs.otherClientKey) };
      expect((await get(`${server.url}/v2/models/wine`, { ca, ...client })).status).toBe(200);
      expect((await get(`${server.url}/v2/models/wine`, { ca })).status).toBe(403);
      expect((await get(`${server.url}/v2/models/wine`, { ca, ...other })).status).toBe(403);
      // The kubelet's HTTPS probe presents no certificate: the probes answer it.
      expect((await get(`${server.url}/v2/health/ready`, { ca })).status).toBe(200);
      const good = grpcClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createSsl(ca, readFileSync(certs.clientKey), readFileSync(certs.clientCert)));
      const none = grpcClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createSsl(ca));
      const wrong = grpcClient(
        `127.0.0.1:${grpcPort}`,
        grpc.credentials.createSsl(ca, readFileSync(certs.otherClientKey), readFileSync(certs.otherClientCert)),
      );
      try {
        expect(await good.rpc('ServerLive', {})).toBe('OK');
        expect(await none.rpc('ServerLive', {})).toBe('UNAVAILABLE');
        expect(await wrong.rpc('ServerLive', {})).toBe('UNAVAILABLE');
      } finally {
        [good, none, wrong].forEach((c) => c.close());
      }
    } finally {
      await server.stop();
    }
  });

  it('an expired client certificate from the trusted CA is refused naming that; TLS 1.2 offers forward-secret AEAD suites only, on HTTPS and gRPC', async () => {
    const grpcPort = await freePort();
    const server = await startServer(
      serveOptions('wine', { modelName: 'wine', grpcPort, tls: { cert: certs.serverCert, key: certs.serverKey, clientCa: certs.ca, reloadIntervalMs: 1000 } }),
      () => undefined,
    );
    const ca = readFileSync(certs.ca);
    const tls = await import('node:tls');
    try {
      const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = https.get(
          `${server.url}/v2/models/wine`,
          { ca, cert: readFileSync(certs.expiredClientCert), key: readFileSync(certs.expiredClientKey), agent: false },
          (res) => {
            let text = '';
            res.on('data', (d) => (text += d));
            res.on('end', () => resolve({ status: res.statusCode!, text }));
          },
        );
        req.on('error', reject);
      });
      // Before: 403 saying the CA did not issue it.
      expect(answer).toEqual({ status: 403, text: JSON.stringify({ error: 'the client certificate has expired: renew it' }) });
      const { port } = new URL(server.url);
      const handshake = (at: number, options: import('node:tls').ConnectionOptions) =>
        new Promise<string>((resolve) => {
          const socket = tls.connect(
            { host: '127.0.0.1', port: at, ca, servername: 'localhost', cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey), ...options },
            () => {
              const cipher = socket.getCipher().name;
              socket.destroy();
              resolve(cipher);
            },
          );
          socket.on('error', (error) => resolve(`refused: ${(error as NodeJS.ErrnoException).code ?? error.message}`));
        });
      for (const at of [Number(port), grpcPort]) {
        // CBC with SHA-1, and RSA key exchange (no forward secrecy): Node's defaults offered both.
        expect(await handshake(at, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA' })).toMatch(/^refused/);
        expect(await handshake(at, { maxVersion: 'TLSv1.2', ciphers: 'AES128-GCM-SHA256:AES256-SHA' })).toMatch(/^refused/);
        expect(
          await handshake(at, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256', ...(at === grpcPort ? { ALPNProtocols: ['h2'] } : {}) }),
        ).toBe('ECDHE-ECDSA-AES128-GCM-SHA256');
        expect(await handshake(at, at === grpcPort ? { ALPNProtocols: ['h2'] } : {})).toMatch(/^TLS_/);
      }
    } finally {
      await server.stop();
    }
  });

  it('certificates rotate without a restart on both protocols', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mlops-rotate-'));
    const cert = path.join(dir, 'tls.crt');
    const key = path.join(dir, 'tls.key');
    copyFileSync(certs.serverCert, cert);
    copyFileSync(certs.serverKey, key);
    const grpcPort = await freePort();
    const lines: string[] = [];
    const server = await startServer(serveOptions('wine', { modelName: 'wine', grpcPort, tls: { cert, key, clientCa: '', reloadIntervalMs: 100 } }), (l) =>
      lines.push(l),
    );
    const ca = readFileSync(certs.ca);
    try {
      const first = await get(`${server.url}/v2/health/ready`, { ca });
      expect(first.serial).toBe(new X509Certificate(readFileSync(certs.serverCert)).serialNumber);
      // The key first, then the certificate, as a Secret update may land: the pair in between does not match and is not
      // taken, by either protocol (grpc-js' own file watcher took it, and every gRPC handshake failed until its next read).
      copyFileSync(certs.rotatedKey, key);
      await new Promise((r) => setTimeout(r, 400));
      expect((await get(`${server.url}/v2/health/ready`, { ca })).serial).toBe(first.serial);
      const between = grpcClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createSsl(ca));
      try {
        expect(await between.rpc('ServerLive', {})).toBe('OK');
      } finally {
        between.close();
      }
      copyFileSync(certs.rotatedCert, cert);
      const rotated = new X509Certificate(readFileSync(certs.rotatedCert)).serialNumber;
      await waitFor(async () => (await get(`${server.url}/v2/health/ready`, { ca })).serial === rotated);
      expect(lines.some((l) => /tls: certificate files changed: new connections use them/.test(l))).toBe(true);
      const client = grpcClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createSsl(ca));
      try {
        expect(await client.rpc('ServerLive', {})).toBe('OK');
      } finally {
        client.close();
      }
    } finally {
      await server.stop();
    }
  });

  it('bad files stop the start with exit 2 naming the file: expired, key of another certificate, unreadable, only one of the pair', async () => {
    const attempt = (tls: { cert: string; key: string; clientCa?: string }) =>
      startServer(serveOptions('wine', { tls: { clientCa: '', reloadIntervalMs: 100, ...tls } }), () => undefined).then(
        () => 'started',
        (e: { exitCode: number; message: string }) => `${e.exitCode} ${e.message}`,
      );
    expect(await attempt({ cert: certs.expiredCert, key: certs.expiredKey })).toMatch(
      /^2 the certificate .*expired\.crt expired on 2020-01-02T00:00:00\.000Z$/,
    );
    expect(await attempt({ cert: certs.serverCert, key: certs.clientKey })).toMatch(
      /^2 the key .*client\.key does not belong to the certificate .*server\.crt$/,
    );
    expect(await attempt({ cert: path.join(certs.dir, 'missing.crt'), key: certs.serverKey })).toMatch(
      /^2 cannot read the TLS certificate .*missing\.crt: ENOENT$/,
    );
    expect(await attempt({ cert: certs.serverCert, key: '' })).toMatch(/^2 TLS needs both a certificate and a key; server\.tls\.key is not set$/);
  });
});

describe("mlops' own clients against a server with tokens and mutual TLS", () => {
  let certs: TestCertificates;
  let server: RunningServer;
  let grpcPort: number;
  let dir: string;
  let tokenFile: string;

  beforeAll(async () => {
    certs = makeCertificates();
    dir = mkdtempSync(path.join(tmpdir(), 'mlops-clients-'));
    tokenFile = path.join(dir, 'token');
    writeFileSync(tokenFile, `${TOKEN_A}\n`);
    writeFileSync(
      path.join(dir, 'mlops.config.json'),
      JSON.stringify({ model: { path: fixture('wine', 'model.onnx'), name: 'wine' }, test: { label: 'label' } }),
    );
    grpcPort = await freePort();
    server = await startServer(
      serveOptions('wine', {
        modelName: 'wine',
        grpcPort,
        auth: { tokenFile, tokens: [], metrics: true, clientAddressHeader: '', reloadIntervalMs: 1000 },
        tls: { cert: certs.serverCert, key: certs.serverKey, clientCa: certs.ca, reloadIntervalMs: 1000 },
      }),
      () => undefined,
    );
  });
  afterAll(async () => {
    await server?.stop();
  });

  const secured = () => ['--token-file', tokenFile, '--cacert', certs.ca, '--cert', certs.clientCert, '--key', certs.clientKey];

  it('bench over HTTPS and over gRPC with TLS: every request answered, the token never printed', async () => {
    for (const url of [server.url, `grpcs://127.0.0.1:${grpcPort}`]) {
      const run = await runCli(['bench', '--url', url, '--duration', '1s', '--warmup', '0s', '--concurrency', '2', '--json', ...secured()], { cwd: dir });
      expect(run.code, run.stderr).toBe(0);
      const report = JSON.parse(run.stdout);
      expect(report.runs[0].errors.count ?? report.runs[0].errors).toBeFalsy();
      expect(report.runs[0].requests).toBeGreaterThan(10);
      expect(run.stdout + run.stderr).not.toContain(TOKEN_A);
    }
  }, 60_000);

  it('test over HTTPS with MLOPS_TOKEN from the environment: scored; without a token: exit 3 saying how to send one', async () => {
    const holdout = path.resolve('fixtures/wine/holdout.csv');
    const ok = await runCli(
      ['test', '--url', server.url, '--holdout', holdout, '--cacert', certs.ca, '--cert', certs.clientCert, '--key', certs.clientKey, '--json'],
      { cwd: dir, env: { MLOPS_TOKEN: TOKEN_A } },
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).metrics.accuracy).toBeGreaterThan(0.8);
    const refused = await runCli(
      ['test', '--url', server.url, '--holdout', holdout, '--cacert', certs.ca, '--cert', certs.clientCert, '--key', certs.clientKey],
      { cwd: dir },
    );
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/asks for a bearer token \(HTTP 401\)/);
    expect(refused.stderr).toMatch(/hint: set MLOPS_TOKEN or pass --token-file/);
    const untrusted = await runCli(['test', '--url', server.url, '--holdout', holdout, '--token-file', tokenFile], { cwd: dir });
    expect(untrusted.code).toBe(3);
    expect(untrusted.stderr).not.toContain(TOKEN_A);
  }, 60_000);
});
