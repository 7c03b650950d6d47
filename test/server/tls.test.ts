/** Issue 23, src/server/tls.ts: TLS and mutual TLS with certificates made here, and their rotation. */
import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../../src/server/run.js';
import { freePort } from '../../src/targets/kubectl.js';
import { makeCertificates, type TestCertificates } from '../certificates.js';
import { serveOptions } from '../helpers.js';
import { grpcClient, waitFor } from './security.js';

const execFileAsync = promisify(execFile);

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
