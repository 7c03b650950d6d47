import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { TARGET_DEFAULTS, type VertexTarget } from '../../src/config/defaults.js';
import { recordsInLine } from '../../src/monitor/inference-records.js';
import { trafficSplit, vertexAdapter } from '../../src/targets/vertex.js';
import { scripted } from '../scripted-cli.js';
import { planArgv, releases, targetContext } from './target-context.js';

const run = promisify(execFile);
const ecr = '123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/bc';
const [v1, v2] = releases(ecr);
const ctx = targetContext;

describe('vertex plan tests (gcloud through the exec seam; no cloud account here)', () => {
  const target: VertexTarget = { ...TARGET_DEFAULTS.vertex, project: 'acme', region: 'europe-west4', canary: [10, 50, 100] };
  const base = '--project acme --region europe-west4';

  function project(options: { serving?: Record<string, number>; deployFails?: boolean; predict?: (deployedId: string) => unknown } = {}) {
    let newId = '';
    return scripted((line, args) => {
      if (line.includes('endpoints describe'))
        return options.serving
          ? {
              stdout: JSON.stringify({
                deployedModels: Object.keys(options.serving).map((id) => ({ id, model: `projects/acme/locations/europe-west4/models/old-${id}` })),
                trafficSplit: options.serving,
              }),
            }
          : { exitCode: 1, stderr: 'NOT_FOUND' };
      if (line.includes('models describe')) return { exitCode: 1, stderr: 'NOT_FOUND' };
      if (line.includes('deploy-model') && !line.includes('undeploy')) {
        newId = args.find((a) => a.startsWith('--deployed-model-id='))!.split('=')[1];
        return options.deployFails ? { exitCode: 1, stderr: 'ERROR: Model server never became ready.' } : {};
      }
      if (line.includes('endpoints predict'))
        return { stdout: JSON.stringify(options.predict?.(newId) ?? { predictions: [[0.25, 0.75]], deployedModelId: newId }) };
      if (line.includes('logging read')) return { stdout: 'model failed' };
      return {};
    });
  }

  it('first deploy: endpoint, model upload with the container routes, deploy with all traffic, smoke predict', async () => {
    const { runner, calls } = project();
    const outcome = await vertexAdapter.deploy(target, v2, null, ctx({ runner }));
    expect(outcome).toMatchObject({
      status: 'deployed',
      url: 'https://europe-west4-aiplatform.googleapis.com/v1/projects/acme/locations/europe-west4/endpoints/bc:predict',
    });
    const model = calls[3].match(/--model-id=(\S+)/)![1];
    expect(model).toMatch(/^bc-v1-1-0-[0-9a-f]{8}$/);
    const deployed = calls[4].match(/--deployed-model-id=(\d+)/)![1];
    expect(deployed).toMatch(/^\d{10}$/);
    expect(calls).toEqual([
      `gcloud ai endpoints describe bc ${base} --format=json`,
      `gcloud ai endpoints create ${base} --display-name=bc --endpoint-id=bc --labels=managed-by=mlops`,
      `gcloud ai models describe ${model} ${base} --format=json`,
      `gcloud ai models upload ${base} --model-id=${model} --display-name=${model} --container-image-uri=${v2.image} --container-ports=8080 --container-health-route=/v2/health/ready --container-predict-route=/v1/models/bc:predict --labels=mlops-version=1-1-0,managed-by=mlops`,
      `gcloud ai endpoints deploy-model bc ${base} --model=${model} --deployed-model-id=${deployed} --display-name=${model} --machine-type=n1-standard-2 --min-replica-count=1 --max-replica-count=3 --traffic-split=0=100`,
      expect.stringMatching(new RegExp(`^gcloud ai endpoints predict bc ${base} --json-request=\\S+request\\.json --format=json$`)),
    ]);
  });

  it('update: the new model takes 10%, then 50%, then all; the old one is undeployed', async () => {
    const { runner, calls } = project({ serving: { '111': 100 } });
    expect((await vertexAdapter.deploy(target, v2, v1, ctx({ runner }))).status).toBe('deployed');
    const deployed = calls.find((c) => c.includes('deploy-model'))!.match(/--deployed-model-id=(\d+)/)![1];
    expect(calls.find((c) => c.includes('deploy-model'))).toContain('--traffic-split=0=10,111=90');
    expect(calls.filter((c) => c.includes('endpoints update'))).toEqual([
      `gcloud ai endpoints update bc ${base} --traffic-split=${deployed}=50,111=50`,
      `gcloud ai endpoints update bc ${base} --traffic-split=${deployed}=100`,
    ]);
    expect(calls.at(-1)).toBe(`gcloud ai endpoints undeploy-model bc ${base} --deployed-model-id=111`);
  });

  it('a failed smoke test moves traffic back and undeploys the new model', async () => {
    const { runner, calls } = project({ serving: { '111': 100 }, predict: () => ({ predictions: [] }) });
    const outcome = await vertexAdapter.deploy(target, v2, v1, ctx({ runner }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'smoke-failure', restored: v1, logs: 'model failed' });
    expect((outcome as { message: string }).message).toContain('the answer has 0 predictions for 1 instances');
    const deployed = calls.find((c) => c.includes('deploy-model'))!.match(/--deployed-model-id=(\d+)/)![1];
    expect(calls.slice(-2)).toEqual([
      `gcloud ai endpoints update bc ${base} --traffic-split=111=100`,
      `gcloud ai endpoints undeploy-model bc ${base} --deployed-model-id=${deployed}`,
    ]);
  });

  it('a deploy-model that never becomes ready leaves the old traffic as it was', async () => {
    const { runner, calls } = project({ serving: { '111': 100 }, deployFails: true });
    const outcome = await vertexAdapter.deploy(target, v2, v1, ctx({ runner }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'health-timeout', restored: v1 });
    expect(calls.some((c) => c.includes('endpoints predict') || c.includes('undeploy-model'))).toBe(false);
    expect(calls.at(-1)).toBe(`gcloud ai endpoints update bc ${base} --traffic-split=111=100`);
  });

  it('a smoke test the new model never answered is a warning, not a failure', async () => {
    const logs: string[] = [];
    const { runner, calls } = project({ serving: { '111': 100 }, predict: () => ({ predictions: [[0.5, 0.5]], deployedModelId: '111' }) });
    expect((await vertexAdapter.deploy({ ...target, canary: [10, 100] }, v2, v1, ctx({ runner, logs }))).status).toBe('deployed');
    expect(calls.filter((c) => c.includes('endpoints predict'))).toHaveLength(10);
    expect(logs.some((l) => l.includes('none of 10 smoke predictions was served by the new model'))).toBe(true);
  });

  it('recover: a split left by a deploy that died goes back to the serving release, whose deployed model id it derives, and the rest is undeployed', async () => {
    // The deployed model ids a deploy of v1 would have used.
    const first = project();
    await vertexAdapter.deploy(target, v1, null, ctx({ runner: first.runner }));
    const servingId = first.calls.find((c) => c.includes('deploy-model'))!.match(/--deployed-model-id=(\d+)/)![1];
    const state = {
      deployedModels: [
        { id: servingId, displayName: 'bc-v1-0-0-x' },
        { id: '4242', displayName: 'bc-v1-1-0-y', model: 'projects/acme/locations/europe-west4/models/bc-v1-1-0-y' },
      ],
      trafficSplit: { [servingId]: 90, '4242': 10 },
    };
    const { runner, calls } = scripted(() => ({ stdout: JSON.stringify(state) }));
    const recovery = await vertexAdapter.recover(target, ctx({ runner }), v1);
    expect(recovery).toMatchObject({ candidate: { version: 'bc-v1-1-0-y' }, outcome: 'restored', serving: v1 });
    expect(calls.slice(1)).toEqual([
      `gcloud ai endpoints update bc ${base} --traffic-split=${servingId}=100`,
      `gcloud ai endpoints undeploy-model bc ${base} --deployed-model-id=4242`,
    ]);
    const alone = scripted(() => ({ stdout: JSON.stringify({ deployedModels: [{ id: servingId }], trafficSplit: { [servingId]: 100 } }) }));
    expect(await vertexAdapter.recover(target, ctx({ runner: alone.runner }), v1)).toBeNull();
  });

  it('splits what traffic is left over the old models in proportion', () => {
    expect(trafficSplit('0', 10, { a: 50, b: 50 })).toBe('0=10,a=45,b=45');
    expect(trafficSplit('0', 25, { a: 67, b: 33 })).toBe('0=25,a=51,b=24');
    expect(trafficSplit('n', 100, { a: 100 })).toBe('n=100');
  });
});

