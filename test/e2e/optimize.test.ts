/**
 * An optimized model in the pipeline: `mlops build --model model.int8.onnx` packages it as any model,
 * the image says it was optimized and from which source, and the image's ONNX Runtime serves it.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture, runCli, withTempDir } from '../helpers.js';
import { ensureLocalBaseImage, probeEngine, runImage, uniqueName, waitFor } from './docker.js';

const engine = await probeEngine();
const REPOSITORY = uniqueName('optimized');

describe.skipIf(!engine.ok)(`an optimized model in an image${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  afterAll(async () => {
    for (const image of await docker.listImages({ filters: { reference: [REPOSITORY] } }))
      await docker
        .getImage(image.Id)
        .remove({ force: true })
        .catch(() => undefined);
  });

  it('builds, labels the image with the method and the source sha256, and serves the quantized model', async () => {
    const base = await ensureLocalBaseImage(docker);
    await withTempDir(async (dir) => {
      await writeFile(
        path.join(dir, 'mlops.config.json'),
        JSON.stringify({
          model: { path: fixture('digits_mlp', 'model.onnx'), name: 'digits' },
          image: { repository: REPOSITORY, base },
          test: { holdout: fixture('digits_mlp', 'holdout.csv') },
          optimize: { bench: { durationSeconds: 0.3, rounds: 1 } },
        }),
      );
      const optimized = await runCli(['optimize', '--output', 'model.int8.onnx', '--quantize', 'static', '--json'], { cwd: dir });
      expect(optimized.code, optimized.stderr).toBe(0);
      const report = JSON.parse(optimized.stdout);
      const built = await runCli(['build', '--model', 'model.int8.onnx', '--json'], { cwd: dir });
      expect(built.code, built.stderr).toBe(0);
      const image = await docker.getImage(JSON.parse(built.stdout).imageId).inspect();
      expect(image.Config.Labels['mlops.model.optimized']).toBe('static-int8-minmax-per-channel');
      expect(image.Config.Labels['mlops.model.source_sha256']).toBe(report.source.sha256);
      expect(image.Config.Labels['mlops.model.sha256']).toBe(report.optimized.sha256);
      const sbom = JSON.parse(await readFile(path.join(dir, '.mlops', 'sbom.cdx.json'), 'utf8'));
      const model = sbom.components.find((c: { type: string }) => c.type === 'machine-learning-model');
      expect(model.properties).toContainEqual({ name: 'mlops:model.sourceSha256', value: report.source.sha256 });

      const running = await runImage(docker, image.Id);
      try {
        await waitFor(async () => (await running.container.inspect()).State.Health?.Status === 'healthy', 30_000, 'the health check to pass');
        const row = (await readFile(fixture('digits_mlp', 'holdout.csv'), 'utf8')).split('\n')[1].split(',').slice(0, 64).map(Number);
        const res = await fetch(`${running.url}/v2/models/digits/infer`, {
          method: 'POST',
          body: JSON.stringify({ inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 64], data: row }] }),
        });
        expect(res.status).toBe(200);
        const probabilities = ((await res.json()) as { outputs: { data: number[] }[] }).outputs[0].data;
        expect(probabilities).toHaveLength(10);
        expect(probabilities.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 2);
      } finally {
        await running.remove();
      }
    });
  });
});
