/**
 * The Azure ML target: Microsoft's own SDK pointed at a local ARM stand-in (no subscription is
 * reachable here) that records each request and answers with ARM's long-running-operation
 * semantics; the scoring URI is a local HTTP server standing in for Azure ML's inference router.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { TARGET_DEFAULTS, type AzureMLTarget } from '../../src/config/defaults.js';
import { validateConfig } from '../../src/config/load.js';
import { isMlopsError } from '../../src/errors.js';
import { azureMLAdapter, deploymentName } from '../../src/targets/azureml.js';
import type { DeployContext } from '../../src/targets/types.js';
import { startFakeArm, type FakeArm } from './fake-arm.js';
import { missingRequired } from './arm-mappers.js';
import { goodAnswer, releases, targetContext } from './target-context.js';

const acr = 'acme.azurecr.io/team/bc';
const [v1, v2] = releases(acr);
const SUB = '00000000-1111-2222-3333-444444444444';
const WS = `/subscriptions/${SUB}/resourceGroups/ml/providers/Microsoft.MachineLearningServices/workspaces/ws`;
const ENDPOINT = `${WS}/onlineEndpoints/mlops-bc`;

let arm: FakeArm;
let scoring: Server;
let scoringUrl = '';
/** What the scoring route answers, and what it was sent. */
let answer: { status: number; body: unknown } = { status: 200, body: goodAnswer };
/** What every request after the first (the pre-traffic smoke) gets, when set: a deployment that breaks once live. */
let answerAfterFirst: { status: number; body: unknown } | undefined;
const scored: { headers: IncomingHttpHeaders; body: string }[] = [];

beforeAll(async () => {
  scoring = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const given = scored.length > 0 && answerAfterFirst ? answerAfterFirst : answer;
      scored.push({ headers: req.headers, body });
      res.writeHead(given.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(given.body));
    });
  });
  await new Promise<void>((r) => scoring.listen(0, '127.0.0.1', r));
  scoringUrl = `http://127.0.0.1:${(scoring.address() as AddressInfo).port}/score`;
});
afterAll(async () => {
  await new Promise((r) => scoring.close(r));
  await arm?.close();
});

beforeEach(async () => {
  await arm?.close();
  arm = await startFakeArm();
  arm.onPut(/onlineendpoints\/[^/]+$/, (resource) => {
    (resource.properties as Record<string, unknown>).scoringUri = scoringUrl;
  });
  arm.onAction('listKeys', () => ({ body: { primaryKey: 'primary-key', secondaryKey: 'secondary-key' } }));
  arm.onAction('token', () => ({ body: { accessToken: 'aml-token', expiryTimeUtc: 0 } }));
  arm.onAction('getLogs', () => ({ body: { content: 'server: listening on 8080\nerror: model failed to load' } }));
  answer = { status: 200, body: goodAnswer };
  answerAfterFirst = undefined;
  scored.length = 0;
});

const target = (over: Partial<AzureMLTarget> = {}): AzureMLTarget => ({
  ...TARGET_DEFAULTS.azureml,
  subscriptionId: SUB,
  resourceGroup: 'ml',
  workspace: 'ws',
  location: 'westeurope',
  armEndpoint: arm.url,
  waitIntervalSeconds: 0,
  ...over,
});
const ctx = (over: { dryRun?: boolean } = {}): DeployContext =>
  targetContext({
    ...over,
    azure: { credential: () => ({ getToken: async () => ({ token: 'test-token', expiresOnTimestamp: Date.now() + 3_600_000 }) }), ca: arm.ca },
  });

/** The endpoint as an earlier deploy of v1 left it: all traffic on v1's deployment. */
function seedServing() {
  const d1 = deploymentName(v1);
  arm.seed(ENDPOINT, {
    location: 'westeurope',
    identity: { type: 'SystemAssigned' },
    properties: { authMode: 'Key', traffic: { [d1]: 100 }, provisioningState: 'Succeeded', scoringUri: scoringUrl },
  });
  arm.seed(`${ENDPOINT}/deployments/${d1}`, {
    location: 'westeurope',
    tags: { 'mlops-version': '1.0.0', 'mlops-image': v1.image },
    sku: { name: 'Default', capacity: 1 },
    properties: { endpointComputeType: 'Managed', provisioningState: 'Succeeded' },
  });
  return d1;
}

