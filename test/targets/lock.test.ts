/** src/targets/lock.ts, and the lock each platform has of its own, with the recovery of a rollout a killed deploy left. */
import { hostname } from 'node:os';
import { defaultAzureSeam } from '../../src/targets/azure.js';
import path from 'node:path';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { TARGET_DEFAULTS, type CloudRunTarget, type KubernetesTarget } from '../../src/config/defaults.js';
import { applyDefaults } from '../../src/config/normalize.js';
import { isMlopsError } from '../../src/errors.js';
import { cloudRunAdapter } from '../../src/targets/cloudrun.js';
import { createExecSeam, type Runner } from '../../src/targets/exec.js';
import { kserveAdapter } from '../../src/targets/kserve.js';
import { kubernetesAdapter } from '../../src/targets/kubernetes.js';
import { acquireLock, fileLock, thisProcess, type LockHolder } from '../../src/targets/lock.js';
import { configuredSampleInputs } from '../../src/targets/smoke.js';
import type { DeployContext, Release } from '../../src/targets/types.js';
import { withTempDir } from '../helpers.js';
import { scripted } from '../scripted-cli.js';

const v1: Release = {
  version: '1.0.0',
  image: '127.0.0.1:5000/team/bc@sha256:' + 'a'.repeat(64),
  digest: 'sha256:' + 'a'.repeat(64),
  modelName: 'bc',
  modelSha256: 'f'.repeat(64),
};
const v2: Release = { ...v1, version: '1.1.0', image: '127.0.0.1:5000/team/bc@sha256:' + 'b'.repeat(64) };

function ctx(runner: Runner, projectDir = '/tmp'): DeployContext {
  return {
    targetName: 'prod',
    config: applyDefaults({ model: { name: 'bc' } }),
    projectDir,
    env: {},
    exec: createExecSeam({ dryRun: false, runner }),
    azure: defaultAzureSeam,
    dryRun: false,
    log: () => undefined,
    sampleInputs: configuredSampleInputs(applyDefaults({}), '/tmp'),
    smoke: async () => undefined,
    checkpoint: () => undefined,
  };
}

/** A pid no process has: the holder of a lock left by a process that died. */
const deadHolder = (): LockHolder => ({ pid: 2 ** 22 + 12345, host: hostname(), command: 'mlops deploy 0.9.0', since: '2026-11-23T00:00:00.000Z' });

