/** Issue 23, src/protocol/client-security.ts: mlops' own clients (bench, test) against a server with tokens and mutual TLS. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server/run.js';
import { freePort } from '../../src/targets/kubectl.js';
import { makeCertificates, type TestCertificates } from '../certificates.js';
import { fixture, runCli, serveOptions } from '../helpers.js';

const TOKEN_A = 'tok-a-0123456789abcdef0123456789';

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
