/**
 * Images and texts in, labels out, on the Docker engine: `mlops build <export folder>`, `mlops test`
 * on an image folder and on a text CSV, `mlops deploy`, then a JPEG and a sentence sent to the
 * running container on every route a client might use, and the image's labels and SBOM.
 */
import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeGrpcResponse } from '../../src/protocol/grpc.js';
import { call, inferenceClient } from '../../src/protocol/grpc-client.js';
import { fixture, runCli } from '../helpers.js';
import { pngDeclaring } from '../hostile-images.js';
import { ensureLocalBaseImage, probeEngine, runImage, uniqueName, waitFor } from './docker.js';
import { freePort } from './registry-process.js';

const engine = await probeEngine();
const IMAGES = uniqueName('shapes');
const TEXTS = uniqueName('topics');
const CONTAINER = uniqueName('shapes-dev');

type Answer = { outputs: { name: string; data: unknown[] }[] };
const label = (answer: Answer) => answer.outputs.find((o) => o.name === 'label')?.data;

describe.skipIf(!engine.ok)(`images and texts in, labels out, in a container${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let dir: string;
  let port: number;
  const built: Record<string, { imageId: string; tags: string[]; sbom: string }> = {};
  const jpeg = () => readFile(fixture('shapes_image', 'holdout', 'circle', '001.jpg'));

  beforeAll(async () => {
    const base = await ensureLocalBaseImage(docker);
    dir = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-real-'));
    port = await freePort();
    // The folders as an export writes them, each with its holdout beside it.
    await cp(fixture('shapes_image'), path.join(dir, 'shapes'), { recursive: true });
    await cp(fixture('text_topic'), path.join(dir, 'topics'), { recursive: true });
    const config = (repository: string, model: string, holdout: string) => ({
      model: { path: model },
      image: { repository, base },
      test: { holdout, gates: { accuracy: '>= 0.9' } },
      targets: { dev: { type: 'local', containerName: CONTAINER, port, grpcPort: 0, readyTimeoutSeconds: 30 } },
    });
    await writeFile(path.join(dir, 'images.json'), JSON.stringify(config(IMAGES, 'shapes', 'shapes/holdout')));
    await writeFile(path.join(dir, 'texts.json'), JSON.stringify(config(TEXTS, 'topics', 'topics/holdout.csv')));
    for (const [name, file] of [
      ['texts', 'texts.json'],
      ['images', 'images.json'],
    ]) {
      const result = await runCli(['--config', file, 'build', '--json'], { cwd: dir });
      expect(result.code, result.stderr).toBe(0);
      built[name] = JSON.parse(result.stdout);
    }
  }, 240_000);
  afterAll(async () => {
    for (const c of await docker.listContainers({ all: true, filters: { name: [CONTAINER] } })) await docker.getContainer(c.Id).remove({ force: true });
    for (const repository of [IMAGES, TEXTS]) {
      for (const image of await docker.listImages({ filters: { reference: [repository] } }))
        await docker
          .getImage(image.Id)
          .remove({ force: true })
          .catch(() => undefined);
    }
  });

  it("labels and the SBOM name the folder's files by sha256; only the image model's image carries sharp and libvips", async () => {
    const images = (await docker.getImage(built.images.imageId).inspect()).Config.Labels;
    const texts = (await docker.getImage(built.texts.imageId).inspect()).Config.Labels;
    const sha = async (file: string) =>
      (await import('node:crypto'))
        .createHash('sha256')
        .update(await readFile(file))
        .digest('hex');
    expect(JSON.parse(images['mlops.model.files'])).toEqual([
      { name: 'config.json', sha256: await sha(fixture('shapes_image', 'config.json')) },
      { name: 'preprocessor_config.json', sha256: await sha(fixture('shapes_image', 'preprocessor_config.json')) },
    ]);
    expect(images['mlops.model.takes']).toBe('image');
    expect(images['mlops.imaging']).toMatch(/^sharp \d+\.\d+\.\d+/);
    expect(JSON.parse(texts['mlops.model.files']).map((f: { name: string }) => f.name)).toEqual([
      'config.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'special_tokens_map.json',
    ]);
    expect(texts['mlops.model.takes']).toBe('text');
    expect(texts['mlops.imaging']).toBeUndefined();
    const sbom = JSON.parse(await readFile(path.join(dir, built.images.sbom), 'utf8')) as {
      components: { name: string; type: string; hashes?: { content: string }[] }[];
    };
    expect(sbom.components.find((c) => c.name === 'preprocessor_config.json')).toMatchObject({
      type: 'data',
      hashes: [{ content: await sha(fixture('shapes_image', 'preprocessor_config.json')) }],
    });
    expect(sbom.components.map((c) => c.name)).toEqual(expect.arrayContaining(['sharp', 'libvips']));
    // The layers differ by the image library alone: about 20 MB of libvips.
    const size = async (id: string) => (await docker.getImage(id).inspect()).Size;
    expect((await size(built.images.imageId)) - (await size(built.texts.imageId))).toBeGreaterThan(10e6);
  });

  it('mlops test scores the image folder and the text CSV against the containers, parity included', async () => {
    for (const [name, file] of [
      ['images', 'images.json'],
      ['texts', 'texts.json'],
    ]) {
      const result = await runCli(['--config', file, 'test', '--image', built[name].tags[0], '--json'], { cwd: dir });
      expect(result.code, result.stderr).toBe(0);
      const report = JSON.parse(result.stdout);
      expect(report).toMatchObject({ mode: 'image', passed: true, parity: { passed: true } });
      expect(report.metrics.accuracy).toBeGreaterThanOrEqual(0.9);
    }
  }, 180_000);

  it('a JPEG to the container on every route: raw body, OIP BYTES, v1 b64, /invocations, gRPC bytes_contents', async () => {
    const running = await runImage(docker, built.images.imageId);
    try {
      await waitFor(async () => (await fetch(`${running.url}/v2/health/ready`).catch(() => undefined))?.ok ?? false, 30_000, 'the server');
      const image = await jpeg();
      const models = (await (await fetch(`${running.url}/v2/repository/index`, { method: 'POST' })).json()) as { name: string }[];
      const model = models[0].name;
      expect(model).toBe('shapes');
      const raw = await fetch(`${running.url}/v2/models/${model}/infer`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: image });
      expect(label((await raw.json()) as Answer)).toEqual(['circle']);
      const bytes = await fetch(`${running.url}/v2/models/${model}/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: [image.toString('base64')] }] }),
      });
      expect(label((await bytes.json()) as Answer)).toEqual(['circle']);
      const v1 = await fetch(`${running.url}/v1/models/${model}:predict`, {
        method: 'POST',
        body: JSON.stringify({ instances: [{ b64: image.toString('base64') }] }),
      });
      expect(((await v1.json()) as { predictions: { label: string }[][] }).predictions[0][0].label).toBe('circle');
      const sagemaker = await fetch(`${running.url}/invocations`, { method: 'POST', headers: { 'content-type': 'application/x-image' }, body: image });
      expect(((await sagemaker.json()) as { label: string }[])[0].label).toBe('circle');
      const client = inferenceClient(running.grpcAddress);
      try {
        const reply = await call(client, client.ModelInfer, {
          model_name: model,
          inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [image] } }],
        });
        expect(decodeGrpcResponse(reply).label.data).toEqual(['circle']);
      } finally {
        client.close();
      }
      // A decompression bomb is refused before decoding, and the server stays up.
      const bomb = await fetch(`${running.url}/v2/models/${model}/infer`, {
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: pngDeclaring(100_000, 100_000),
      });
      expect(bomb.status).toBe(413);
      expect((await fetch(`${running.url}/v2/health/ready`)).status).toBe(200);
    } finally {
      await running.remove();
    }
  }, 120_000);

  it('a sentence to the text container, and mlops deploy of the image model smoke-tests and serves it', async () => {
    const running = await runImage(docker, built.texts.imageId);
    try {
      await waitFor(async () => (await fetch(`${running.url}/v2/health/ready`).catch(() => undefined))?.ok ?? false, 30_000, 'the server');
      const answer = await fetch(`${running.url}/v2/models/topics/infer`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: 'the referee stopped the match after the goal',
      });
      expect(label((await answer.json()) as Answer)).toEqual(['sports']);
      const sagemaker = await fetch(`${running.url}/invocations`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: 'rain and thunder all night',
      });
      expect(((await sagemaker.json()) as { label: string }[])[0].label).toBe('weather');
    } finally {
      await running.remove();
    }
    const deployed = await runCli(['--config', 'images.json', 'deploy', built.images.tags[0].split(':').pop()!, '--target', 'dev', '--json'], { cwd: dir });
    expect(deployed.code, deployed.stderr).toBe(0);
    const sent = await fetch(`http://127.0.0.1:${port}/v2/models/shapes/infer`, {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg' },
      body: await jpeg(),
    });
    expect(label((await sent.json()) as Answer)).toEqual(['circle']);
  }, 120_000);
});
