/**
 * Two models in one image: `mlops build` packs each as its own layer with the repository file; the
 * container serves both (REST and gRPC) with separate metrics and profiles; a change to one model's
 * file changes one layer, and the other layers keep their digests.
 */
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeGrpcRequest } from '../../src/protocol/grpc.js';
import { call, inferenceClient } from '../../src/protocol/grpc-client.js';
import { fixture, holdoutRows, runCli } from '../helpers.js';
import { breastCancerProject, probeEngine, runImage, uniqueName, waitFor } from './docker.js';

const engine = await probeEngine();
const REPOSITORY = uniqueName('multi');
const CONTAINER = uniqueName('multi-dev');

describe.skipIf(!engine.ok)(`two models in one image${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let dir: string;
  let port: number;
  let built: { imageId: string; tags: string[] };
  const layers = async (image: string) => (await docker.getImage(image).inspect()).RootFS.Layers ?? [];
  beforeAll(async () => {
    ({ dir, port } = await breastCancerProject(docker, 'mlops-e2e-multi-', (base, free) => ({
      models: [
        { name: 'bc', path: 'model.onnx', test: { holdout: 'holdout.csv', labels: ['malignant', 'benign'], gates: { accuracy: '>= 0.9' } } },
        // Two versions of one file: the split, and `mlops test` judging the first serving version with parity.
        {
          name: 'wine',
          versions: [
            { version: '1', path: 'wine.onnx', weight: 50 },
            { version: '2', path: 'wine.onnx', weight: 50 },
          ],
          workers: 1,
          test: { holdout: 'wine.csv', gates: { accuracy: '>= 0.8' } },
        },
      ],
      image: { repository: REPOSITORY, base },
      targets: { dev: { type: 'local', containerName: CONTAINER, port: free, grpcPort: 0, readyTimeoutSeconds: 20 } },
    })));
    await copyFile(fixture('wine', 'model.onnx'), path.join(dir, 'wine.onnx'));
    await copyFile(fixture('wine', 'holdout.csv'), path.join(dir, 'wine.csv'));
    const result = await runCli(['build', '--json'], { cwd: dir });
    expect(result.code, result.stderr).toBe(0);
    built = JSON.parse(result.stdout);
  }, 180_000);
  afterAll(async () => {
    for (const c of await docker.listContainers({ all: true, filters: { name: [CONTAINER] } })) await docker.getContainer(c.Id).remove({ force: true });
    for (const image of await docker.listImages({ filters: { reference: [REPOSITORY] } }))
      await docker
        .getImage(image.Id)
        .remove({ force: true })
        .catch(() => undefined);
  });

  it('serves both models over REST and gRPC, each with its own metrics and profile', async () => {
    const labels = (await docker.getImage(built.imageId).inspect()).Config.Labels;
    expect(JSON.parse(labels['mlops.models']).map((m: { name: string; version: string }) => `${m.name}:${m.version}`)).toEqual(['bc:1', 'wine:1', 'wine:2']);
    const running = await runImage(docker, built.imageId);
    try {
      await waitFor(async () => (await fetch(`${running.url}/v2/health/ready`).catch(() => undefined))?.ok ?? false, 30_000, 'the server');
      const index = (await (await fetch(`${running.url}/v2/repository/index`, { method: 'POST' })).json()) as { name: string; state: string }[];
      expect(index.map((m) => `${m.name}:${m.state}`)).toEqual(['bc:READY', 'wine:READY', 'wine:READY']);
      const bc = holdoutRows('breast_cancer').rows.slice(0, 2);
      const wine = holdoutRows('wine').rows.slice(0, 2);
      const infer = async (name: string, input: string, rows: number[][]) => {
        const res = await fetch(`${running.url}/v2/models/${name}/infer`, {
          method: 'POST',
          body: JSON.stringify({ inputs: [{ name: input, datatype: 'FP32', shape: [rows.length, rows[0].length], data: rows.flat() }] }),
        });
        return { status: res.status, json: (await res.json()) as { model_name: string; outputs: { name: string }[] } };
      };
      const inputOf = async (name: string) =>
        ((await (await fetch(`${running.url}/v2/models/${name}`)).json()) as { inputs: { name: string }[] }).inputs[0].name;
      const [bcInput, wineInput] = [await inputOf('bc'), await inputOf('wine')];
      expect((await infer('bc', bcInput, bc)).json.outputs[0].name).toBe('probabilities');
      expect((await infer('wine', wineInput, wine)).json.outputs[0].name).toBe('logits');
      const client = inferenceClient(running.grpcAddress);
      try {
        const answer = await call(
          client,
          client.ModelInfer,
          encodeGrpcRequest('wine', [{ name: wineInput, datatype: 'FP32' }], { [wineInput]: { data: Float32Array.from(wine.flat()), dims: [2, 13] } }),
        );
        expect(answer.model_name).toBe('wine');
      } finally {
        client.close();
      }
      const metrics = await (await fetch(`${running.url}/metrics`)).text();
      expect(metrics).toMatch(/mlops_profiled_rows_total\{reference="[0-9a-f]{12}",model="bc",version="1"\} 2/);
      // Wine's four rows went to its two versions by the split: each version counts its own.
      const wineRows = [...metrics.matchAll(/mlops_profiled_rows_total\{reference="[0-9a-f]{12}",model="wine",version="[12]"\} (\d+)/g)].map((m) =>
        Number(m[1]),
      );
      expect(wineRows).toHaveLength(2);
      expect(wineRows[0] + wineRows[1]).toBe(4);
      const profile = (await (await fetch(`${running.url}/v2/models/wine/profile`)).json()) as {
        model: { name: string };
        reference: { features: { name: string }[] };
      };
      expect(profile.model.name).toBe('wine');
      expect(profile.reference.features.map((f) => f.name)).toContain('proline');
    } finally {
      await running.remove();
    }
  }, 120_000);

  it('`mlops test --image` judges each model with its own holdout and gates, and --model-name picks one', async () => {
    const all = await runCli(['test', '--image', built.imageId, '--json'], { cwd: dir });
    expect(all.code, all.stderr).toBe(0);
    const report = JSON.parse(all.stdout) as { passed: boolean; models: { model: string; rows: number; gates: { metric: string; threshold: number }[] }[] };
    expect(report.passed).toBe(true);
    expect(report.models.map((m) => [m.model, m.rows, m.gates[0].threshold])).toEqual([
      ['bc', 114, 0.9],
      ['wine', 54, 0.8],
    ]);
    const one = await runCli(['test', '--image', built.imageId, '--model-name', 'wine', '--json'], { cwd: dir });
    expect(one.code, one.stderr).toBe(0);
    expect(JSON.parse(one.stdout).model).toBe('wine');
    const unknown = await runCli(['test', '--image', built.imageId, '--model-name', 'fraud'], { cwd: dir });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--model-name fraud: the config has no such model/);
  }, 120_000);

  it('`mlops deploy` smoke-tests every model of the image before it takes traffic', async () => {
    const deployed = await runCli(['deploy', '--target', 'dev', '--json'], { cwd: dir });
    expect(deployed.code, deployed.stderr).toBe(0);
    expect(JSON.parse(deployed.stdout).outcome.status).toBe('deployed');
    for (const name of ['bc', 'wine']) expect((await fetch(`http://127.0.0.1:${port}/v2/models/${name}/ready`)).status).toBe(200);
    const index = (await (await fetch(`http://127.0.0.1:${port}/v2/repository/index`, { method: 'POST' })).json()) as { name: string }[];
    expect(index.map((m) => m.name)).toEqual(['bc', 'wine', 'wine']);
  }, 120_000);

  it("`mlops monitor --emit` writes each model's rules from its own reference profile, which promtool accepts", async () => {
    const emitted = await runCli(['monitor', '--emit', 'prometheus-rules', '--output', 'rules.yml', '--json'], { cwd: dir });
    expect(emitted.code, emitted.stderr).toBe(0);
    const written = JSON.parse(emitted.stdout) as { models: { file: string; reference: string }[] };
    expect(written.models.map((m) => m.file)).toEqual(['rules.bc.yml', 'rules.wine.yml']);
    expect(written.models[0].reference).not.toBe(written.models[1].reference);
    for (const name of ['bc', 'wine']) {
      const rules = await readFile(path.join(dir, `rules.${name}.yml`), 'utf8');
      expect(rules).toContain(`name: mlops-${name}-alerts`);
      expect(rules).toContain(`model="${name}"`);
    }
    const { spawnSync } = await import('node:child_process');
    const check = spawnSync('promtool', ['check', 'rules', 'rules.bc.yml', 'rules.wine.yml'], { cwd: dir, encoding: 'utf8' });
    if (check.error) throw new Error(`promtool is needed here (apt-get install prometheus): ${check.error.message}`);
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const ambiguous = await runCli(['monitor', '--emit', 'prometheus-rules', '--reference', '.mlops/reference-profile.json'], { cwd: dir });
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toMatch(/--reference names one profile, and the config lists several models/);
  });

  it("a change to one model's file rebuilds its layer; the next model's layer, built again, keeps its digest", async () => {
    // The first model's file with a doc_string appended (protobuf field 6): the same graph, another sha256.
    const bytes = await readFile(path.join(dir, 'model.onnx'));
    await writeFile(path.join(dir, 'model.onnx'), Buffer.concat([bytes, Buffer.from([0x32, 0x07]), Buffer.from('changed')]));
    const result = await runCli(['build', '--json'], { cwd: dir });
    expect(result.code, result.stderr).toBe(0);
    const rebuilt = JSON.parse(result.stdout) as { imageId: string; tags: string[] };
    expect(rebuilt.tags[0]).not.toBe(built.tags[0]);
    const [before, after] = [await layers(built.imageId), await layers(rebuilt.imageId)];
    expect(after).toHaveLength(before.length);
    const changed = before.map((digest, i) => (digest === after[i] ? null : i)).filter((i) => i !== null);
    // Layers: ..., bc, wine 1, wine 2, repository file. bc's and the repository file's (it lists bc's sha256) change; wine's do not.
    expect(changed).toEqual([before.length - 4, before.length - 1]);
  }, 180_000);
});
