import Docker from 'dockerode';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tar from 'tar-fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { remotePredictor } from '../../src/predict/predictor.js';
import { fixture, runCli } from '../helpers.js';
import { ensureLocalBaseImage, probeEngine, uniqueName } from './docker.js';
import { freePort } from './registry-process.js';

const engine = await probeEngine();
const REPOSITORY = 'mlops-e2e-deploy/bc';
/** Unique to this run: the clean-up removes only what this file made, never a user's mlops-bc-dev. */
const CONTAINER = uniqueName('deploy');

/** A variant of an image: same layers, one Dockerfile line more. */
async function variant(docker: Docker, from: string, line: string, tag: string): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mlops-variant-'));
  await writeFile(path.join(dir, 'Dockerfile'), `FROM ${from}\n${line}\n`);
  const stream = await docker.buildImage(tar.pack(dir) as unknown as NodeJS.ReadableStream, { t: tag });
  await new Promise((resolve, reject) => docker.modem.followProgress(stream, (e: Error | null, out: unknown) => (e ? reject(e) : resolve(out))));
  await rm(dir, { recursive: true, force: true });
}

describe.skipIf(!engine.ok)(`deploy to the local target with automatic rollback${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let dir: string;
  let url: string;
  let grpcPort: number;
  const served = async () => {
    const res = await fetch(`${url}/v2/models/bc`);
    return res.ok ? ((await res.json()) as { outputs: { name: string }[] }).outputs[0].name : `HTTP ${res.status}`;
  };
  const deploy = (...args: string[]) => runCli(['deploy', ...args, '--target', 'dev', '--json'], { cwd: dir });

  beforeAll(async () => {
    const base = await ensureLocalBaseImage(docker);
    dir = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-deploy-'));
    const port = await freePort();
    grpcPort = await freePort();
    url = `http://127.0.0.1:${port}`;
    await writeFile(
      path.join(dir, 'mlops.config.json'),
      JSON.stringify({
        model: { path: 'model.onnx', name: 'bc' },
        image: { repository: REPOSITORY, base },
        targets: { dev: { type: 'local', containerName: CONTAINER, port, grpcPort, readyTimeoutSeconds: 6, restart: 'on-failure' } },
      }),
    );
    // v1 is the breast cancer model; v2 the wine model under the same name.
    for (const [model, version] of [
      ['breast_cancer', '1.0.0'],
      ['wine', '2.0.0'],
    ]) {
      await copyFile(fixture(model, 'model.onnx'), path.join(dir, 'model.onnx'));
      expect((await runCli(['build'], { cwd: dir })).code).toBe(0);
      expect((await runCli(['tag', version], { cwd: dir })).code).toBe(0);
    }
    const v1 = `${REPOSITORY}:1.0.0`;
    await variant(docker, v1, `ENV MLOPS_MODEL_SHA256=${'0'.repeat(64)}`, `${REPOSITORY}:3.0.0-crash`);
    await variant(docker, v1, 'ENTRYPOINT ["node", "-e", "setInterval(() => {}, 1000)"]', `${REPOSITORY}:3.0.0-hang`);
    await variant(docker, v1, 'ENV MLOPS_MODEL_NAME=other', `${REPOSITORY}:3.0.0-errors`);
  });

  afterAll(async () => {
    for (const c of await docker.listContainers({ all: true, filters: { name: [CONTAINER] } })) await docker.getContainer(c.Id).remove({ force: true });
    for (const image of await docker.listImages({ filters: { reference: [`${REPOSITORY}*`] } }))
      await docker
        .getImage(image.Id)
        .remove({ force: true })
        .catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('deploys v1, replaces it with v2, and rolls back to v1', async () => {
    const first = await deploy('1.0.0');
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout).outcome).toMatchObject({ status: 'deployed', url });
    expect(await served()).toBe('probabilities');
    // gRPC is published beside REST.
    const viaGrpc = await remotePredictor({ url: `grpc://127.0.0.1:${grpcPort}` });
    expect(viaGrpc.outputs.map((o) => o.name)).toEqual(['probabilities']);
    await viaGrpc.close();

    expect((await deploy('2.0.0')).code).toBe(0);
    expect(await served()).toBe('logits');
    const status = JSON.parse((await runCli(['status', '--target', 'dev', '--json'], { cwd: dir })).stdout);
    expect(status).toMatchObject({ version: '2.0.0', health: 'ready', url, deployed: true });
    expect(status.detail.uptimeSeconds).toBeGreaterThanOrEqual(0);

    const back = await runCli(['rollback', '--target', 'dev', '--json'], { cwd: dir });
    expect(back.code, back.stderr).toBe(0);
    expect(JSON.parse(back.stdout)).toMatchObject({ action: 'rollback', outcome: { status: 'deployed', release: { version: '1.0.0' } } });
    expect(await served()).toBe('probabilities');
    expect((await docker.listContainers({ all: true, filters: { name: [CONTAINER] } })).length).toBe(1);
  });

  for (const [tag, reason] of [
    ['3.0.0-crash', 'crash-loop'],
    ['3.0.0-hang', 'health-timeout'],
    ['3.0.0-errors', 'smoke-failure'],
  ]) {
    it(`rolls back by itself when the new version fails: ${reason}`, async () => {
      const { code, stdout } = await deploy(tag);
      expect(code).toBe(4);
      const { outcome } = JSON.parse(stdout);
      expect(outcome).toMatchObject({ status: 'rolled-back', reason, restored: { version: '1.0.0' } });
      if (reason === 'crash-loop') expect(outcome.logs).toContain('refusing to serve a different model');
      expect(await served()).toBe('probabilities');
      const containers = await docker.listContainers({ all: true, filters: { name: [CONTAINER] } });
      expect(containers.map((c) => c.Labels['mlops.release.version'])).toEqual(['1.0.0']);
    });
  }

  it('records every deploy and rollback in the history, and --dry-run changes nothing', async () => {
    const history = JSON.parse((await runCli(['history', '--target', 'dev', '--json'], { cwd: dir })).stdout);
    expect(history.entries.map((e: { action: string; version: string; outcome: string }) => `${e.action} ${e.version} ${e.outcome}`)).toEqual([
      'deploy 1.0.0 deployed',
      'deploy 2.0.0 deployed',
      'rollback 1.0.0 deployed',
      'deploy 3.0.0-crash rolled-back',
      'deploy 3.0.0-hang rolled-back',
      'deploy 3.0.0-errors rolled-back',
    ]);
    const planned = await deploy('2.0.0', '--dry-run');
    expect(planned.code).toBe(0);
    expect(JSON.parse(planned.stdout).outcome.status).toBe('planned');
    expect(await served()).toBe('probabilities');
  });
});
