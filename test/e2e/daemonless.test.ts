/**
 * `mlops build --builder oci`: images built, versioned, pushed, signed and planned for every target
 * with no Docker engine reachable by mlops (DOCKER_HOST points nowhere), against Debian's
 * docker-registry; then read by skopeo and run by the engine, which the test itself uses.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, lines, runCli } from '../helpers.js';
import { ensureLocalBaseImage, probeEngine, runImage, uniqueName, waitFor } from './docker.js';
import { startRegistry, type TestRegistry } from './registry-process.js';

const run = promisify(execFile);
const engine = await probeEngine();
const TEAM = uniqueName('daemonless');
const NO_ENGINE = 'unix:///tmp/mlops-no-engine-here.sock';
const errorLine = (stderr: string) => lines(stderr).find((l) => l.startsWith('error:'));

interface Manifest {
  mediaType: string;
  config: { digest: string };
  layers: { digest: string; size: number; mediaType: string }[];
  manifests?: { digest: string; platform?: { architecture: string; os: string } }[];
}

/** The example config's targets, uncommented, as a user copies them. */
async function exampleTargets(): Promise<Record<string, object>> {
  const example = JSON.parse(await readFile(path.resolve('mlops.config.example.json'), 'utf8')) as { targets: Record<string, object> };
  const strip = (value: unknown): unknown =>
    Array.isArray(value)
      ? value.map(strip)
      : value && typeof value === 'object'
        ? Object.fromEntries(
            Object.entries(value)
              .filter(([k]) => !k.startsWith('//'))
              .map(([k, v]) => [k, strip(v)]),
          )
        : value;
  return Object.fromEntries(Object.entries(example.targets).map(([name, target]) => [name.replace(/^\/\//, ''), strip(target) as object]));
}

/** A layout's blob. */
const blob = (dir: string, digest: string) => readFile(path.join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)));
const json = async <T>(dir: string, digest: string) => JSON.parse((await blob(dir, digest)).toString('utf8')) as T;
const layoutTop = async (dir: string) => (JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as Manifest).manifests![0].digest;

/** The names in a gzip'd layer. */
async function layerNames(file: string): Promise<string[]> {
  const names: string[] = [];
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    names.push(header.name);
    stream.on('end', next);
    stream.resume();
  });
  await pipeline(createReadStream(file), createGunzip(), extract);
  return names;
}

