import { copyFile, stat, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import tar from 'tar-fs';
import tarStream from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../src/model/session.js';
import { remotePredictor } from '../../src/predict/predictor.js';
import { fixture, lines, ROOT, runCli, withTempDir } from '../helpers.js';
import { ensureLocalBaseImage, probeEngine, runImage, waitFor } from './docker.js';

const engine = await probeEngine();
const REPOSITORY = 'mlops-e2e-build';

describe.skipIf(!engine.ok)(`mlops build against a real Docker engine${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let base: string;
  let project: string;

  beforeAll(async () => {
    base = await ensureLocalBaseImage(docker);
    // A project folder that is a git repository, so the revision label can be checked.
    project = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-build-'));
    await copyFile(fixture('breast_cancer', 'model.onnx'), path.join(project, 'model.onnx'));
    await writeFile(
      path.join(project, 'mlops.config.json'),
      JSON.stringify({ model: { path: 'model.onnx', name: 'bc', version: '1.2.0' }, image: { repository: REPOSITORY, base } }),
    );
    const git = (...args: string[]) => execFileSync('git', args, { cwd: project, stdio: 'ignore' });
    git('init', '-q');
    git('-c', 'user.email=t@example.com', '-c', 'user.name=t', 'commit', '-q', '--allow-empty', '-m', 'init');
    git('remote', 'add', 'origin', 'https://ci-bot:token@git.example.com/team/models.git');
  });

  afterAll(async () => {
    const images = await docker.listImages({ filters: { reference: [`${REPOSITORY}*`] } });
    for (const image of images)
      await docker
        .getImage(image.Id)
        .remove({ force: true })
        .catch(() => undefined);
    await rm(project, { recursive: true, force: true });
  });

  it('builds a small, labelled, non-root image that serves the model like in-process ONNX Runtime', async () => {
    const { code, stdout, stderr } = await runCli(['build', '--tag', 'e2e', '--json'], { cwd: project });
    expect(code, stderr).toBe(0);
    const result = JSON.parse(stdout);
    const sha = (await loadModel({ path: path.join(project, 'model.onnx') })).info.sha256;
    expect(result.tags).toEqual([`${REPOSITORY}:sha-${sha.slice(0, 12)}`, `${REPOSITORY}:e2e`]);
    expect(result).toMatchObject({ baseImage: base, platform: 'linux/amd64' });
    expect(result.sizeBytes).toBeGreaterThan(0);
    expect(typeof result.seconds).toBe('number');
    const record = JSON.parse(await readFile(path.join(project, '.mlops/last-build.json'), 'utf8'));
    expect(record.imageId).toBe(result.imageId);

    const image = await docker.getImage(result.imageId).inspect();
    expect(image.Config.User).toBe('10001:10001');
    expect((image.Config as { StopSignal?: string }).StopSignal).toBe('SIGTERM');
    expect(image.Config.Healthcheck?.Test).toEqual(['CMD', 'node', '/app/healthcheck.mjs']);
    expect(Object.keys(image.Config.ExposedPorts ?? {}).sort()).toEqual(['8080/tcp', '8081/tcp']);
    const labels = image.Config.Labels;
    const revision = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: project, encoding: 'utf8' }).trim();
    expect(labels).toMatchObject({
      'org.opencontainers.image.title': 'bc',
      'org.opencontainers.image.version': '1.2.0',
      'org.opencontainers.image.revision': revision,
      'mlops.model.name': 'bc',
      'mlops.model.sha256': sha,
    });
    expect(Date.parse(labels['org.opencontainers.image.created'])).not.toBeNaN();
    // The remote as a URL, its credentials stripped (labels are public).
    expect(labels['org.opencontainers.image.source']).toBe('https://git.example.com/team/models.git');
    // ONNX Runtime's telemetry is off in every image.
    expect(image.Config.Env).toContain('ORT_DISABLE_TELEMETRY=1');
    expect(labels['mlops.version']).toMatch(/^\d+\.\d+\.\d+/);
    // Symbolic dimension names go along, so sample requests size a shared batch together.
    expect(JSON.parse(labels['mlops.model.inputs'])).toEqual([{ name: 'features', datatype: 'FP32', shape: [-1, 30], dims: ['batch', 30] }]);
    expect(JSON.parse(labels['mlops.model.outputs'])).toEqual([{ name: 'probabilities', datatype: 'FP32', shape: [-1, 2], dims: ['batch', 2] }]);

    const running = await runImage(docker, result.imageId);
    try {
      await waitFor(async () => (await running.container.inspect()).State.Health?.Status === 'healthy', 30_000, 'the health check to pass');
      const top = await running.container.top({ ps_args: '-o pid,uid,comm' });
      const uid = top.Titles.indexOf('UID');
      expect(top.Processes.map((p: string[]) => p[uid])).toEqual(['10001']);
      const rows = (await readFile(fixture('breast_cancer', 'holdout.csv'), 'utf8'))
        .trim()
        .split('\n')
        .slice(1, 21)
        .map((r) => r.split(',').slice(0, -1).map(Number));
      const res = await fetch(`${running.url}/v2/models/bc/infer`, {
        method: 'POST',
        body: JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [rows.length, 30], data: rows }] }),
      });
      expect(res.status).toBe(200);
      const remote = ((await res.json()) as { outputs: { data: number[] }[] }).outputs[0].data;
      const model = await loadModel({ path: fixture('breast_cancer', 'model.onnx') });
      const local = await model.run({ features: { data: Float32Array.from(rows.flat()), dims: [rows.length, 30] } });
      expect(remote).toEqual(Array.from(local.probabilities.data as Float32Array));
      await model.release();
      // The same answer over gRPC, from the bundled server's own proto, with grpc.health.v1 serving.
      const predictor = await remotePredictor({ url: running.url, grpcAddress: running.grpcAddress, protocol: 'grpc' });
      try {
        expect(predictor.modelName).toBe('bc');
        const viaGrpc = await predictor.predict({ features: { data: Float32Array.from(rows.flat()), dims: [rows.length, 30] } });
        expect(Array.from(viaGrpc.probabilities.data as Float32Array)).toEqual(remote);
      } finally {
        await predictor.close();
      }
    } finally {
      await running.remove();
    }
  });

  it('`npm run local-base` makes a base image where none can be pulled, and prints its name for image.base', async () => {
    const made = execFileSync(process.execPath, [path.join(ROOT, 'scripts/local-base.js')], { encoding: 'utf8' }).trim();
    expect(made).toBe(`mlops-local-base:node${process.versions.node}`);
    const image = await docker.getImage(made).inspect();
    expect(image.Config.Env).toContain('PATH=/usr/local/bin:/usr/bin:/bin');
    // What the builds above ran on.
    expect(base).toBe(made);
  });

  it('is reproducible: an unchanged model rebuilds to the same image id, its created time from SOURCE_DATE_EPOCH or the model', async () => {
    const first = JSON.parse((await runCli(['build', '--json'], { cwd: project })).stdout);
    const again = JSON.parse((await runCli(['build', '--json'], { cwd: project })).stdout);
    expect(again.imageId).toBe(first.imageId);
    const created = (await docker.getImage(first.imageId).inspect()).Config.Labels['org.opencontainers.image.created'];
    expect(created).toBe((await stat(path.join(project, 'model.onnx'))).mtime.toISOString());
    const pinned = await runCli(['build', '--json'], { cwd: project, env: { SOURCE_DATE_EPOCH: '86400' } });
    expect(pinned.code, pinned.stderr).toBe(0);
    const image = await docker.getImage(JSON.parse(pinned.stdout).imageId).inspect();
    expect(image.Config.Labels['org.opencontainers.image.created']).toBe('1970-01-02T00:00:00.000Z');
  });

  it('rebuilds only the model layer when only the model changed', async () => {
    const first = JSON.parse((await runCli(['build', '--json'], { cwd: project })).stdout);
    await copyFile(fixture('wine', 'model.onnx'), path.join(project, 'other.onnx'));
    const second = await runCli(['build', '--model', 'other.onnx', '--json'], { cwd: project });
    expect(second.code, second.stderr).toBe(0);
    const a = (await docker.getImage(first.imageId).inspect()).RootFS.Layers ?? [];
    const b = (await docker.getImage(JSON.parse(second.stdout).imageId).inspect()).RootFS.Layers ?? [];
    expect(b.length).toBe(a.length);
    expect(b.slice(0, -1)).toEqual(a.slice(0, -1));
    expect(b.at(-1)).not.toBe(a.at(-1));
  });

  it('refuses a model the server would refuse, with the sha256 check at start', async () => {
    const record = JSON.parse(await readFile(path.join(project, '.mlops/last-build.json'), 'utf8'));
    const running = await runImage(docker, record.imageId, { env: [`MLOPS_MODEL_SHA256=${'0'.repeat(64)}`] });
    try {
      await waitFor(async () => !(await running.container.inspect()).State.Running, 20_000, 'the container to exit');
      const state = (await running.container.inspect()).State;
      expect(state.ExitCode).toBe(2);
      const logs = (await running.container.logs({ stderr: true, stdout: true })).toString();
      expect(logs).toContain('refusing to serve a different model');
    } finally {
      await running.remove();
    }
  });

  it('fails with the engine output and leaves no tag when the base image is missing', async () => {
    await withTempDir(async (dir) => {
      await copyFile(fixture('wine', 'model.onnx'), path.join(dir, 'model.onnx'));
      const repository = `${REPOSITORY}-fail`;
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ image: { repository, base: 'mlops-no-such-base:0' } }));
      const { code, stdout, stderr } = await runCli(['build', '--tag', 'x'], { cwd: dir });
      expect(code).toBe(3);
      expect(stdout).toBe('');
      expect(stderr).toContain('error: docker build failed: base image mlops-no-such-base:0 is not available locally and could not be pulled');
      expect(stderr).toMatch(/lookup|not found|denied/);
      expect(stderr).toContain('hint: pull it first');
      const left = await docker.listImages({ filters: { reference: [`${repository}*`] } });
      expect(left).toEqual([]);
      await expect(readFile(path.join(dir, '.mlops/last-build.json'))).rejects.toThrow();
    });
  });

  it('builds for linux/arm64 on this host, with only the arm64 ONNX Runtime inside', async () => {
    // No RUN step in the Dockerfile, so no emulation is needed: an arm64 base (files only) is enough.
    const armBase = 'mlops-e2e-build-armbase:1';
    const dir = await mkdtemp(path.join(tmpdir(), 'mlops-armbase-'));
    await writeFile(path.join(dir, 'Dockerfile'), 'FROM scratch\nCOPY marker /marker\n');
    await writeFile(path.join(dir, 'marker'), 'arm64 base\n');
    const stream = await docker.buildImage(tar.pack(dir) as unknown as NodeJS.ReadableStream, { t: armBase, platform: 'linux/arm64' });
    await new Promise((resolve, reject) => docker.modem.followProgress(stream, (e: Error | null, out: unknown) => (e ? reject(e) : resolve(out))));
    await rm(dir, { recursive: true, force: true });

    const { code, stdout, stderr } = await runCli(['build', '--platform', 'linux/arm64', '--base', armBase, '--tag', 'arm', '--json'], { cwd: project });
    expect(code, stderr).toBe(0);
    const result = JSON.parse(stdout);
    expect(result.platform).toBe('linux/arm64');
    expect((await docker.getImage(result.imageId).inspect()).Architecture).toBe('arm64');
    const container = await docker.createContainer({ Image: result.imageId });
    try {
      const archive = await container.getArchive({ path: '/app/node_modules/onnxruntime-node/bin/napi-v6/linux' });
      const names: string[] = [];
      await new Promise<void>((resolve, reject) => {
        const extract = tarStream.extract();
        extract.on('entry', (header, entry, next) => {
          names.push(header.name);
          entry.resume();
          entry.on('end', next);
        });
        extract.on('finish', resolve);
        extract.on('error', reject);
        archive.pipe(extract);
      });
      expect(names).toContain('linux/arm64/libonnxruntime.so.1');
      expect(names.some((n) => n.includes('/x64/'))).toBe(false);
    } finally {
      await container.remove({ force: true });
      await docker
        .getImage(armBase)
        .remove({ force: true })
        .catch(() => undefined);
    }
  });

  it('exits 2 naming the model when it is missing', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: 'gone.onnx' }, image: { base } }));
      const { code, stderr } = await runCli(['build'], { cwd: dir });
      expect(code).toBe(2);
      expect(lines(stderr).find((l) => l.startsWith('error:'))).toBe('error: model file not found: gone.onnx');
    });
  });
});
