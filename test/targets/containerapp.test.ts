/**
 * The Container Apps target: Microsoft's own SDK against the local ARM stand-in, which makes a
 * revision for each PUT as the service does (named <app>--<revisionSuffix>) and keeps their
 * traffic weights; smoke tests are recorded instead of sent (the revision URLs are Azure's).
 */
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { TARGET_DEFAULTS, type ContainerAppTarget } from '../../src/config/defaults.js';
import { validateConfig } from '../../src/config/load.js';
import { isMlopsError } from '../../src/errors.js';
import { containerAppAdapter, revisionSuffix } from '../../src/targets/containerapp.js';
import type { DeployContext } from '../../src/targets/types.js';
import { missingRequired } from './arm-mappers.js';
import { startFakeArm, type FakeArm } from './fake-arm.js';
import { releases, targetContext } from './target-context.js';

const [v1, v2] = releases('acme.azurecr.io/team/bc');
const SUB = '00000000-1111-2222-3333-444444444444';
const APP = `/subscriptions/${SUB}/resourceGroups/apps/providers/Microsoft.App/containerApps/bc-app`;
const DOMAIN = 'happy-sky.westeurope.azurecontainerapps.io';
const rev = (release: typeof v1) => `bc-app--${revisionSuffix(release)}`;

let arm: FakeArm;
/** What each smoke test asked for, and which URLs fail. */
let smoked: string[] = [];
let tokensSent: (string | undefined)[] = [];
let failing: (url: string) => string | undefined = () => undefined;
/** A revision the next PUT makes comes up in this state. */
let nextRevision: Record<string, unknown> = {};

type Json = Record<string, any>;

beforeEach(async () => {
  await arm?.close();
  arm = await startFakeArm();
  smoked = [];
  tokensSent = [];
  failing = () => undefined;
  nextRevision = { provisioningState: 'Provisioned', healthState: 'Healthy', runningState: 'Running' };
  // As Container Apps does: each PUT with a new template makes a revision; traffic weights show on the revisions.
  arm.onPut(/containerapps\/[^/]+$/, (app, key) => {
    const p = app.properties as Json;
    p.configuration.ingress.fqdn = `bc-app.${DOMAIN}`;
    const suffix = p.template?.revisionSuffix;
    if (suffix && !arm.resources.has(`${key}/revisions/bc-app--${suffix}`)) {
      arm.seed(`${APP}/revisions/bc-app--${suffix}`, {
        properties: { active: true, template: p.template, replicas: 1, createdTime: '2026-12-01T10:00:00Z', ...nextRevision },
      });
      p.latestRevisionName = `bc-app--${suffix}`;
    }
    for (const [path, r] of arm.resources) {
      if (!path.startsWith(`${key}/revisions/`)) continue;
      const weight =
        (p.configuration.ingress.traffic as Json[]).find((t) => t.revisionName === r.name || (t.latestRevision && r.name === p.latestRevisionName))?.weight ??
        0;
      (r.properties as Json).trafficWeight = weight;
    }
  });
  arm.onAction('deactivate', (path, _body, store) => (((store.get(path)!.properties as Json).active = false), {}));
  arm.onAction('activate', (path, _body, store) => (((store.get(path)!.properties as Json).active = true), {}));
});
afterAll(async () => arm?.close());

const target = (over: Partial<ContainerAppTarget> = {}): ContainerAppTarget => ({
  ...TARGET_DEFAULTS.containerapp,
  subscriptionId: SUB,
  resourceGroup: 'apps',
  location: 'westeurope',
  environment: 'prod-env',
  app: 'bc-app',
  armEndpoint: arm.url,
  waitIntervalSeconds: 0,
  readyTimeoutSeconds: 5,
  ...over,
});
function ctx(over: { dryRun?: boolean; env?: NodeJS.ProcessEnv } = {}): DeployContext {
  return targetContext({
    ...over,
    azure: { credential: () => ({ getToken: async () => ({ token: 'test-token', expiresOnTimestamp: Date.now() + 3_600_000 }) }), ca: arm.ca },
    smoke: async (url, _release, _headers, security) => {
      smoked.push(url);
      tokensSent.push(security?.token);
      const failure = failing(url);
      if (failure) throw new Error(failure);
    },
  });
}