describe.skipIf(!engine.ok)(`daemonless builds${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let registry: TestRegistry;
  let work: string;
  let baseArchive: string;
  let registryBase: string;
  let localBase: string;
  const env = (dir: string, extra: NodeJS.ProcessEnv = {}) => ({
    DOCKER_HOST: NO_ENGINE,
    MLOPS_CACHE_DIR: path.join(dir, '.cache'),
    SOURCE_DATE_EPOCH: '1767225600',
    ...extra,
  });

  async function project(name: string, config: object, model = fixture('breast_cancer', 'model.onnx')): Promise<string> {
    const dir = path.join(work, name);
    await mkdir(dir, { recursive: true });
    await copyFile(model, path.join(dir, 'model.onnx'));
    await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: 'model.onnx', name: 'bc' }, ...config }));
    return dir;
  }

  beforeAll(async () => {
    localBase = await ensureLocalBaseImage(docker);
    registry = await startRegistry();
    work = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-daemonless-'));
    baseArchive = path.join(work, 'base.tar');
    await pipeline(await docker.getImage(localBase).get(), createWriteStream(baseArchive));
    registryBase = `${registry.address}/${TEAM}/base:20`;
    await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `docker-archive:${baseArchive}`, `docker://${registryBase}`]);
  }, 120_000);

  afterAll(async () => {
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('builds, versions, pushes, signs, verifies and plans every target with no engine; skopeo reads it and the engine runs it', async () => {
    const repository = `${registry.address}/${TEAM}/bc`;
    const dir = await project('pipeline', { image: { repository, base: registryBase }, targets: await exampleTargets() });
    const keys = await runCli(['keygen', '--output', 'keys'], { cwd: dir, env: env(dir) });
    expect(keys.code, keys.stderr).toBe(0);
    const signing = { MLOPS_SIGNING_KEY: await readFile(path.join(dir, 'keys', 'mlops.key'), 'utf8') };

    // No --builder: with no engine answering, the daemonless builder is chosen, and it pushes to image.repository.
    const built = await runCli(['build', '--json'], { cwd: dir, env: env(dir) });
    expect(built.code, built.stderr).toBe(0);
    const build = JSON.parse(built.stdout) as {
      builder: string;
      digest: string;
      tags: string[];
      outputs: string[];
      push: { uploaded: number; mounted: number };
    };
    expect(build.builder).toBe('oci');
    expect(build.outputs).toEqual(['registry']);
    // The base's layer is mounted from its repository, not sent again.
    expect(build.push.mounted).toBeGreaterThanOrEqual(1);
    const buildTag = build.tags[0];
    expect((await run('skopeo', ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${buildTag}`])).stdout.trim()).toBe(build.digest);

    const tagged = await runCli(['tag', '1.0.0', '--alias', 'staging', '--json'], { cwd: dir, env: env(dir) });
    expect(tagged.code, tagged.stderr).toBe(0);
    const pushed = await runCli(['push', '--json'], { cwd: dir, env: env(dir, signing) });
    expect(pushed.code, pushed.stderr).toBe(0);
    const push = JSON.parse(pushed.stdout) as { digest: string; signed: boolean; pushed: string[] };
    expect(push.signed).toBe(true);
    expect(push.pushed).toEqual([`${repository}:1.0.0`, `${repository}:staging`]);

    const verified = await runCli(['verify', '1.0.0', '--key', 'keys/mlops.pub'], { cwd: dir, env: env(dir) });
    expect(verified.code, verified.stderr).toBe(0);
    const versions = await runCli(['versions', '--key', 'keys/mlops.pub', '--json'], { cwd: dir, env: env(dir) });
    expect(versions.code, versions.stderr).toBe(0);
    expect((JSON.parse(versions.stdout) as { versions: { version: string; signature: string; digest: string }[] }).versions).toEqual([
      expect.objectContaining({ version: '1.0.0', signature: 'verified', digest: push.digest }),
    ]);

    // Every target's plan, from the pushed and signed version, with no engine; AWS targets pull from ECR only and say so.
    const planEnv = env(dir, { CI_MLOPS_TOKENS: 'token-for-the-plan-0123456789' });
    for (const target of Object.keys(await exampleTargets())) {
      const plan = await runCli(['deploy', '1.0.0', '--target', target, '--dry-run'], { cwd: dir, env: planEnv });
      if (target === 'sagemaker' || target === 'lambda') {
        expect(plan.code, target).toBe(2);
        expect(errorLine(plan.stderr), target).toMatch(/pulls? images from Amazon ECR only|runs images from Amazon ECR only/);
      } else {
        expect(plan.code, `${target}: ${plan.stderr}`).toBe(0);
        expect(plan.stdout, target).toContain('1.0.0');
      }
    }

    // A tool that is not mlops reads it: an OCI manifest, and a copy whose every blob it checks.
    const raw = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${repository}:1.0.0`])).stdout) as Manifest;
    expect(raw.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    const copy = path.join(work, 'copied');
    await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${repository}:1.0.0`, `oci:${copy}:v1`]);
    expect((await readdir(path.join(copy, 'blobs', 'sha256'))).length).toBe(raw.layers.length + 2);

    // The engine (the test's, not mlops's) pulls and runs it: it answers inference.
    const pull = await docker.pull(`${repository}:1.0.0`);
    await new Promise<void>((resolve, reject) => docker.modem.followProgress(pull, (e: Error | null) => (e ? reject(e) : resolve())));
    const container = await runImage(docker, `${repository}:1.0.0`);
    try {
      await waitFor(async () => (await fetch(`${container.url}/v2/health/ready`)).ok, 30_000, 'the server to be ready');
      const answer = await fetch(`${container.url}/v2/models/bc/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: Array(30).fill(0.5) }] }),
      });
      expect(answer.status).toBe(200);
      const body = (await answer.json()) as { model_version: string; outputs: { shape: number[] }[] };
      expect(body.model_version).toBe('1.0.0');
      expect(body.outputs[0].shape).toEqual([1, 2]);
      const info = await container.container.inspect();
      expect(info.Config.User).toBe('10001:10001');
    } finally {
      await container.remove();
    }
  }, 300_000);

  it('gives the same digests from two folders, two caches and two times; a changed model changes only its layer', async () => {
    // The base is a file in each folder: its path is not part of the image.
    const config = { image: { repository: `${TEAM}/bc`, base: 'docker-archive:base.tar' } };
    const first = await project('same-a', config);
    const second = await project('same-b', config);
    for (const dir of [first, second]) await copyFile(baseArchive, path.join(dir, 'base.tar'));
    await utimes(path.join(second, 'model.onnx'), new Date('2030-01-01'), new Date('2030-01-01'));
    const out = (dir: string) => path.join(dir, 'image');
    const a = await runCli(['build', '--output', `oci:${out(first)}`, '--json'], { cwd: first, env: env(first) });
    expect(a.code, a.stderr).toBe(0);
    const b = await runCli(['build', '--output', `oci:${out(second)}`, '--json'], { cwd: second, env: env(second) });
    expect(b.code, b.stderr).toBe(0);
    const digest = (JSON.parse(a.stdout) as { digest: string }).digest;
    expect((JSON.parse(b.stdout) as { digest: string }).digest).toBe(digest);
    expect(await layoutTop(out(first))).toBe(digest);

    // --check: the rebuild matches (every layer compressed again: --no-cache), or exits 1 saying what it got.
    const check = await runCli(['build', '--check', digest, '--no-cache'], { cwd: second, env: env(second) });
    expect(check.code, check.stderr).toBe(0);
    const wrong = await runCli(['build', '--check', `sha256:${'0'.repeat(64)}`], { cwd: second, env: env(second) });
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toContain(`the rebuild gives ${digest}`);

    // Another model: the same layers but the last, and a new config.
    const changed = await project('same-c', config, fixture('wine', 'model.onnx'));
    await copyFile(baseArchive, path.join(changed, 'base.tar'));
    const c = await runCli(['build', '--output', `oci:${out(changed)}`, '--json'], { cwd: changed, env: env(first) });
    expect(c.code, c.stderr).toBe(0);
    const before = await json<Manifest>(out(first), digest);
    const after = await json<Manifest>(out(changed), await layoutTop(out(changed)));
    expect(after.layers.slice(0, -1)).toEqual(before.layers.slice(0, -1));
    expect(after.layers.at(-1)!.digest).not.toBe(before.layers.at(-1)!.digest);
    expect(after.config.digest).not.toBe(before.config.digest);
  }, 300_000);

  it('makes the same image as the engine builder: file tree, config and labels', async () => {
    const dir = await project('both', { image: { repository: `${TEAM}/both`, base: localBase } });
    const viaEngine = await runCli(['build', '--builder', 'docker', '--json'], { cwd: dir, env: { MLOPS_CACHE_DIR: path.join(dir, '.cache') } });
    expect(viaEngine.code, viaEngine.stderr).toBe(0);
    const engineId = (JSON.parse(viaEngine.stdout) as { imageId: string }).imageId;
    // The daemonless builder, on the same base saved to a file, loads its image into the engine.
    const daemonless = await runCli(['build', '--builder', 'oci', '--base', `docker-archive:${baseArchive}`, '--json'], {
      cwd: dir,
      env: { MLOPS_CACHE_DIR: path.join(dir, '.cache') },
    });
    expect(daemonless.code, daemonless.stderr).toBe(0);
    const built = JSON.parse(daemonless.stdout) as { imageId: string; outputs: string[] };
    expect(built.outputs).toEqual(['docker engine']);
    const [one, two] = await Promise.all([docker.getImage(engineId).inspect(), docker.getImage(built.imageId).inspect()]);
    const keep = (c: typeof one.Config) => ({
      Env: c.Env,
      User: c.User,
      ExposedPorts: c.ExposedPorts,
      Entrypoint: c.Entrypoint,
      Cmd: c.Cmd,
      WorkingDir: c.WorkingDir,
      StopSignal: (c as { StopSignal?: string }).StopSignal,
      Healthcheck: c.Healthcheck,
    });
    expect(keep(two.Config)).toEqual(keep(one.Config));
    const labels = (l: Record<string, string>) => Object.fromEntries(Object.entries(l).filter(([k]) => !k.includes('.base.')));
    expect(labels(two.Config.Labels)).toEqual(labels(one.Config.Labels));
    expect(two.Architecture).toBe(one.Architecture);

    // Every file and folder under /app, with its owner, mode and size.
    const tree = async (image: string) => {
      const container = await docker.createContainer({ Image: image });
      try {
        const entries: string[] = [];
        const extract = tar.extract();
        extract.on('entry', (header, stream, next) => {
          if (header.name.startsWith('app/'))
            entries.push(`${header.name.replace(/\/$/, '')} ${header.type} ${header.uid}:${header.gid} ${(header.mode ?? 0).toString(8)} ${header.size}`);
          stream.on('end', next);
          stream.resume();
        });
        await pipeline(await container.export(), extract);
        return entries.sort();
      } finally {
        await container.remove({ force: true });
      }
    };
    const [engineTree, ociTree] = await Promise.all([tree(engineId), tree(built.imageId)]);
    expect(ociTree.length).toBeGreaterThan(20);
    expect(ociTree).toEqual(engineTree);
  }, 300_000);

  /** The local base as an OCI layout holding an index for amd64 and arm64 (the arm64 config over the same files: built here, never run). */
  async function twoPlatformBase(dir: string, os = 'linux'): Promise<string> {
    await run('skopeo', ['copy', '--quiet', `docker-archive:${baseArchive}`, `oci:${dir}:amd64`]);
    const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; size: number; mediaType: string }[] };
    const amd = index.manifests[0];
    const manifest = await json<Manifest & Record<string, unknown>>(dir, amd.digest);
    const config = await json<Record<string, unknown>>(dir, manifest.config.digest);
    const put = async (bytes: Buffer) => {
      const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      await writeFile(path.join(dir, 'blobs', 'sha256', digest.slice(7)), bytes);
      return { digest, size: bytes.length };
    };
    const describeManifest = async (architecture: string, variant?: string) => {
      const cfg = await put(Buffer.from(JSON.stringify({ ...config, os, architecture, ...(variant ? { variant } : {}) })));
      const m = await put(Buffer.from(JSON.stringify({ ...manifest, config: { ...manifest.config, ...cfg } })));
      return { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m, platform: { os, architecture, ...(variant ? { variant } : {}) } };
    };
    const top = await put(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: [await describeManifest('amd64'), await describeManifest('arm64', 'v8')],
        }),
      ),
    );
    await writeFile(
      path.join(dir, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', ...top, annotations: { 'org.opencontainers.image.ref.name': 'multi' } }],
      }),
    );
    return `oci:${dir}:multi`;
  }

  it('builds both platforms into one index, each with its own ONNX Runtime; the amd64 one runs here', async () => {
    const base = await twoPlatformBase(path.join(work, 'base-multi'));
    const repository = `${registry.address}/${TEAM}/multi`;
    const dir = await project('multi', { image: { repository, base, platform: 'linux/amd64,linux/arm64' } });
    const out = path.join(dir, 'image');
    const built = await runCli(['build', '--output', 'registry', '--output', `oci:${out}`, '--json'], { cwd: dir, env: env(dir) });
    expect(built.code, built.stderr).toBe(0);
    const result = JSON.parse(built.stdout) as { digest: string; tags: string[]; platform: string };
    expect(result.platform).toBe('linux/amd64,linux/arm64');
    const raw = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${result.tags[0]}`])).stdout) as Manifest;
    expect(raw.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(raw.manifests!.map((m) => `${m.platform!.os}/${m.platform!.architecture}`)).toEqual(['linux/amd64', 'linux/arm64']);
    const perPlatform = await Promise.all(raw.manifests!.map((m) => json<Manifest>(out, m.digest)));
    const configs = await Promise.all(perPlatform.map((m) => json<{ architecture: string }>(out, m.config.digest)));
    expect(configs.map((c) => c.architecture)).toEqual(['amd64', 'arm64']);
    // The first layer mlops adds is the runtime: each platform's own binary, and only that one.
    const baseLayers = (
      await json<Manifest>(
        path.join(work, 'base-multi'),
        (
          await json<Manifest>(
            path.join(work, 'base-multi'),
            (JSON.parse(await readFile(path.join(work, 'base-multi', 'index.json'), 'utf8')) as Manifest).manifests![0].digest,
          )
        ).manifests![0].digest,
      )
    ).layers.length;
    for (const [i, arch] of [
      [0, 'x64'],
      [1, 'arm64'],
    ] as const) {
      const names = await layerNames(path.join(out, 'blobs', 'sha256', perPlatform[i].layers[baseLayers].digest.slice(7)));
      expect(names).toContain(`app/node_modules/onnxruntime-node/bin/napi-v6/linux/${arch}/libonnxruntime.so.1`);
      expect(names.some((n) => n.includes(`/linux/${arch === 'x64' ? 'arm64' : 'x64'}/`))).toBe(false);
    }
    // The model's layer is shared.
    expect(perPlatform[0].layers.at(-1)).toEqual(perPlatform[1].layers.at(-1));

    const pull = await docker.pull(result.tags[0]);
    await new Promise<void>((resolve, reject) => docker.modem.followProgress(pull, (e: Error | null) => (e ? reject(e) : resolve())));
    const container = await runImage(docker, result.tags[0]);
    try {
      await waitFor(async () => (await fetch(`${container.url}/v2/health/ready`)).ok, 30_000, 'the amd64 image to be ready');
    } finally {
      await container.remove();
    }
  }, 300_000);

  it('fails plainly: a base that does not exist (3), a base for another OS (2), a full disk (3, nothing left under the name)', async () => {
    const missing = await project('missing', { image: { repository: `${TEAM}/x`, base: `${registry.address}/${TEAM}/no-such-base:1` } });
    const gone = await runCli(['build', '--output', `oci:${path.join(missing, 'out')}`], { cwd: missing, env: env(missing) });
    expect(gone.code).toBe(3);
    expect(errorLine(gone.stderr)).toBe(`error: base image ${registry.address}/${TEAM}/no-such-base:1 does not exist`);

    const windows = await twoPlatformBase(path.join(work, 'base-windows'), 'windows');
    const foreign = await project('foreign', { image: { repository: `${TEAM}/x`, base: windows } });
    const refused = await runCli(['build', '--output', `oci:${path.join(foreign, 'out')}`], { cwd: foreign, env: env(foreign) });
    expect(refused.code).toBe(2);
    expect(errorLine(refused.stderr)).toMatch(/^error: base image oci:.* has no linux\/amd64 image \(it has windows\/amd64, windows\/arm64\/v8\)$/);

    const full = path.join(work, 'full-disk');
    await mkdir(full, { recursive: true });
    const mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', full]).then(
      () => true,
      () => false,
    );
    if (!mounted) {
      process.stderr.write('\nSKIPPED the full-disk check: mounting a 2 MB tmpfs needs root\n');
      return;
    }
    try {
      const dir = await project('disk', { image: { repository: `${TEAM}/x`, base: `docker-archive:${baseArchive}` } });
      const written = await runCli(['build', '--output', `oci:${path.join(full, 'image')}`], { cwd: dir, env: env(dir) });
      expect(written.code).toBe(3);
      expect(errorLine(written.stderr)).toBe(`error: writing oci:${path.join(full, 'image')} failed: ENOSPC`);
      expect(await readdir(full)).toEqual([]);
      const archive = await runCli(['build', '--output', `docker:${path.join(full, 'image.tar')}`], { cwd: dir, env: env(dir) });
      expect(archive.code).toBe(3);
      expect(await readdir(full)).toEqual([]);
    } finally {
      await run('umount', [full]);
    }
  }, 300_000);

  it('resumes a push whose connection drops mid-blob, and the registry holds the right digest', async () => {
    const [host, port] = registry.address.split(':');
    let dropped = 0;
    const proxy = http.createServer((req, res) => {
      const upstream = http.request({ host, port: Number(port), method: req.method, path: req.url, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode!, answer.headers);
        answer.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      // The first large upload is cut after half a megabyte, as a flaky link would.
      if (req.method === 'PUT' && Number(req.headers['content-length'] ?? 0) > 1_000_000 && dropped === 0) {
        let seen = 0;
        req.on('data', (chunk: Buffer) => {
          seen += chunk.length;
          if (dropped > 0) return;
          if (seen > 500_000) {
            dropped++;
            upstream.destroy();
            req.socket.destroy();
          } else upstream.write(chunk);
        });
        req.on('end', () => upstream.end());
      } else req.pipe(upstream);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const through = `127.0.0.1:${(proxy.address() as { port: number }).port}`;
    try {
      const dir = await project('flaky', { image: { repository: `${through}/${TEAM}/flaky`, base: `docker-archive:${baseArchive}` } });
      // A stalled upload is dropped after 3 s here (30 s by default).
      const built = await runCli(['build', '--json'], { cwd: dir, env: env(dir, { MLOPS_REGISTRY_STALL_SECONDS: '3' }) });
      expect(built.code, built.stderr).toBe(0);
      expect(dropped).toBe(1);
      expect(built.stderr).toMatch(/retrying in/);
      const result = JSON.parse(built.stdout) as { digest: string; tags: string[] };
      const direct = result.tags[0].replace(through, registry.address);
      expect((await run('skopeo', ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${direct}`])).stdout.trim()).toBe(result.digest);
      // skopeo checks each blob's digest as it copies.
      await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${direct}`, `oci:${path.join(dir, 'copy')}:x`]);
    } finally {
      proxy.close();
    }
  }, 300_000);

  it('overwrites nothing it did not write: a file or folder at an output path, an image in a layout, a version in the registry', async () => {
    const repository = `${registry.address}/${TEAM}/immutable`;
    const dir = await project('immutable', { image: { repository, base: `docker-archive:${baseArchive}` } });
    // A holdout where a layout was asked for stays as it was; a folder that does not exist is not made.
    await writeFile(path.join(dir, 'notes.csv'), 'a,b\n1,2\n');
    for (const [output, message] of [
      ['oci:notes.csv', /notes\.csv exists and is not an OCI image layout$/],
      ['docker:notes.csv', /notes\.csv exists and is not a tar archive$/],
      ['docker:missing/x.tar', /the folder .*missing does not exist$/],
    ] as const) {
      const refused = await runCli(['build', '--output', output], { cwd: dir, env: env(dir) });
      expect(refused.code, output).toBe(2);
      expect(errorLine(refused.stderr), output).toMatch(message);
    }
    expect(await readFile(path.join(dir, 'notes.csv'), 'utf8')).toBe('a,b\n1,2\n');
    expect((await readdir(dir)).includes('missing')).toBe(false);

    // An existing layout is added to, as skopeo adds: its other image stays.
    const layout = path.join(dir, 'layout');
    await run('skopeo', ['copy', '--quiet', `docker-archive:${baseArchive}`, `oci:${layout}:base`]);
    const added = await runCli(['build', '--output', `oci:${layout}`, '--json'], { cwd: dir, env: env(dir) });
    expect(added.code, added.stderr).toBe(0);
    const names = (
      JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: { annotations: Record<string, string> }[] }
    ).manifests.map((m) => m.annotations['org.opencontainers.image.ref.name']);
    expect(names).toEqual(['base', (JSON.parse(added.stdout) as { tags: string[] }).tags[0]]);
    await run('skopeo', ['inspect', `oci:${layout}:base`]);

    // A pushed version is not replaced by another image under its name, unless tag --force says so.
    expect((await runCli(['build', '--output', 'registry'], { cwd: dir, env: env(dir) })).code).toBe(0);
    expect((await runCli(['tag', '1.0.0'], { cwd: dir, env: env(dir) })).code).toBe(0);
    const pushed = await runCli(['push', '--json'], { cwd: dir, env: env(dir) });
    expect(pushed.code, pushed.stderr).toBe(0);
    const first = (JSON.parse(pushed.stdout) as { digest: string }).digest;
    // The same model on another created time: another image.
    const other = env(dir, { SOURCE_DATE_EPOCH: '1767312000' });
    expect((await runCli(['build', '--output', 'registry'], { cwd: dir, env: other })).code).toBe(0);
    const again = await runCli(['tag', '1.0.0'], { cwd: dir, env: other });
    expect(again.code).toBe(2);
    expect(errorLine(again.stderr)).toMatch(
      new RegExp(`^error: version 1\\.0\\.0 already exists as ${first}, and this image would be sha256:[0-9a-f]{64}; versions are immutable$`),
    );
    // The refused tag left the project's record of 1.0.0 as it was.
    const images = JSON.parse(await readFile(path.join(dir, '.mlops', 'images.json'), 'utf8')) as { images: Record<string, { top: { digest: string } }> };
    expect(images.images[`${repository}:1.0.0`].top.digest).toBe(first);
    const forced = await runCli(['tag', '1.0.0', '--force', '--json'], { cwd: dir, env: other });
    expect(forced.code, forced.stderr).toBe(0);
    const replaced = await runCli(['push', '--json'], { cwd: dir, env: other });
    expect(replaced.code, replaced.stderr).toBe(0);
    expect((JSON.parse(replaced.stdout) as { digest: string }).digest).toBe((JSON.parse(forced.stdout) as { digest: string }).digest);
  }, 300_000);
});