describe('inference logs from the managed targets, for mlops monitor --labels', () => {
  const record = (id: string) =>
    JSON.stringify({
      type: 'mlops.inference',
      id,
      row: 0,
      rows: 1,
      time: '2026-11-22T10:00:00Z',
      model: { name: 'bc', version: '1', sha256: 'f'.repeat(64) },
      outputs: [],
    });

  it("vertex: the records Cloud Logging parsed from the endpoint's stdout", async () => {
    const { runner, calls } = scripted(() => ({ stdout: JSON.stringify([{ jsonPayload: JSON.parse(record('x')) }]) }));
    const logs = await vertexAdapter.inferenceLogs({ ...TARGET_DEFAULTS.vertex, project: 'acme', region: 'europe-west4' }, ctx({ runner }), undefined);
    expect(calls[0]).toContain('resource.type="aiplatform.googleapis.com/Endpoint" AND resource.labels.endpoint_id="bc"');
    expect(
      logs[0].text
        .split('\n')
        .flatMap(recordsInLine)
        .map((r) => r.id),
    ).toEqual(['x']);
  });
});

/** The real gcloud parses every planned command, then stops where it would need an account or the network. */
const gcloudInstalled = await run('sh', ['-c', 'command -v gcloud']).then(
  () => true,
  () => false,
);

describe.skipIf(!gcloudInstalled)(
  `gcloud accepts every planned command${gcloudInstalled ? '' : ' (skipped: gcloud is not installed; Debian does not package it)'}`,
  () => {
    it('parses each one and stops only for want of an account', async () => {
      const target: VertexTarget = {
        ...TARGET_DEFAULTS.vertex,
        project: 'acme',
        region: 'europe-west4',
        canary: [10, 50, 100],
        serviceAccount: 'ml@acme.iam.gserviceaccount.com',
      };
      const steps = [
        ...(await planArgv((c) => vertexAdapter.deploy(target, v2, v1, c))),
        ...(await planArgv((c) => vertexAdapter.inferenceLogs(target, c, undefined))),
      ];
      const config = await mkdtemp(path.join(tmpdir(), 'mlops-gcloud-check-'));
      try {
        const env = { ...process.env, CLOUDSDK_CONFIG: config, CLOUDSDK_CORE_DISABLE_PROMPTS: '1', CLOUDSDK_CORE_CHECK_GCE_METADATA: 'false' };
        for (const args of steps) {
          const result = await run('gcloud', args, { env, timeout: 60_000 }).then(
            () => ({ stderr: '' }),
            (e) => ({ stderr: String(e.stderr) }),
          );
          expect(result.stderr, `gcloud ${args.join(' ')}`).toMatch(/You do not currently have an active account selected/);
        }
      } finally {
        await rm(config, { recursive: true, force: true });
      }
    }, 120_000);
  },
);