/** The app as a deploy of v1 left it. */
async function deployV1() {
  await containerAppAdapter.deploy(target(), v1, null, ctx());
  arm.requests.length = 0;
  smoked = [];
}

const traffic = () =>
  arm.requests
    .filter((r) => r.path === APP && r.method !== 'GET')
    .map((r) =>
      ((r.body as Json).properties.configuration.ingress.traffic as Json[])
        .map((t) => `${t.revisionName ?? 'latest'}=${t.weight}${t.label ? `(${t.label})` : ''}`)
        .join(' '),
    );

describe('containerapp plan tests (the real SDK against a local ARM stand-in)', () => {
  it('first deploy: the app in multiple-revision mode with ingress, probes, scale rule and secrets; smoke-tested; nothing else active', async () => {
    const outcome = await containerAppAdapter.deploy(
      target({ env: { MLOPS_WORKERS: '2' }, secretEnv: { MLOPS_AUTH_TOKENS: 'CI_TOKENS' } }),
      v1,
      null,
      ctx({ env: { CI_TOKENS: 's3cret', MLOPS_TOKEN: 's3cret', MLOPS_REGISTRY_USERNAME: 'puller', MLOPS_REGISTRY_PASSWORD: 'pw' } }),
    );
    expect(outcome).toMatchObject({ status: 'deployed', url: `https://bc-app.${DOMAIN}` });
    const put = arm.requests.find((r) => r.method === 'PUT')!;
    expect(put.apiVersion).toBe('2025-07-01');
    const body = put.body as Json;
    expect(body).toMatchObject({
      location: 'westeurope',
      properties: {
        managedEnvironmentId: `/subscriptions/${SUB}/resourceGroups/apps/providers/Microsoft.App/managedEnvironments/prod-env`,
        configuration: {
          activeRevisionsMode: 'Multiple',
          ingress: { external: true, targetPort: 8080, transport: 'auto', traffic: [{ latestRevision: true, weight: 100 }] },
          secrets: [
            { name: 'mlops-auth-tokens', value: 's3cret' },
            { name: 'registry-password', value: 'pw' },
          ],
          registries: [{ server: 'acme.azurecr.io', username: 'puller', passwordSecretRef: 'registry-password' }],
        },
        template: {
          revisionSuffix: revisionSuffix(v1),
          scale: { minReplicas: 0, maxReplicas: 10, rules: [{ name: 'http-concurrency', http: { metadata: { concurrentRequests: '10' } } }] },
        },
      },
    });
    const container = body.properties.template.containers[0];
    expect(container).toMatchObject({ name: 'server', image: v1.image, resources: { cpu: 0.5, memory: '1Gi' } });
    expect(container.env).toEqual([
      { name: 'MLOPS_MODEL_VERSION', value: '1.0.0' },
      { name: 'MLOPS_WORKERS', value: '2' },
      { name: 'MLOPS_AUTH_TOKENS', secretRef: 'mlops-auth-tokens' },
    ]);
    expect(container.probes.map((p: Json) => `${p.type} ${p.httpGet.path}`)).toEqual([
      'Startup /v2/health/ready',
      'Liveness /v2/health/live',
      'Readiness /v2/health/ready',
    ]);
    expect(await missingRequired('appcontainers', 'ContainerApp', body)).toEqual([]);
    expect(smoked).toEqual([`https://bc-app.${DOMAIN}`]);
  });

  it('update: the new revision with no traffic and a label, smoke-tested through its URL, then the canary steps; the old one deactivated', async () => {
    await deployV1();
    const outcome = await containerAppAdapter.deploy(target({ canary: [25, 100] }), v2, v1, ctx());
    expect(outcome).toMatchObject({ status: 'deployed', previous: v1 });
    expect(traffic()).toEqual([`${rev(v1)}=100`, `${rev(v1)}=100 ${rev(v2)}=0(candidate)`, `${rev(v1)}=75 ${rev(v2)}=25(candidate)`, `${rev(v2)}=100`]);
    expect(arm.requests.filter((r) => r.path === APP && r.method !== 'GET').map((r) => r.method)).toEqual(['PUT', 'PATCH', 'PATCH', 'PATCH']);
    expect(smoked).toEqual([`https://bc-app---candidate.${DOMAIN}`, `https://bc-app---candidate.${DOMAIN}`]);
    expect(arm.writes().at(-1)).toBe(`POST ${APP}/revisions/${rev(v1)}/deactivate`);
    for (const r of arm.requests.filter((q) => q.method === 'PATCH')) expect(await missingRequired('appcontainers', 'ContainerApp', r.body)).toEqual([]);
  });

  it('a revision that fails to provision never takes traffic and is deactivated: rolled back', async () => {
    await deployV1();
    nextRevision = { provisioningState: 'Failed', healthState: 'Unhealthy', provisioningError: 'ImagePullBackOff: unauthorized: authentication required' };
    const outcome = await containerAppAdapter.deploy(target(), v2, v1, ctx());
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'rollout-failed', restored: v1, logs: expect.stringContaining('ImagePullBackOff') });
    expect(traffic()).toEqual([`${rev(v1)}=100`]);
    expect(arm.writes().at(-1)).toBe(`POST ${APP}/revisions/${rev(v2)}/deactivate`);
  });

  it('a first deploy whose app fails to provision is a failure with nothing to restore, and no smoke test', async () => {
    arm.failNext(/containerapps\/bc-app$/, { code: 'ContainerAppOperationError', message: 'Failed to provision revision: image pull failed' });
    const outcome = await containerAppAdapter.deploy(target(), v1, null, ctx());
    expect(outcome).toMatchObject({ status: 'failed', reason: 'rollout-failed', restored: null });
    expect((outcome as { message: string }).message).toContain('image pull failed');
    expect(smoked).toEqual([]);
  });

  it('a failed smoke test moves nothing and deactivates the new revision; on a first deploy it is a failure', async () => {
    await deployV1();
    failing = (url) => (url.includes('candidate') ? 'inference answered HTTP 500: boom' : undefined);
    const outcome = await containerAppAdapter.deploy(target({ canary: [10, 100] }), v2, v1, ctx());
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'smoke-failure', restored: v1, message: 'inference answered HTTP 500: boom' });
    expect(traffic().at(-1)).toBe(`${rev(v1)}=100`);
    expect(arm.writes().at(-1)).toBe(`POST ${APP}/revisions/${rev(v2)}/deactivate`);

    await arm.close();
    arm = await startFakeArm();
    arm.onPut(/containerapps\/[^/]+$/, (app) => ((app.properties as Json).configuration.ingress.fqdn = `bc-app.${DOMAIN}`));
    arm.onAction('deactivate', () => ({}));
    failing = () => 'inference answered HTTP 503';
    arm.seed(`${APP}/revisions/${rev(v1)}`, { properties: { provisioningState: 'Provisioned', healthState: 'Healthy', active: true } });
    expect(await containerAppAdapter.deploy(target(), v1, null, ctx())).toMatchObject({ status: 'failed', reason: 'smoke-failure', restored: null });
  });

  it('a revision that turns unhealthy during a canary step: traffic back to the old one', async () => {
    await deployV1();
    failing = (url) => (smoked.length > 1 ? `the smoke request to ${url} failed: fetch failed` : undefined);
    const outcome = await containerAppAdapter.deploy(target({ canary: [10, 50, 100] }), v2, v1, ctx());
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'rollout-failed', restored: v1 });
    expect((outcome as { message: string }).message).toMatch(/^at 10% of traffic: /);
    expect(traffic().slice(-2)).toEqual([`${rev(v1)}=90 ${rev(v2)}=10(candidate)`, `${rev(v1)}=100`]);
  });

  it('a rollback activates the old revision again instead of making it anew (a suffix is used once)', async () => {
    await deployV1();
    await containerAppAdapter.deploy(target(), v2, v1, ctx());
    arm.requests.length = 0;
    const outcome = await containerAppAdapter.deploy(target(), v1, v2, ctx());
    expect(outcome).toMatchObject({ status: 'deployed' });
    expect(arm.writes()).toEqual([`POST ${APP}/revisions/${rev(v1)}/activate`, `PATCH ${APP}`, `PATCH ${APP}`, `POST ${APP}/revisions/${rev(v2)}/deactivate`]);
    expect(traffic().at(-1)).toBe(`${rev(v1)}=100`);
  });

  it('a redeploy of the serving release checks it through the app URL, and a failed check never deactivates what serves', async () => {
    await deployV1();
    expect(await containerAppAdapter.deploy(target({ canary: [10, 100] }), v1, v1, ctx())).toMatchObject({ status: 'deployed' });
    expect(smoked).toEqual([`https://bc-app.${DOMAIN}`]);
    failing = () => 'inference answered HTTP 500';
    expect(await containerAppAdapter.deploy(target(), v1, v1, ctx())).toMatchObject({ status: 'failed', reason: 'smoke-failure' });
    expect(arm.writes().filter((w) => w.endsWith('/deactivate'))).toEqual([]);
  });

  it('a server given tokens is smoke-tested with MLOPS_TOKEN, and without one the deploy stops (exit 2) before anything is written', async () => {
    const withTokens = target({ secretEnv: { MLOPS_AUTH_TOKENS: 'CI_TOKENS' } });
    const error = await containerAppAdapter.deploy(withTokens, v1, null, ctx({ env: { CI_TOKENS: 'a,b' } })).catch((e) => e);
    expect(isMlopsError(error) && error.exitCode).toBe(2);
    expect(error.hint).toContain('MLOPS_TOKEN');
    expect(arm.writes()).toEqual([]);
    expect(await containerAppAdapter.deploy(withTokens, v1, null, ctx({ env: { CI_TOKENS: 'a,b', MLOPS_TOKEN: 'a' } }))).toMatchObject({ status: 'deployed' });
    expect(tokensSent).toEqual(['a']);
    expect(error.message).toBe('targets.prod: the server is given MLOPS_AUTH_TOKENS, so the smoke test needs a token it accepts');
  });

  it('a secret variable that is not set is exit 2 naming it, before anything is written', async () => {
    const error = await containerAppAdapter
      .deploy(target({ secretEnv: { MLOPS_AUTH_TOKENS: 'CI_TOKENS' } }), v1, null, ctx({ env: { MLOPS_TOKEN: 't' } }))
      .catch((e) => e);
    expect(isMlopsError(error) && error.exitCode).toBe(2);
    expect(error.message).toContain('secretEnv.MLOPS_AUTH_TOKENS names CI_TOKENS, which is not set here');
    expect(arm.writes()).toEqual([]);
  });

  it('--dry-run records the PUT with its body, sends nothing and prints no secret value it was not given', async () => {
    const c = ctx({ dryRun: true });
    expect(
      (
        await containerAppAdapter.deploy(
          target({ registryIdentity: `/subscriptions/${SUB}/resourceGroups/apps/providers/Microsoft.ManagedIdentity/userAssignedIdentities/puller` }),
          v2,
          null,
          c,
        )
      ).status,
    ).toBe('planned');
    expect(arm.requests).toEqual([]);
    expect(c.exec.steps.map((s) => s.command.replace(arm.url, 'ARM'))).toEqual([
      `PUT ARM${APP}?api-version=2025-07-01`,
      `PATCH ARM${APP}?api-version=2025-07-01`,
    ]);
    const body = JSON.parse(c.exec.steps[0].input!);
    expect(body.identity).toEqual({
      type: 'UserAssigned',
      userAssignedIdentities: { [`/subscriptions/${SUB}/resourceGroups/apps/providers/Microsoft.ManagedIdentity/userAssignedIdentities/puller`]: {} },
    });
    expect(body.properties.configuration.registries).toEqual([
      { server: 'acme.azurecr.io', identity: `/subscriptions/${SUB}/resourceGroups/apps/providers/Microsoft.ManagedIdentity/userAssignedIdentities/puller` },
    ]);
  });

  it('no plan step carries a secret value: the recorded bodies show <secret>', async () => {
    const c = ctx({
      dryRun: true,
      env: { CI_TOKENS: 's3cret-token', MLOPS_TOKEN: 's3cret-token', MLOPS_REGISTRY_USERNAME: 'u', MLOPS_REGISTRY_PASSWORD: 'registry-pw' },
    });
    await containerAppAdapter.deploy(target({ secretEnv: { MLOPS_AUTH_TOKENS: 'CI_TOKENS' } }), v2, null, c);
    const recorded = c.exec.steps.map((s) => s.input ?? '').join('\n');
    expect(recorded).not.toContain('s3cret-token');
    expect(recorded).not.toContain('registry-pw');
    expect(JSON.parse(c.exec.steps[0].input!).properties.configuration.secrets).toEqual([
      { name: 'mlops-auth-tokens', value: '<secret>' },
      { name: 'registry-password', value: '<secret>' },
    ]);
  });

  it('status and history --rebuild read the revisions; recover puts a split back on the serving release', async () => {
    await deployV1();
    expect(await containerAppAdapter.status(target(), ctx())).toMatchObject({
      deployed: true,
      version: '1.0.0',
      image: v1.image,
      health: 'ready',
      url: `https://bc-app.${DOMAIN}`,
      detail: { revision: rev(v1), traffic: { [rev(v1)]: 100 } },
    });
    await containerAppAdapter.deploy(target(), v2, v1, ctx());
    expect((await containerAppAdapter.recordedReleases(target(), ctx())).map((r) => [r.version, r.serving])).toEqual([
      ['1.0.0', false],
      ['1.1.0', true],
    ]);
    // A deploy that died at 30%:
    const app = arm.resources.get(APP.toLowerCase())!;
    (app.properties as Json).configuration.ingress.traffic = [
      { revisionName: rev(v1), weight: 70 },
      { revisionName: rev(v2), weight: 30 },
    ];
    expect(await containerAppAdapter.recover(target(), ctx(), v1)).toMatchObject({
      outcome: 'restored',
      serving: v1,
      candidate: { version: '1.1.0', image: v2.image },
    });
    expect(traffic().at(-1)).toBe(`${rev(v1)}=100`);
    expect(await containerAppAdapter.status(target({ app: 'other' }), ctx())).toMatchObject({ deployed: false, health: 'not deployed' });
  });

  it('config: required fields and limits are checked with the field named', () => {
    const base = { type: 'containerapp', subscriptionId: SUB, resourceGroup: 'apps', location: 'westeurope', environment: 'prod-env' };
    expect(() => validateConfig({ targets: { aca: base } }, 'mlops.config.json')).not.toThrow();
    for (const [bad, field] of [
      [{ cpu: 8 }, 'cpu'],
      [{ memory: '1GB' }, 'memory'],
      [{ app: 'Bad_Name' }, 'app'],
      [{ secretEnv: { 'A-B': 'X' } }, 'secretEnv'],
      [{ registryIdentity: 'puller' }, 'registryIdentity'],
      [{ transport: 'grpc' }, 'transport'],
    ] as const) {
      expect(() => validateConfig({ targets: { aca: { ...base, ...bad } } }, 'mlops.config.json')).toThrow(`targets.aca.${field}`);
    }
  });
});
