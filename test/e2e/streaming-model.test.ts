/**
 * Issue 20, end to end on the real engine: a streaming model (a named dynamic dimension beyond the batch,
 * an INT64 scalar that must be a sample rate, recurrent state) is built, benchmarked and deployed with a
 * smoke test, given only its shapes and data. Names are unique to this run: nothing of a user's is touched.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, runCli } from '../helpers.js';
import { ensureLocalBaseImage, probeEngine } from './docker.js';
import { freePort } from './registry-process.js';

const engine = await probeEngine();
const RUN = randomBytes(4).toString('hex');
const REPOSITORY = `mlops-e2e-vad-${RUN}/vad`;
const CONTAINER = `mlops-e2e-vad-${RUN}`;

describe.skipIf(!engine.ok)(`a streaming model through build, bench and a local deploy${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let dir: string;
  let port: number;
  let base: string;
  const configure = (model: Record<string, unknown>) =>
    writeFile(
      path.join(dir, 'mlops.config.json'),
      JSON.stringify({
        model: { path: 'model.onnx', name: 'vad', ...model },
        image: { repository: REPOSITORY, base },
        targets: {
          dev: { type: 'local', port, grpcPort: 0, containerName: CONTAINER, readyTimeoutSeconds: 20 },
          // Too little memory for node itself: the kernel kills the server as it starts.
          tiny: { type: 'local', port, grpcPort: 0, containerName: `${CONTAINER}-tiny`, memory: '24m', restart: 'no', readyTimeoutSeconds: 20 },
        },
      }),
    );

  beforeAll(async () => {
    base = await ensureLocalBaseImage(docker);
    dir = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-vad-'));
    port = await freePort();
    await copyFile(fixture('streaming_vad', 'model.onnx'), path.join(dir, 'model.onnx'));
    await writeFile(path.join(dir, 'sr.json'), JSON.stringify({ data: [{ sr: 16000 }] }));
    await configure({});
    const built = await runCli(['build'], { cwd: dir });
    expect(built.code, built.stderr).toBe(0);
    expect((await runCli(['tag', '1.0.0'], { cwd: dir })).code).toBe(0);
    // Outside a git checkout there is no source URL: the OCI label is left out, never "unknown".
    const labels = (await docker.getImage(`${REPOSITORY}:1.0.0`).inspect()).Config.Labels;
    expect(labels).not.toHaveProperty(['org.opencontainers.image.source']);
  });

  afterAll(async () => {
    for (const c of await docker.listContainers({ all: true, filters: { name: [CONTAINER, `${CONTAINER}-tiny`] } }))
      await docker.getContainer(c.Id).remove({ force: true });
    for (const image of await docker.listImages({ filters: { reference: [`${REPOSITORY}*`] } }))
      await docker
        .getImage(image.Id)
        .remove({ force: true })
        .catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('bench on the image: exit 2 without a size for "samples"; zero errors with --shape and --input-data, the state sized from the labelled batch', async () => {
    const args = ['bench', '--concurrency', '1', '--duration', '500ms', '--warmup', '0ms', '--json'];
    const unsized = await runCli(args, { cwd: dir });
    expect(unsized.code).toBe(2);
    expect(JSON.parse(unsized.stdout).error.message).toBe("input 'input' [batch, samples]: dimension 1 ('samples') is dynamic and nothing gives its size");
    const sized = await runCli([...args, '--shape', 'input:1,512', '--input-data', 'sr.json'], { cwd: dir });
    expect(sized.code, sized.stderr).toBe(0);
    const [run] = JSON.parse(sized.stdout).runs;
    expect(run.errors.count).toBe(0);
    expect(run.requests).toBeGreaterThan(10);
    expect(run.latencyMs.p50).toBeGreaterThan(0);
  });

  it('deploy: refused with exit 2 before a container starts when the smoke request cannot be made; deployed and smoke-tested with model.shapes and model.inputData', async () => {
    const refused = await runCli(['deploy', '1.0.0', '--target', 'dev', '--json'], { cwd: dir });
    expect(refused.code).toBe(2);
    expect(JSON.parse(refused.stdout).error.message).toContain("dimension 1 ('samples') is dynamic");
    expect(refused.stderr).toContain('model.shapes input:1,<samples>');
    expect(await docker.listContainers({ all: true, filters: { name: [CONTAINER] } })).toEqual([]);

    // A sample rate of 0..9 (random) fails inside the model: the smoke test catches it and nothing stays deployed.
    await configure({ shapes: { input: [1, 512] } });
    const failing = await runCli(['deploy', '1.0.0', '--target', 'dev', '--json'], { cwd: dir });
    expect(failing.code).toBe(3);
    expect(JSON.parse(failing.stdout).outcome).toMatchObject({ status: 'failed', reason: 'smoke-failure' });
    expect(JSON.parse(failing.stdout).outcome.message).toContain("Reshape node 'frames'");

    await configure({ shapes: { input: [1, 512] }, inputData: 'sr.json' });
    const deployed = await runCli(['deploy', '1.0.0', '--target', 'dev', '--json'], { cwd: dir });
    expect(deployed.code, deployed.stderr).toBe(0);
    expect(JSON.parse(deployed.stdout).outcome).toMatchObject({ status: 'deployed', url: `http://127.0.0.1:${port}` });
    // A tagged image serves its release version, not config's model.version ("1").
    const metadata = (await (await fetch(`http://127.0.0.1:${port}/v2/models/vad`)).json()) as { versions: string[] };
    expect(metadata.versions).toEqual(['1.0.0']);
  });

  it('a container the kernel kills for memory is reported as such, with its limit', async () => {
    const { code, stdout } = await runCli(['deploy', '1.0.0', '--target', 'tiny', '--json'], { cwd: dir });
    expect(code).toBe(3);
    const outcome = JSON.parse(stdout).outcome;
    expect(outcome).toMatchObject({ status: 'failed', reason: 'crash-loop' });
    expect(outcome.message).toMatch(/^the new container stopped( at once)?: killed: out of memory \(limit 24 MiB\)$/);
  });
});
