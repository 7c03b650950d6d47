/**
 * ACR's token exchange (Entra ID access token -> ACR refresh token) against a local stand-in of the
 * registry's /oauth2/exchange: no Azure tenant is reachable here.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMlopsError } from '../src/errors.js';
import { ACR_TOKEN_USER, fromAcr, resolveCredentials } from '../src/registry/credentials.js';

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
