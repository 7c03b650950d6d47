/**
 * Issue 23 on the real engine: a local target whose server asks for tokens and speaks mutual TLS.
 * The token file and certificates are bind-mounted read-only, never passed as values; the deploy's
 * own readiness probe and smoke test get through; status says what serves.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCertificates, type TestCertificates } from '../certificates.js';
import { runCli } from '../helpers.js';
import { breastCancerProject, probeEngine, uniqueName } from './docker.js';

const engine = await probeEngine();
const REPOSITORY = 'mlops-e2e-secure/bc';
const CONTAINER = uniqueName('secure');
const TOKEN = 'e2e-token-0123456789abcdef-0123';

describe.skipIf(!engine.ok)(`a local target with tokens and mutual TLS${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let dir: string;
  let port: number;
  let certs: TestCertificates;

  beforeAll(async () => {
    certs = makeCertificates();
    ({ dir, port } = await breastCancerProject(docker, 'mlops-e2e-secure-', (base, p) => ({
      model: { path: 'model.onnx', name: 'bc' },
      image: { repository: REPOSITORY, base },
      targets: {
        dev: {
          type: 'local',
          containerName: CONTAINER,
          port: p,
          grpcPort: 0,
          readyTimeoutSeconds: 20,
          auth: { tokenFile: 'tokens' },
          tls: { cert: certs.serverCert, key: certs.serverKey, clientCa: certs.ca, clientCert: certs.clientCert, clientKey: certs.clientKey },
        },
      },
    })));
    writeFileSync(path.join(dir, 'tokens'), `${TOKEN}\n`);
    chmodSync(path.join(dir, 'tokens'), 0o644);
    const build = await runCli(['build'], { cwd: dir });
    expect(build.code, build.stderr).toBe(0);
    expect((await runCli(['tag', '1.0.0'], { cwd: dir })).code).toBe(0);
    // openssl writes keys 0600: the server (uid 10001) in the container could not read it. Refused before a container starts.
    const refused = await runCli(['deploy', '1.0.0', '--target', 'dev'], { cwd: dir });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/tls\.key .*server\.key is not readable by the server in the container \(uid 10001; the file is mode 600\)/);
    expect(await docker.listContainers({ all: true, filters: { name: [CONTAINER] } })).toEqual([]);
    chmodSync(certs.serverKey, 0o644);
  }, 240_000);

  afterAll(async () => {
    for (const c of await docker.listContainers({ all: true, filters: { name: [CONTAINER] } })) await docker.getContainer(c.Id).remove({ force: true });
    for (const image of await docker.listImages({ filters: { reference: [`${REPOSITORY}*`] } }))
      await docker
        .getImage(image.Id)
        .remove({ force: true })
        .catch(() => undefined);
  });

  const request = (route: string, options: https.RequestOptions & { body?: string } = {}): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = https.request(
        `https://127.0.0.1:${port}${route}`,
        { ca: readFileSync(certs.ca), agent: false, method: options.body ? 'POST' : 'GET', ...options },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        },
      );
      req.on('error', reject);
      req.end(options.body);
    });

  it('deploys: secrets mounted read-only (no token in the container spec), smoke-tested through token and client certificate; the port refuses what lacks either; status says so', async () => {
    const deploy = await runCli(['deploy', '1.0.0', '--target', 'dev'], { cwd: dir });
    expect(deploy.code, deploy.stderr + deploy.stdout).toBe(0);
    expect(deploy.stdout + deploy.stderr).not.toContain(TOKEN);

    const info = await docker.getContainer(CONTAINER).inspect();
    expect(info.HostConfig.Binds).toEqual([
      `${path.join(dir, 'tokens')}:/run/secrets/mlops/auth/tokens:ro`,
      `${certs.serverCert}:/run/secrets/mlops/tls/tls.crt:ro`,
      `${certs.serverKey}:/run/secrets/mlops/tls/tls.key:ro`,
      `${certs.ca}:/run/secrets/mlops/tls/ca.crt:ro`,
    ]);
    expect(JSON.stringify(info.Config)).not.toContain(TOKEN);
    expect(info.Config.Env).toEqual(
      expect.arrayContaining([
        'MLOPS_AUTH_TOKEN_FILE=/run/secrets/mlops/auth/tokens',
        'MLOPS_TLS_CERT=/run/secrets/mlops/tls/tls.crt',
        'MLOPS_TLS_CLIENT_CA=/run/secrets/mlops/tls/ca.crt',
      ]),
    );

    const client = { cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) };
    const auth = { authorization: `Bearer ${TOKEN}` };
    expect(await request('/v2/models/bc', { ...client, headers: auth })).toBe(200);
    expect(await request('/v2/models/bc', { ...client })).toBe(401);
    expect(await request('/v2/models/bc', { headers: auth })).toBe(403);
    expect(await request('/v2/health/ready')).toBe(200);

    const status = JSON.parse((await runCli(['status', '--target', 'dev', '--json'], { cwd: dir })).stdout);
    expect(status).toMatchObject({ health: 'ready', url: `https://127.0.0.1:${port}`, detail: { auth: 'bearer tokens', tls: 'mutual TLS' } });
    // monitor reads the live profile over HTTPS with the token and the client certificate from the environment.
    const monitor = await runCli(['monitor', '--target', 'dev', '--json'], {
      cwd: dir,
      env: { MLOPS_TOKEN: TOKEN, MLOPS_CLIENT_CERT: certs.clientCert, MLOPS_CLIENT_KEY: certs.clientKey },
    });
    expect(monitor.code, monitor.stderr).toBe(0);
    expect(JSON.parse(monitor.stdout).source).toMatchObject({ kind: 'target', from: [`https://127.0.0.1:${port}`] });
    const refused = await runCli(['monitor', '--target', 'dev'], { cwd: dir, env: { MLOPS_CLIENT_CERT: certs.clientCert, MLOPS_CLIENT_KEY: certs.clientKey } });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/asks for a bearer token \(HTTP 401\)/);
    // The image's own HEALTHCHECK speaks HTTPS too.
    for (let i = 0; i < 40 && (await docker.getContainer(CONTAINER).inspect()).State.Health?.Status === 'starting'; i++)
      await new Promise((r) => setTimeout(r, 500));
    expect((await docker.getContainer(CONTAINER).inspect()).State.Health?.Status).toBe('healthy');
  }, 180_000);
});
