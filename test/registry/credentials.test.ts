/**
 * Registry credentials: MLOPS_REGISTRY_USERNAME / PASSWORD, Docker's config (inline auth and credential
 * helpers), ECR through the aws CLI, and ACR's token exchange (Entra ID access token -> ACR refresh
 * token) against a local stand-in of the registry's /oauth2/exchange: no Azure tenant is reachable here.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMlopsError } from '../../src/errors.js';
import { ACR_TOKEN_USER, fromAcr, resolveCredentials } from '../../src/registry/credentials.js';
import { withTempDir } from '../helpers.js';

const exchanges: URLSearchParams[] = [];
let base = '';
const server = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    const form = new URLSearchParams(body);
    exchanges.push(form);
    const ok =
      req.method === 'POST' &&
      req.url === '/oauth2/exchange' &&
      req.headers['content-type'] === 'application/x-www-form-urlencoded' &&
      form.get('access_token') === 'aad-token';
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
    res.end(JSON.stringify(ok ? { refresh_token: 'acr-refresh-token' } : { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
  });
});
beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise((r) => server.close(r)));

const credential = (token: string, scopes: string[] = []) => ({
  getToken: async (scope: string | string[]) => (scopes.push(String(scope)), { token, expiresOnTimestamp: Date.now() + 3_600_000 }),
});

describe('ACR credentials through the token exchange', () => {
  it('exchanges an Entra ID token for the ARM audience into a refresh token, used with the null-GUID user', async () => {
    const scopes: string[] = [];
    const got = await fromAcr('acmeml.azurecr.io', base, credential('aad-token', scopes));
    expect(got).toEqual({ username: ACR_TOKEN_USER, password: 'acr-refresh-token', source: 'ACR token exchange (Entra ID)' });
    expect(scopes).toEqual(['https://management.azure.com/.default']);
    expect(Object.fromEntries(exchanges.at(-1)!)).toEqual({ grant_type: 'access_token', service: 'acmeml.azurecr.io', access_token: 'aad-token' });
    const china: string[] = [];
    await fromAcr('acmeml.azurecr.cn', base, credential('aad-token', china));
    expect(china).toEqual(['https://management.chinacloudapi.cn/.default']);
  });

  it('a refused exchange or a missing credential is exit 3 saying what to check', async () => {
    const refused = await fromAcr('acmeml.azurecr.io', base, credential('wrong')).catch((e) => e);
    expect(isMlopsError(refused) && refused.exitCode).toBe(3);
    expect(refused.message).toBe('acmeml.azurecr.io: the ACR token exchange answered HTTP 401');
    expect(refused.hint).toContain('AcrPush');
    const none = {
      getToken: async () => {
        throw new Error('DefaultAzureCredential failed to retrieve a token from the included credentials.');
      },
    };
    const missing = await resolveCredentials('acmeml.azurecr.io', { HOME: '/nonexistent' }, none).catch((e) => e);
    expect(isMlopsError(missing) && missing.exitCode).toBe(3);
    expect(missing.message).toContain('is Azure Container Registry, and no Entra ID token could be had for it');
    expect(missing.hint).toContain('az login');
  });

  it('MLOPS_REGISTRY_USERNAME/PASSWORD still win, and other registries are not sent to Azure', async () => {
    const asked: string[] = [];
    expect(await resolveCredentials('acmeml.azurecr.io', { MLOPS_REGISTRY_USERNAME: 'u', MLOPS_REGISTRY_PASSWORD: 'p' }, credential('x', asked))).toMatchObject(
      { username: 'u', password: 'p' },
    );
    expect(await resolveCredentials('registry.example.com', { HOME: '/nonexistent' }, credential('x', asked))).toBeUndefined();
    expect(asked).toEqual([]);
  });
});

describe('registry credentials', () => {
  it('prefers MLOPS_REGISTRY_USERNAME / PASSWORD', async () => {
    const c = await resolveCredentials('r.example.com', { MLOPS_REGISTRY_USERNAME: 'u', MLOPS_REGISTRY_PASSWORD: 'p', HOME: '/nonexistent' });
    expect(c).toEqual({ username: 'u', password: 'p', source: 'MLOPS_REGISTRY_USERNAME/PASSWORD' });
  });

  it("reads Docker's config: inline auth, and a credential helper program", async () => {
    await withTempDir(async (dir) => {
      const bin = path.join(dir, 'bin');
      await mkdir(bin);
      // A real credential helper, as docker-credential-* programs work: server URL on stdin, JSON out.
      await writeFile(
        path.join(bin, 'docker-credential-fake'),
        '#!/bin/sh\nread server\necho "{\\"Username\\":\\"helper-user\\",\\"Secret\\":\\"from-$server\\"}"\n',
      );
      await chmod(path.join(bin, 'docker-credential-fake'), 0o755);
      await writeFile(
        path.join(dir, 'config.json'),
        JSON.stringify({
          auths: { 'a.example.com': { auth: Buffer.from('alice:pw:with:colons').toString('base64') } },
          credHelpers: { 'b.example.com': 'fake' },
        }),
      );
      const env = { DOCKER_CONFIG: dir, PATH: `${bin}:${process.env.PATH}` };
      expect(await resolveCredentials('a.example.com', env)).toMatchObject({ username: 'alice', password: 'pw:with:colons' });
      expect(await resolveCredentials('b.example.com', env)).toMatchObject({
        username: 'helper-user',
        password: 'from-b.example.com',
        source: 'docker-credential-fake',
      });
      expect(await resolveCredentials('c.example.com', env)).toBeUndefined();
    });
  });
});

describe('ECR credentials through the aws CLI', () => {
  it("asks `aws ecr get-login-password` for the registry's region and logs in as AWS", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'mlops-fake-aws-'));
    try {
      // A stand-in for the aws CLI: no AWS account is reachable here.
      await writeFile(path.join(dir, 'aws'), `#!/bin/sh\necho "$@" > "${dir}/args"\necho token-123\n`, { mode: 0o755 });
      const credentials = await resolveCredentials('123456789012.dkr.ecr.eu-central-1.amazonaws.com', { PATH: `${dir}:${process.env.PATH}`, HOME: dir });
      expect(credentials).toEqual({ username: 'AWS', password: 'token-123', source: 'aws ecr get-login-password' });
      expect((await readFile(path.join(dir, 'args'), 'utf8')).trim()).toBe('ecr get-login-password --region eu-central-1');
      await writeFile(path.join(dir, 'aws'), '#!/bin/sh\necho "Unable to locate credentials" >&2\nexit 253\n', { mode: 0o755 });
      await expect(resolveCredentials('123456789012.dkr.ecr.eu-central-1.amazonaws.com', { PATH: `${dir}:${process.env.PATH}`, HOME: dir })).rejects.toThrow(
        'aws ecr get-login-password --region eu-central-1 failed (exit 253)',
      );
      expect(await resolveCredentials('registry.example.com', { PATH: `${dir}:${process.env.PATH}`, HOME: dir })).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