describe('the lock file (targets whose platform has no lock)', () => {
  it("is taken once; a second taker is told who holds it; a dead holder's lock is taken over", async () => {
    await withTempDir(async (dir) => {
      const first = await fileLock(dir, 'prod', thisProcess('mlops deploy 1.0.0'));
      expect('release' in first).toBe(true);
      const second = await fileLock(dir, 'prod', thisProcess('mlops deploy 2.0.0'));
      expect(second).toMatchObject({ holder: { command: 'mlops deploy 1.0.0', pid: process.pid } });
      if ('release' in first) await first.release();
      expect('release' in (await fileLock(dir, 'prod', thisProcess('mlops deploy 2.0.0')))).toBe(true);

      await mkdir(path.join(dir, '.mlops', 'locks'), { recursive: true });
      await writeFile(path.join(dir, '.mlops', 'locks', 'other.lock'), JSON.stringify(deadHolder()));
      const taken = await fileLock(dir, 'other', thisProcess('mlops deploy 3.0.0'));
      expect('release' in taken).toBe(true);
      expect(JSON.parse(await readFile(path.join(dir, '.mlops', 'locks', 'other.lock'), 'utf8'))).toMatchObject({ command: 'mlops deploy 3.0.0' });
    });
  });

  it('has exactly one holder when eight ask at once: a lock file not yet written is not taken for stale', async () => {
    await withTempDir(async (dir) => {
      const winnersPerRound: number[] = [];
      for (let round = 0; round < 40; round++) {
        const attempts = await Promise.all(Array.from({ length: 8 }, () => fileLock(dir, 'prod', thisProcess('mlops deploy 1.0.0'))));
        const held = attempts.filter((a) => 'release' in a);
        winnersPerRound.push(held.length);
        for (const lock of held) await lock.release();
      }
      expect(winnersPerRound).toEqual(Array(40).fill(1));
    });
  });

  it('a holder on another host is never judged stale: its process cannot be asked', async () => {
    await withTempDir(async (dir) => {
      await mkdir(path.join(dir, '.mlops', 'locks'), { recursive: true });
      await writeFile(path.join(dir, '.mlops', 'locks', 'prod.lock'), JSON.stringify({ ...deadHolder(), host: 'ci-runner-7' }));
      expect(await fileLock(dir, 'prod', thisProcess('mlops deploy 1.0.0'))).toMatchObject({ holder: { host: 'ci-runner-7' } });
    });
  });

  it('waits up to the timeout, then fails with exit 3 and one line naming the holder', async () => {
    const holder = { pid: 4242, host: 'ci-runner-7', command: 'mlops deploy 1.0.3', since: '2026-11-23T01:00:00.000Z' };
    let tries = 0;
    const started = Date.now();
    const error = await acquireLock(
      'dev',
      async () => (tries++, { holder }),
      0.3,
      () => undefined,
    ).catch((e) => e);
    expect(isMlopsError(error) && error.exitCode).toBe(3);
    expect(error.message).toBe("target 'dev' is locked by mlops deploy 1.0.3 (pid 4242 on ci-runner-7, since 2026-11-23T01:00:00.000Z)");
    expect(tries).toBeGreaterThan(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    const once = await acquireLock(
      'dev',
      async () => ({ holder }),
      0,
      () => undefined,
    ).catch((e) => e);
    expect(once.hint).toContain('--lock-timeout');
  });
});

describe('kubernetes: a Lease as the lock, and recovery of an interrupted rollout (kubectl through the exec seam)', () => {
  const k8s: KubernetesTarget = { ...TARGET_DEFAULTS.kubernetes, context: 'prod-cluster', namespace: 'ml' };
  const base = '--context prod-cluster --namespace ml';
  const lease = (holder: LockHolder, renewTime: string) =>
    JSON.stringify({ metadata: { resourceVersion: '812' }, spec: { holderIdentity: JSON.stringify(holder), leaseDurationSeconds: 900, renewTime } });

  it('creates the Lease; the API server refusing a second create names the holder', async () => {
    const { runner, calls, inputs } = scripted(() => ({}));
    const taken = await kubernetesAdapter.lock(k8s, ctx(runner), thisProcess('mlops deploy 1.1.0'));
    expect(calls).toEqual([`kubectl ${base} create -f -`]);
    const manifest = JSON.parse(inputs[0]);
    expect(manifest).toMatchObject({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'mlops-deploy-bc', namespace: 'ml' },
      spec: { leaseDurationSeconds: 900 },
    });
    expect(JSON.parse(manifest.spec.holderIdentity)).toMatchObject({ command: 'mlops deploy 1.1.0', pid: process.pid });
    expect(manifest.spec.renewTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    if ('release' in taken) await taken.release();
    expect(calls.at(-1)).toBe(`kubectl ${base} delete lease mlops-deploy-bc --ignore-not-found`);

    const holder = { pid: 7, host: 'ci-runner-7', command: 'mlops deploy 1.0.3', since: '2026-11-23T01:00:00.000Z' };
    const held = scripted((line) =>
      line.includes('create')
        ? { exitCode: 1, stderr: 'Error from server (AlreadyExists): leases.coordination.k8s.io "mlops-deploy-bc" already exists' }
        : { stdout: lease(holder, new Date().toISOString()) },
    );
    expect(await kubernetesAdapter.lock(k8s, ctx(held.runner), thisProcess('mlops deploy 1.1.0'))).toEqual({ holder });
    expect(held.calls).toEqual([`kubectl ${base} create -f -`, `kubectl ${base} get lease mlops-deploy-bc -o json`]);
  });

  it('kserve takes the same Lease, named for its InferenceService', async () => {
    const { runner, calls, inputs } = scripted(() => ({}));
    const kserve = { ...TARGET_DEFAULTS.kserve, namespace: 'models', canary: [20, 100] };
    expect('release' in (await kserveAdapter.lock(kserve, ctx(runner), thisProcess('mlops deploy 1.1.0')))).toBe(true);
    expect(calls).toEqual(['kubectl --namespace models create -f -']);
    expect(JSON.parse(inputs[0])).toMatchObject({
      kind: 'Lease',
      metadata: { name: 'mlops-deploy-bc', namespace: 'models' },
      spec: { leaseDurationSeconds: 600 * 3 + 300 },
    });
  });

  it('takes over an expired Lease, or one whose holder died on this host, with replace at the resourceVersion read', async () => {
    for (const [holder, renewTime] of [
      [{ pid: 7, host: 'ci-runner-7', command: 'mlops deploy 1.0.3', since: '' }, '2026-11-01T00:00:00.000000Z'],
      [deadHolder(), new Date().toISOString()],
    ] as const) {
      const { runner, calls, inputs } = scripted((line) =>
        line.includes('create') ? { exitCode: 1, stderr: 'AlreadyExists' } : line.includes('get lease') ? { stdout: lease(holder, renewTime) } : {},
      );
      const taken = await kubernetesAdapter.lock(k8s, ctx(runner), thisProcess('mlops deploy 1.1.0'));
      expect('release' in taken).toBe(true);
      expect(calls.at(-1)).toBe(`kubectl ${base} replace -f -`);
      expect(JSON.parse(inputs.at(-1)!).metadata.resourceVersion).toBe('812');
    }
    // Someone else replaced it first: the resourceVersion no longer matches, and theirs it stays.
    const lost = scripted((line) =>
      line.includes('create')
        ? { exitCode: 1, stderr: 'AlreadyExists' }
        : line.includes('get lease')
          ? { stdout: lease(deadHolder(), new Date().toISOString()) }
          : { exitCode: 1, stderr: 'Conflict' },
    );
    expect(await kubernetesAdapter.lock(k8s, ctx(lost.runner), thisProcess('mlops deploy 1.1.0'))).toHaveProperty('holder');
  });

  it('a Deployment running an image no completed deploy recorded is put back to the serving release and rolled out', async () => {
    const deployment = { metadata: { labels: { 'app.kubernetes.io/version': '1.1.0' }, annotations: { 'mlops.image': v2.image } } };
    const { runner, calls, inputs } = scripted((line) => (line.includes('get deployment') ? { stdout: JSON.stringify(deployment) } : {}));
    const recovery = await kubernetesAdapter.recover(k8s, ctx(runner), v1);
    expect(recovery).toMatchObject({ candidate: { version: '1.1.0', image: v2.image }, outcome: 'restored', serving: v1 });
    expect(calls).toEqual([
      `kubectl ${base} get deployment bc -o json`,
      `kubectl ${base} apply -f -`,
      `kubectl ${base} rollout status deployment/bc --timeout=300s`,
    ]);
    expect(inputs[0]).toContain(`image: ${v1.image}`);
    // What the history says serves is what runs: nothing to do.
    const clean = scripted(() => ({ stdout: JSON.stringify({ metadata: { annotations: { 'mlops.image': v1.image } } }) }));
    expect(await kubernetesAdapter.recover(k8s, ctx(clean.runner), v1)).toBeNull();
    expect(clean.calls).toHaveLength(1);
  });
});

describe('kserve: recovery of an interrupted deploy (kubectl through the exec seam)', () => {
  it('an InferenceService on an image no completed deploy recorded gets the serving release applied again, and is waited for', async () => {
    const kserve = { ...TARGET_DEFAULTS.kserve, namespace: 'models' };
    let generation = 4;
    const { runner, calls, inputs } = scripted((line) => {
      if (line.includes('apply')) return { stdout: JSON.stringify({ metadata: { generation: ++generation } }) };
      return {
        stdout: JSON.stringify({
          metadata: { generation, annotations: { 'mlops.image': v2.image, 'mlops.version': '1.1.0' } },
          spec: { predictor: { canaryTrafficPercent: 20 } },
          status: { observedGeneration: generation, conditions: [{ type: 'Ready', status: 'True' }] },
        }),
      };
    });
    const recovery = await kserveAdapter.recover(kserve, ctx(runner), v1);
    expect(recovery).toMatchObject({ candidate: { version: '1.1.0', image: v2.image }, outcome: 'restored', serving: v1 });
    expect(calls).toEqual([
      'kubectl --namespace models get inferenceservice bc -o json',
      'kubectl --namespace models apply -f - -o json',
      'kubectl --namespace models get inferenceservice bc -o json',
    ]);
    expect(inputs[0]).toContain(`image: ${v1.image}`);
    expect(inputs[0]).not.toContain('canaryTrafficPercent');
    const clean = scripted(() => ({ stdout: JSON.stringify({ metadata: { annotations: { 'mlops.image': v1.image } } }) }));
    expect(await kserveAdapter.recover(kserve, ctx(clean.runner), v1)).toBeNull();
  });
});

describe('cloudrun: best-effort lock and recovery of an interrupted canary (gcloud through the exec seam)', () => {
  const run: CloudRunTarget = { ...TARGET_DEFAULTS.cloudrun, project: 'acme', region: 'europe-west1', canary: [10, 50, 100] };
  const base = '--project acme --region europe-west1';

  it("traffic left split by a canary that died goes back to the serving version's tag", async () => {
    const split = {
      status: {
        traffic: [
          { revisionName: 'bc-00001', percent: 90, tag: 'v1-0-0' },
          { revisionName: 'bc-00002', percent: 10, tag: 'v1-1-0' },
        ],
      },
    };
    const { runner, calls } = scripted(() => ({ stdout: JSON.stringify(split) }));
    const recovery = await cloudRunAdapter.recover(run, ctx(runner), v1);
    expect(recovery).toMatchObject({ candidate: { version: '1-1-0' }, outcome: 'restored', serving: v1 });
    expect(calls).toEqual([
      `gcloud run services describe bc ${base} --format=json`,
      `gcloud run services update-traffic bc ${base} --to-tags=v1-0-0=100 --quiet`,
    ]);
    const whole = scripted(() => ({ stdout: JSON.stringify({ status: { traffic: [{ revisionName: 'bc-00001', percent: 100, tag: 'v1-0-0' }] } }) }));
    expect(await cloudRunAdapter.recover(run, ctx(whole.runner), v1)).toBeNull();
  });

  it('locks with a file in the project', async () => {
    await withTempDir(async (dir) => {
      const { runner } = scripted(() => ({}));
      const first = await cloudRunAdapter.lock(run, ctx(runner, dir), thisProcess('mlops deploy 1.1.0'));
      expect('release' in first).toBe(true);
      expect(await cloudRunAdapter.lock(run, ctx(runner, dir), thisProcess('mlops deploy 1.2.0'))).toMatchObject({ holder: { command: 'mlops deploy 1.1.0' } });
    });
  });
});