const trafficPuts = () =>
  arm.requests
    .filter((r) => r.method === 'PUT' && r.path === ENDPOINT)
    .map((r) => {
      const p = (r.body as { properties: { traffic?: unknown; mirrorTraffic?: unknown } }).properties;
      return { traffic: p.traffic, ...(p.mirrorTraffic ? { mirror: p.mirrorTraffic } : {}), api: r.apiVersion };
    });

describe('azureml plan tests (the real SDK against a local ARM stand-in)', () => {
  it('first deploy: environment version, endpoint, deployment, a smoke request to that deployment alone, then all traffic', async () => {
    const d2 = deploymentName(v2);
    const outcome = await azureMLAdapter.deploy(target(), v2, null, ctx());
    expect(outcome).toMatchObject({ status: 'deployed', url: scoringUrl });
    expect(arm.writes()).toEqual([
      `PUT ${WS}/environments/mlops-bc/versions/${d2}`,
      `PUT ${ENDPOINT}`,
      `PUT ${ENDPOINT}/deployments/${d2}`,
      `POST ${ENDPOINT}/listKeys`,
      `PUT ${ENDPOINT}`,
    ]);
    expect(arm.requests.every((r) => r.headers.authorization === 'Bearer test-token')).toBe(true);
    const environment = arm.requests[1].body as { properties: Record<string, unknown> };
    expect(environment.properties).toMatchObject({
      image: v2.image,
      osType: 'Linux',
      inferenceConfig: {
        livenessRoute: { path: '/v2/health/live', port: 8080 },
        readinessRoute: { path: '/v2/health/ready', port: 8080 },
        scoringRoute: { path: '/v2/models/bc/infer', port: 8080 },
      },
    });
    const deployment = arm.requests.find((r) => r.method === 'PUT' && r.path.includes('/deployments/'))!.body as Record<string, unknown>;
    expect(deployment).toMatchObject({
      location: 'westeurope',
      sku: { name: 'Default', capacity: 1 },
      tags: { 'mlops-version': '1.1.0' },
      properties: {
        endpointComputeType: 'Managed',
        environmentId: `${WS}/environments/mlops-bc/versions/${d2}`,
        instanceType: 'Standard_DS3_v2',
        requestSettings: { requestTimeout: 'PT5S', maxConcurrentRequestsPerInstance: 1 },
        livenessProbe: { initialDelay: 'PT10S', period: 'PT10S', timeout: 'PT2S', failureThreshold: 30, successThreshold: 1 },
      },
    });
    expect(trafficPuts()).toEqual([
      { traffic: undefined, api: '2022-10-01' },
      { traffic: { [d2]: 100 }, api: '2022-10-01' },
    ]);
    expect(scored).toHaveLength(1);
    expect(scored[0].headers).toMatchObject({ authorization: 'Bearer primary-key', 'azureml-model-deployment': d2, 'content-type': 'application/json' });
    expect(JSON.parse(scored[0].body).inputs[0]).toMatchObject({ name: 'features', datatype: 'FP32', shape: [1, 30] });
  });

  it('every body the SDK sent names every field its API version requires', async () => {
    seedServing();
    await azureMLAdapter.deploy(target({ mirror: 10, canary: [20, 100] }), v2, v1, ctx());
    // The check itself finds what is missing.
    expect(await missingRequired('machinelearning', 'OnlineEndpoint', { location: 'westeurope', properties: {} })).toEqual(['properties.authMode']);
    const bodies = arm.requests.filter((r) => r.method === 'PUT');
    expect(bodies.length).toBeGreaterThan(3);
    for (const r of bodies) {
      const model = r.path.includes('/environments/') ? 'EnvironmentVersion' : r.path.includes('/deployments/') ? 'OnlineDeployment' : 'OnlineEndpoint';
      expect(await missingRequired('machinelearning', model, r.body), `${r.method} ${r.path}`).toEqual([]);
    }
  });

  it('update: mirror first, then the canary steps, each baked and checked; the old deployment goes at the end', async () => {
    const d1 = seedServing();
    const d2 = deploymentName(v2);
    const outcome = await azureMLAdapter.deploy(target({ mirror: 10, canary: [20, 50, 100], authMode: 'aml_token' }), v2, v1, ctx());
    expect(outcome).toMatchObject({ status: 'deployed', previous: v1 });
    expect(trafficPuts()).toEqual([
      { traffic: { [d1]: 100 }, mirror: { [d2]: 10 }, api: '2023-04-01' },
      { traffic: { [d1]: 80, [d2]: 20 }, mirror: {}, api: '2023-04-01' },
      { traffic: { [d1]: 50, [d2]: 50 }, api: '2022-10-01' },
      { traffic: { [d2]: 100 }, api: '2022-10-01' },
    ]);
    // The mirror is cleared when live traffic starts: Azure ML takes no deployment in both.
    expect(
      (arm.requests.filter((r) => r.method === 'PUT' && r.path === ENDPOINT)[1].body as { properties: { mirrorTraffic: unknown } }).properties.mirrorTraffic,
    ).toEqual({});
    expect(scored.map((s) => s.headers.authorization)).toEqual(Array(4).fill('Bearer aml-token'));
    expect(arm.writes().at(-1)).toBe(`DELETE ${ENDPOINT}/deployments/${d1}`);
    expect(arm.resources.has(`${ENDPOINT}/deployments/${d1}`.toLowerCase())).toBe(false);
  });

  it('a deployment that fails while mirrored: the mirror ends with the traffic put back, then the deployment goes', async () => {
    const d1 = seedServing();
    const d2 = deploymentName(v2);
    answerAfterFirst = { status: 500, body: { error: 'mirrored traffic broke it' } };
    const outcome = await azureMLAdapter.deploy(target({ mirror: 20, canary: [10, 100] }), v2, v1, ctx());
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'rollout-failed', restored: v1 });
    expect((outcome as { message: string }).message).toMatch(/^while mirrored: inference answered HTTP 500/);
    expect(trafficPuts()).toEqual([
      { traffic: { [d1]: 100 }, mirror: { [d2]: 20 }, api: '2023-04-01' },
      { traffic: { [d1]: 100 }, mirror: {}, api: '2023-04-01' },
    ]);
    expect(arm.writes().at(-1)).toBe(`DELETE ${ENDPOINT}/deployments/${d2}`);
  });

  it('a deployment that fails to provision is deleted and the traffic never moves: rolled back', async () => {
    const d1 = seedServing();
    const d2 = deploymentName(v2);
    arm.failNext(/\/deployments\/v1-1-0-/, { code: 'ImagePullFailure', message: 'Failed to pull image acme.azurecr.io/team/bc: unauthorized' });
    const outcome = await azureMLAdapter.deploy(target({ canary: [10, 100] }), v2, v1, ctx());
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'rollout-failed', restored: v1, logs: expect.stringContaining('model failed to load') });
    expect((outcome as { message: string }).message).toContain('ImagePullFailure');
    expect(trafficPuts()).toEqual([]);
    expect(arm.writes()).toContain(`DELETE ${ENDPOINT}/deployments/${d2}`);
    expect((arm.resources.get(ENDPOINT.toLowerCase())!.properties as { traffic: unknown }).traffic).toEqual({ [d1]: 100 });
  });

  it('a first deploy whose deployment fails to provision is a failure with nothing to restore, and no smoke request is sent', async () => {
    arm.failNext(/\/deployments\//, { code: 'ResourceNotReady', message: 'User container has crashed or terminated' });
    const outcome = await azureMLAdapter.deploy(target(), v2, null, ctx());
    expect(outcome).toMatchObject({ status: 'failed', reason: 'rollout-failed', restored: null });
    expect(scored).toEqual([]);
    expect(arm.writes().at(-1)).toBe(`DELETE ${ENDPOINT}/deployments/${deploymentName(v2)}`);
  });

  it('a failed smoke test deletes the new deployment before it takes traffic; on a first deploy nothing is restored', async () => {
    const d1 = seedServing();
    answer = { status: 500, body: { error: 'boom' } };
    const outcome = await azureMLAdapter.deploy(target(), v2, v1, ctx());
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'smoke-failure', restored: v1 });
    expect((outcome as { message: string }).message).toBe('inference answered HTTP 500: {"error":"boom"}');
    expect(trafficPuts()).toEqual([]);
    expect((arm.resources.get(ENDPOINT.toLowerCase())!.properties as { traffic: unknown }).traffic).toEqual({ [d1]: 100 });

    await arm.close();
    arm = await startFakeArm();
    arm.onPut(/onlineendpoints\/[^/]+$/, (resource) => ((resource.properties as Record<string, unknown>).scoringUri = scoringUrl));
    arm.onAction('listKeys', () => ({ body: { primaryKey: 'k' } }));
    arm.onAction('getLogs', () => ({ body: { content: '' } }));
    answer = { status: 200, body: { outputs: [{ name: 'probabilities', shape: [1, 2], data: [null, 1] }] } };
    expect(await azureMLAdapter.deploy(target(), v2, null, ctx())).toMatchObject({ status: 'failed', reason: 'smoke-failure', restored: null });
  });

  it('a redeploy of the serving release updates its deployment in place; a failed check never deletes what serves', async () => {
    const d1 = seedServing();
    expect(await azureMLAdapter.deploy(target({ canary: [10, 100] }), v1, v1, ctx())).toMatchObject({ status: 'deployed' });
    expect(trafficPuts().map((t) => t.traffic)).toEqual([{ [d1]: 100 }]);
    answer = { status: 500, body: { error: 'boom' } };
    expect(await azureMLAdapter.deploy(target(), v1, v1, ctx())).toMatchObject({ status: 'failed', reason: 'smoke-failure' });
    expect(arm.writes().filter((w) => w.startsWith('DELETE'))).toEqual([]);
    expect(arm.resources.has(`${ENDPOINT}/deployments/${d1}`.toLowerCase())).toBe(true);
  });

  it('a canary whose deployment stops answering during a step goes back to the old deployment, and the new one is deleted', async () => {
    const d1 = seedServing();
    const d2 = deploymentName(v2);
    // The scoring route answers the first (pre-traffic) smoke, then fails: the canary check catches it.
    answerAfterFirst = { status: 503, body: { error: 'upstream' } };
    const outcome = await azureMLAdapter.deploy(target({ canary: [10, 100] }), v2, v1, ctx());
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'rollout-failed', restored: v1 });
    expect((outcome as { message: string }).message).toBe('at 10% of traffic: inference answered HTTP 503: {"error":"upstream"}');
    expect(trafficPuts().map((t) => t.traffic)).toEqual([{ [d1]: 90, [d2]: 10 }, { [d1]: 100 }]);
    expect(arm.writes().at(-1)).toBe(`DELETE ${ENDPOINT}/deployments/${d2}`);
  });

  it('a canary whose deployment can no longer be read goes back too: an unmade check is no pass', async () => {
    const d1 = seedServing();
    const d2 = deploymentName(v2);
    arm.onAction('listKeys', () => {
      // After the first smoke request, reads of the new deployment are refused.
      arm.refuseReads(new RegExp(`/deployments/${d2}$`), 403);
      return { body: { primaryKey: 'primary-key' } };
    });
    const outcome = await azureMLAdapter.deploy(target({ canary: [10, 100] }), v2, v1, ctx());
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'rollout-failed', restored: v1 });
    expect((outcome as { message: string }).message).toMatch(/^at 10% of traffic: the deployment could not be checked: Azure refused/);
    expect(trafficPuts().map((t) => t.traffic)).toEqual([{ [d1]: 90, [d2]: 10 }, { [d1]: 100 }]);
  });

  it('an endpoint busy or Failed, or split by another rollout, is an environment error (exit 3) before anything is written', async () => {
    for (const [properties, expected] of [
      [{ authMode: 'Key', provisioningState: 'Updating', traffic: {} }, 'another change is under way'],
      [{ authMode: 'Key', provisioningState: 'Failed', traffic: {} }, 'is Failed'],
      [{ authMode: 'Key', provisioningState: 'Succeeded', traffic: { a: 50, b: 50 } }, 'splits its traffic over a, b'],
    ] as const) {
      arm.seed(ENDPOINT, { location: 'westeurope', properties });
      const before = arm.writes().length;
      const error = await azureMLAdapter.deploy(target(), v2, v1, ctx()).catch((e) => e);
      expect(isMlopsError(error) && error.exitCode).toBe(3);
      expect(error.message).toContain(expected);
      expect(arm.writes().length).toBe(before);
    }
  });

  it('ARM refusing the credential is exit 3 naming what to check', async () => {
    const refusing: DeployContext = {
      ...ctx(),
      azure: {
        credential: () => ({
          getToken: async () => {
            throw Object.assign(new Error('DefaultAzureCredential failed to retrieve a token from the included credentials.'), {
              name: 'CredentialUnavailableError',
            });
          },
        }),
        ca: arm.ca,
      },
    };
    const error = await azureMLAdapter.deploy(target(), v2, null, refusing).catch((e) => e);
    expect(isMlopsError(error) && error.exitCode).toBe(3);
    expect(error.hint).toContain('az login');
  });

  it('--dry-run records every ARM write with its body and sends nothing', async () => {
    const c = ctx({ dryRun: true });
    expect((await azureMLAdapter.deploy(target(), v2, null, c)).status).toBe('planned');
    expect(arm.requests).toEqual([]);
    const d2 = deploymentName(v2);
    expect(c.exec.steps.map((s) => s.command.replace(arm.url, 'ARM'))).toEqual([
      `PUT ARM${WS}/environments/mlops-bc/versions/${d2}?api-version=2022-10-01`,
      `PUT ARM${ENDPOINT}?api-version=2022-10-01`,
      `PUT ARM${ENDPOINT}/deployments/${d2}?api-version=2022-10-01`,
      `POST ARM${ENDPOINT}/listKeys?api-version=2022-10-01`,
      `PUT ARM${ENDPOINT}?api-version=2022-10-01`,
    ]);
    expect(JSON.parse(c.exec.steps[2].input!)).toMatchObject({ properties: { endpointComputeType: 'Managed', instanceType: 'Standard_DS3_v2' } });
  });

  it('status, history --rebuild and inference logs read what the endpoint serves', async () => {
    const d1 = seedServing();
    expect(await azureMLAdapter.status(target(), ctx())).toMatchObject({
      deployed: true,
      version: '1.0.0',
      image: v1.image,
      health: 'ready',
      url: scoringUrl,
      detail: { deployment: d1, traffic: { [d1]: 100 }, instances: 1 },
    });
    expect(await azureMLAdapter.recordedReleases(target(), ctx())).toEqual([{ version: '1.0.0', image: v1.image, at: null, serving: true }]);
    expect(await azureMLAdapter.inferenceLogs(target(), ctx(), undefined)).toEqual([
      { from: `Azure ML deployment ${d1}`, text: 'server: listening on 8080\nerror: model failed to load' },
    ]);
    await arm.close();
    arm = await startFakeArm();
    expect(await azureMLAdapter.status(target(), ctx())).toMatchObject({ deployed: false, health: 'not deployed' });
  });

  it("recover: a split left by a deploy that died goes back to the serving release's deployment; the other is deleted", async () => {
    const d1 = seedServing();
    arm.seed(ENDPOINT, {
      location: 'westeurope',
      identity: { type: 'SystemAssigned' },
      properties: { authMode: 'Key', traffic: { [d1]: 90, 'v1-1-0-abcdef': 10 }, provisioningState: 'Succeeded' },
    });
    arm.seed(`${ENDPOINT}/deployments/v1-1-0-abcdef`, {
      location: 'westeurope',
      tags: { 'mlops-version': '1.1.0', 'mlops-image': v2.image },
      properties: { endpointComputeType: 'Managed', provisioningState: 'Succeeded' },
    });
    const recovery = await azureMLAdapter.recover(target(), ctx(), v1);
    expect(recovery).toMatchObject({ outcome: 'restored', serving: v1, candidate: { version: '1.1.0', image: v2.image } });
    expect(trafficPuts().map((t) => t.traffic)).toEqual([{ [d1]: 100 }]);
    expect(arm.writes().at(-1)).toBe(`DELETE ${ENDPOINT}/deployments/v1-1-0-abcdef`);
    expect(await azureMLAdapter.recover(target(), ctx(), v1)).toBeNull();
  });

  it('config: required fields and limits are checked with the field named', () => {
    const base = { type: 'azureml', subscriptionId: SUB, resourceGroup: 'ml', workspace: 'ws', location: 'westeurope' };
    expect(() => validateConfig({ targets: { ml: base } }, 'mlops.config.json')).not.toThrow();
    for (const [bad, field] of [
      [{ subscriptionId: 'acme' }, 'subscriptionId'],
      [{ mirror: 60 }, 'mirror'],
      [{ endpoint: '1x' }, 'endpoint'],
      [{ armEndpoint: 'http://x' }, 'armEndpoint'],
      [{ authMode: 'aad' }, 'authMode'],
    ] as const) {
      expect(() => validateConfig({ targets: { ml: { ...base, ...bad } } }, 'mlops.config.json')).toThrow(`targets.ml.${field}`);
    }
    const { workspace: _omit, ...missing } = base;
    expect(() => validateConfig({ targets: { ml: missing } }, 'mlops.config.json')).toThrow('targets.ml.workspace');
  });
});
