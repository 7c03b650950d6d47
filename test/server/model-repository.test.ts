/**
 * One server, several models and versions: each model at its own routes over REST and gRPC, its own
 * metrics, profile and queue; versions split by weight, shadows compared and never answered; the
 * repository extension's index, load and unload; one memory budget for all.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeGrpcRequest, decodeGrpcResponse } from '../../src/protocol/grpc.js';
import { call, inferenceClient, type InferenceClient } from '../../src/protocol/grpc-client.js';
import type { ModelSpec } from '../../src/server/model-repository.js';
import { readRepositoryFile } from '../../src/server/repository-file.js';
import { startServer, type RunningServer } from '../../src/server/run.js';
import { fixture, freePort, holdoutRows, profileFor, ROOT, runCli, serveOptions } from '../helpers.js';

const quiet = () => undefined;
const WORK = path.join(ROOT, '.mlops', 'test-multi-model');
const batching = { enabled: true, maxBatchSize: 32, maxWaitMs: 1 };

const spec = (name: string, version: string, model: string, extra: Partial<ModelSpec> = {}): ModelSpec => ({
  name,
  version,
  path: fixture(model, 'model.onnx'),
  profilePath: '',
  workers: 1,
  batching,
  weight: 1,
  shadow: false,
  ...extra,
});

let server: RunningServer;
let grpcClient: InferenceClient;
const bc = holdoutRows('breast_cancer').rows;
const wine = holdoutRows('wine').rows;

async function post(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}
const inferBody = (input: string, rows: number[][]) => ({
  inputs: [{ name: input, datatype: 'FP32', shape: [rows.length, rows[0].length], data: rows.flat() }],
});
const metricsText = async () => (await fetch(`${server.url}/metrics`)).text();
const metricValue = (text: string, pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? 0);

let bcInput: string;
let wineInput: string;

beforeAll(async () => {
  await mkdir(WORK, { recursive: true });
  const profiles: Record<string, string> = {};
  for (const name of ['breast_cancer', 'wine']) {
    profiles[name] = path.join(WORK, `${name}.profile.json`);
    await writeFile(
      profiles[name],
      JSON.stringify(await profileFor(name, { test: { holdout: `fixtures/${name}/holdout.csv` }, explain: { backgroundRows: 0 } })),
    );
  }
  server = await startServer(
    serveOptions('breast_cancer', {
      grpcPort: await freePort(),
      repositoryControl: true,
      models: [
        spec('breast_cancer', '1', 'breast_cancer', { weight: 90, profilePath: profiles.breast_cancer }),
        spec('breast_cancer', '2', 'breast_cancer', { weight: 10 }),
        // A shadow that agrees (the same model), and one that fails every run (another model's inputs).
        spec('breast_cancer', '3', 'breast_cancer', { shadow: true, workers: 0 }),
        spec('breast_cancer', '4', 'diabetes', { shadow: true, workers: 0 }),
        spec('wine', '1', 'wine', { profilePath: profiles.wine }),
      ],
    }),
    quiet,
  );
  grpcClient = inferenceClient(server.grpcAddress!);
  const meta = async (name: string) => ((await (await fetch(`${server.url}/v2/models/${name}`)).json()) as { inputs: { name: string }[] }).inputs[0].name;
  bcInput = await meta('breast_cancer');
  wineInput = await meta('wine');
}, 120_000);
afterAll(async () => {
  grpcClient?.close();
  await server?.stop();
});

describe('several models in one server', () => {
  it('each model answers at its own routes, over REST and gRPC, as it does alone', async () => {
    const bcExpected = JSON.parse(await readFile(fixture('breast_cancer', 'expected_outputs.json'), 'utf8')).probabilities.slice(0, 3);
    const wineExpected = JSON.parse(await readFile(fixture('wine', 'expected_outputs.json'), 'utf8')).logits.slice(0, 3);
    const bcRest = await post(`${server.url}/v2/models/breast_cancer/versions/1/infer`, inferBody(bcInput, bc.slice(0, 3)));
    const wineRest = await post(`${server.url}/v2/models/wine/infer`, inferBody(wineInput, wine.slice(0, 3)));
    expect(bcRest.status).toBe(200);
    expect(wineRest.json.model_name).toBe('wine');
    const close = (got: number[], want: number[][]) => got.forEach((v, i) => expect(v).toBeCloseTo(want.flat()[i], 4));
    close((bcRest.json.outputs as { data: number[] }[])[0].data, bcExpected);
    close((wineRest.json.outputs as { data: number[] }[])[0].data, wineExpected);

    const grpcWine = await call(
      grpcClient,
      grpcClient.ModelInfer,
      encodeGrpcRequest('wine', [{ name: wineInput, datatype: 'FP32' }], { [wineInput]: { data: Float32Array.from(wine.slice(0, 3).flat()), dims: [3, 13] } }),
    );
    expect(grpcWine.model_name).toBe('wine');
    close(Array.from(decodeGrpcResponse(grpcWine).logits.data as Float32Array), wineExpected);
    const grpcBc = await call(grpcClient, grpcClient.ModelInfer, {
      ...encodeGrpcRequest('breast_cancer', [{ name: bcInput, datatype: 'FP32' }], {
        [bcInput]: { data: Float32Array.from(bc.slice(0, 3).flat()), dims: [3, 30] },
      }),
      model_version: '2',
    });
    expect(grpcBc.model_version).toBe('2');
    close(Array.from(Object.values(decodeGrpcResponse(grpcBc))[0].data as Float32Array), bcExpected);
  });

  it("lists every version in the repository index, and each model's metadata lists its versions", async () => {
    const index = (await post(`${server.url}/v2/repository/index`, {})).json as unknown as { name: string; version: string; state: string }[];
    expect(index.map((m) => `${m.name}/${m.version}:${m.state}`)).toEqual([
      'breast_cancer/1:READY',
      'breast_cancer/2:READY',
      'breast_cancer/3:READY',
      'breast_cancer/4:READY',
      'wine/1:READY',
    ]);
    const meta = (await (await fetch(`${server.url}/v2/models/breast_cancer`)).json()) as { versions: string[] };
    expect(meta.versions).toEqual(['1', '2', '3', '4']);
    const v4 = (await (await fetch(`${server.url}/v2/models/breast_cancer/versions/4`)).json()) as { inputs: { shape: number[] }[] };
    expect(v4.inputs[0].shape).toEqual([-1, 10]);
  });

  it('splits unversioned traffic 90/10 by weight (2,000 requests, within 4 standard deviations), never answers from a shadow, and a failing shadow fails no request', async () => {
    const counts: Record<string, number> = {};
    const statuses = new Set<number>();
    const body = JSON.stringify(inferBody(bcInput, [bc[0]]));
    for (let sent = 0; sent < 2000; sent += 50) {
      const replies = await Promise.all(Array.from({ length: 50 }, () => post(`${server.url}/v2/models/breast_cancer/infer`, body)));
      for (const r of replies) {
        statuses.add(r.status);
        const version = String(r.json.model_version);
        counts[version] = (counts[version] ?? 0) + 1;
      }
    }
    expect([...statuses]).toEqual([200]);
    expect(Object.keys(counts).sort()).toEqual(['1', '2']);
    const sd = Math.sqrt(2000 * 0.9 * 0.1);
    expect(Math.abs(counts['1'] - 1800)).toBeLessThan(4 * sd);

    // The shadows' outcomes arrive after the answers.
    let text = '';
    for (let i = 0; i < 50; i++) {
      text = await metricsText();
      const counted =
        metricValue(text, /mlops_shadow_agreement_total\{model="breast_cancer",version="3",serving_version="1",outcome="agree"\} (\d+)/) +
        metricValue(text, /mlops_shadow_agreement_total\{model="breast_cancer",version="4",serving_version="1",outcome="failed"\} (\d+)/);
      if (counted >= 2 * counts['1'] - 10) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const outcome = (version: string, serving: string, what: string) =>
      metricValue(
        text,
        new RegExp(`mlops_shadow_agreement_total\\{model="breast_cancer",version="${version}",serving_version="${serving}",outcome="${what}"\\} (\\d+)`),
      );
    // Every mirrored request is counted once per shadow, under the version that served it.
    for (const [version, served] of Object.entries(counts)) {
      expect(outcome('3', version, 'agree') + outcome('3', version, 'skipped')).toBe(served);
      expect(outcome('4', version, 'failed') + outcome('4', version, 'skipped')).toBe(served);
    }
    expect(outcome('3', '1', 'agree')).toBeGreaterThan(1000);
    expect(outcome('3', '1', 'disagree')).toBe(0);
    expect(text).toMatch(/mlops_shadow_max_abs_difference_bucket\{le="0",model="breast_cancer",version="3"\} [1-9]/);
    // A shadow addressed by version answers it, for debugging: it is a model like any other.
    expect((await post(`${server.url}/v2/models/breast_cancer/versions/3/infer`, body)).json.model_version).toBe('3');
  }, 120_000);

  it('keeps metrics and live profiles per model', async () => {
    await post(`${server.url}/v2/models/wine/infer`, inferBody(wineInput, wine.slice(0, 5)));
    const text = await metricsText();
    expect(text).toMatch(/mlops_batch_size_count\{model="wine",version="1"\} [1-9]/);
    expect(text).toMatch(/mlops_batch_size_count\{model="breast_cancer",version="2"\} [1-9]/);
    expect(text).toMatch(/mlops_http_requests_total\{protocol="rest",route="\/v2\/models\/\{name\}\/infer",method="POST",code="200",model="wine"\} [1-9]/);
    expect(text).toMatch(/mlops_model_info\{name="breast_cancer",version="4",sha256="[0-9a-f]{64}",role="shadow",weight="0"\} 1/);
    expect(text).toMatch(/mlops_profiled_rows_total\{reference="[0-9a-f]{12}",model="wine",version="1"\} [1-9]/);
    const wineProfile = (await (await fetch(`${server.url}/v2/models/wine/profile`)).json()) as {
      model: { name: string };
      live: { rows: number; features: Record<string, unknown> };
    };
    const bcProfile = (await (await fetch(`${server.url}/v2/models/breast_cancer/profile`)).json()) as {
      model: { name: string; version: string };
      live: { rows: number };
    };
    expect(wineProfile.model.name).toBe('wine');
    expect(Object.keys(wineProfile.live.features)).toContain('alcohol');
    expect(bcProfile.model).toMatchObject({ name: 'breast_cancer', version: '1' });
    expect(bcProfile.live.rows).toBeGreaterThan(1000);
    // Version 2 has no profile of its own: it says so, rather than borrowing version 1's.
    const v2 = (await (await fetch(`${server.url}/v2/models/breast_cancer/versions/2/profile`)).json()) as { unavailable?: string };
    expect(v2.unavailable).toMatch(/without a reference profile/);
  });

  it("`mlops monitor` judges each serving version on its own traffic and reports each shadow's agreement", async () => {
    const result = await runCli(['monitor', '--url', server.url, '--model-name', 'breast_cancer', '--all', '--json'], { cwd: WORK });
    // The split test sent one row over and over: version 1's traffic has drifted, and the verdict says so.
    expect(result.code, result.stderr).toBe(1);
    const report = JSON.parse(result.stdout) as {
      passed: boolean;
      rows: number;
      versions: {
        version: string;
        role: string;
        rows: number;
        verdict: string;
        warning?: string;
        shadow?: { agreement: number | null; outcomes: Record<string, number> };
      }[];
    };
    const byVersion = Object.fromEntries(report.versions.map((v) => [v.version, v]));
    expect(Object.keys(byVersion).sort()).toEqual(['1', '2', '3', '4']);
    expect(report.passed).toBe(false);
    expect(byVersion['1']).toMatchObject({ role: 'serving', verdict: 'failed' });
    expect(byVersion['1'].rows).toBe(report.rows);
    // Version 2 has no profile: not judged, and said so (a warning, exit 1 under --strict), never a silent pass.
    expect(byVersion['2']).toMatchObject({ role: 'serving', verdict: 'no-reference' });
    expect(byVersion['2'].warning).toMatch(/no reference profile/);
    expect(byVersion['3'].shadow!.agreement).toBe(1);
    expect(byVersion['4'].shadow!.agreement).toBe(0);
    expect(byVersion['4'].shadow!.outcomes.failed).toBeGreaterThan(1000);
    const human = await runCli(['monitor', '--url', server.url, '--model-name', 'breast_cancer', '--all'], { cwd: WORK });
    expect(human.stdout).toMatch(/3 +│? *shadow *│? *│? *agreement 100\.00%/);
    expect(human.stdout).toMatch(/4 +│? *shadow *│? *│? *agreement 0\.00% \(0 agree, 0 disagree, \d+ failed/);
  }, 60_000);

  it("a deploy's smoke test asks every model of an image of several, and fails naming one that does not answer", async () => {
    const { configuredSampleInputs, smokeTest } = await import('../../src/targets/smoke.js');
    const { applyDefaults } = await import('../../src/config/normalize.js');
    const sampleInputs = configuredSampleInputs(applyDefaults({}), ROOT);
    const release = { version: '1', image: 'x', digest: null, modelName: 'breast_cancer', modelSha256: null, otherModels: ['wine'] };
    await expect(smokeTest(server.url, release, sampleInputs)).resolves.toBeUndefined();
    await expect(smokeTest(server.url, { ...release, otherModels: ['wine', 'fraud'] }, sampleInputs)).rejects.toThrow(
      'GET /v2/models/fraud answered HTTP 404: {"error":"unknown model \'fraud\'',
    );
  });

  it('bad names: an unknown model or version is 404 naming what there is, on every route and over gRPC', async () => {
    const unknown = await post(`${server.url}/v2/models/fraud/infer`, inferBody(bcInput, [bc[0]]));
    expect(unknown).toEqual({ status: 404, json: { error: "unknown model 'fraud'; this server serves 'breast_cancer', 'wine'" } });
    const version = await post(`${server.url}/v2/models/wine/versions/9/infer`, inferBody(wineInput, [wine[0]]));
    expect(version).toEqual({ status: 404, json: { error: "model 'wine' has no version '9'; it has '1'" } });
    expect((await post(`${server.url}/v2/models/fraud/explain`, inferBody(bcInput, [bc[0]]))).status).toBe(404);
    expect((await fetch(`${server.url}/v2/models/fraud/ready`)).status).toBe(404);
    expect((await post(`${server.url}/v2/repository/models/fraud/unload`, {})).status).toBe(404);
    await expect(
      call(grpcClient, grpcClient.ModelInfer, {
        ...encodeGrpcRequest('wine', [{ name: wineInput, datatype: 'FP32' }], { [wineInput]: { data: Float32Array.from(wine[0]), dims: [1, 13] } }),
        model_version: '9',
      }),
    ).rejects.toMatchObject({ details: "model 'wine' has no version '9'; it has '1'" });
  });

  it('unloads a model (503, UNAVAILABLE) and loads it again from its file, while the other model keeps answering', async () => {
    expect((await post(`${server.url}/v2/repository/models/wine/unload`, {})).status).toBe(200);
    expect((await post(`${server.url}/v2/models/wine/infer`, inferBody(wineInput, [wine[0]]))).json.error).toBe("model 'wine' is unavailable (unloaded)");
    expect((await fetch(`${server.url}/v2/models/wine/ready`)).status).toBe(503);
    const index = (await post(`${server.url}/v2/repository/index`, {})).json as unknown as { name: string; state: string; reason: string }[];
    expect(index.find((m) => m.name === 'wine')).toMatchObject({ state: 'UNAVAILABLE', reason: 'unloaded' });
    expect(await metricsText()).toMatch(/mlops_model_ready\{model="breast_cancer",version="1"\} 1/);
    expect(await metricsText()).toMatch(/mlops_model_ready\{model="wine",version="1"\} 0/);
    expect((await post(`${server.url}/v2/models/breast_cancer/infer`, inferBody(bcInput, [bc[0]]))).status).toBe(200);

    expect((await post(`${server.url}/v2/repository/models/wine/load`, {})).status).toBe(200);
    expect((await post(`${server.url}/v2/models/wine/infer`, inferBody(wineInput, [wine[0]]))).status).toBe(200);
    expect((await fetch(`${server.url}/v2/models/wine/ready`)).status).toBe(200);
    // A load of a loaded model swaps in new sessions from its file, without a failed request: the old
    // sessions are released once what they hold is answered. Requests keep arriving throughout.
    let loading = true;
    const statuses: number[] = [];
    const clients = Array.from({ length: 8 }, async () => {
      while (loading) statuses.push((await post(`${server.url}/v2/models/breast_cancer/versions/1/infer`, inferBody(bcInput, bc.slice(0, 16)))).status);
    });
    await new Promise((r) => setTimeout(r, 50));
    expect((await post(`${server.url}/v2/repository/models/breast_cancer/load`, {})).status).toBe(200);
    expect((await post(`${server.url}/v2/repository/models/wine/load`, {})).status).toBe(200);
    loading = false;
    await Promise.all(clients);
    expect(statuses.length).toBeGreaterThan(20);
    expect(new Set(statuses)).toEqual(new Set([200]));
    // One load at a time: a second while the first runs is 409, and nothing is left loaded twice.
    const both = await Promise.all([post(`${server.url}/v2/repository/models/wine/load`, {}), post(`${server.url}/v2/repository/models/wine/load`, {})]);
    expect(both.map((r) => r.status).sort()).toEqual([200, 409]);
    expect(both.find((r) => r.status === 409)!.json.error).toBe("model 'wine' is being loaded or unloaded already; try again when that is done");
  }, 60_000);
});

describe('shadows of large requests', () => {
  it('a body decoded in a worker (over offloadBytes) is copied for the shadow before the serving run takes it: both answer, and they agree', async () => {
    const image = await startServer(
      serveOptions('image_cnn', {
        workers: 2,
        models: [spec('image_cnn', '1', 'image_cnn', { workers: 2 }), spec('image_cnn', '2', 'image_cnn', { shadow: true, workers: 1 })],
      }),
      quiet,
    );
    try {
      const meta = (await (await fetch(`${image.url}/v2/models/image_cnn`)).json()) as { inputs: { name: string; shape: number[] }[] };
      const [input] = meta.inputs;
      const size = 3 * 224 * 224;
      const pixels = Float32Array.from({ length: size }, (_, i) => ((i * 31) % 255) / 255);
      const head = Buffer.from(
        JSON.stringify({ inputs: [{ name: input.name, datatype: 'FP32', shape: [1, 3, 224, 224], parameters: { binary_data_size: size * 4 } }] }),
      );
      const body = Buffer.concat([head, Buffer.from(pixels.buffer)]);
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${image.url}/v2/models/image_cnn/infer`, {
          method: 'POST',
          headers: { 'inference-header-content-length': String(head.length) },
          body,
        });
        expect(res.status).toBe(200);
        expect(((await res.json()) as { model_version: string }).model_version).toBe('1');
      }
      let text = '';
      for (let i = 0; i < 100 && !/outcome="agree"\} 3/.test(text); i++) {
        await new Promise((r) => setTimeout(r, 50));
        text = await (await fetch(`${image.url}/metrics`)).text();
      }
      expect(text).toMatch(/mlops_shadow_agreement_total\{model="image_cnn",version="2",serving_version="1",outcome="agree"\} 3/);
      expect(text).toMatch(/mlops_shadow_max_abs_difference_bucket\{le="0",model="image_cnn",version="2"\} 3/);
    } finally {
      await image.stop();
    }
  }, 60_000);
});

describe('model repository control and limits', () => {
  it('load and unload are refused (403) unless server.repositoryControl is on', async () => {
    const single = await startServer(serveOptions('wine', { workers: 0 }), quiet);
    try {
      const refused = await post(`${single.url}/v2/repository/models/wine/unload`, {});
      expect(refused.status).toBe(403);
      expect(refused.json.error).toMatch(/MLOPS_REPOSITORY_CONTROL=true/);
      expect((await post(`${single.url}/v2/models/wine/infer`, inferBody(wineInput, [wine[0]]))).status).toBe(200);
    } finally {
      await single.stop();
    }
  });

  it('a memory budget counts every model: too small for both refuses the start (exit 2) naming each', async () => {
    const models = [spec('breast_cancer', '1', 'breast_cancer', { workers: 1 }), spec('wine', '1', 'wine', { workers: 1 })];
    const error = await startServer(serveOptions('breast_cancer', { models, memoryBudget: '7000' }), quiet).catch((e) => e);
    expect(error.exitCode).toBe(2);
    expect(error.message).toMatch(/^server\.memoryBudget 7000: model 'wine' version 1 has .* on top of .* for model 'breast_cancer' version 1/);
    const started = await startServer(serveOptions('breast_cancer', { models, memoryBudget: '1Mi' }), quiet);
    expect(started.models).toEqual(['breast_cancer', 'wine']);
    await started.stop();
  });

  it('reads a repository file, relative paths from its folder; a bad entry is one line naming the file and field', async () => {
    const file = path.join(WORK, 'repository.json');
    await writeFile(file, JSON.stringify({ models: [{ name: 'wine', version: '1', path: '../../fixtures/wine/model.onnx', weight: 3 }] }));
    const [read] = await readRepositoryFile(file);
    expect(read).toMatchObject({ name: 'wine', version: '1', path: fixture('wine', 'model.onnx'), weight: 3, shadow: false });
    await writeFile(file, JSON.stringify({ models: [{ name: 'Wine', version: '1', path: 'x.onnx' }] }));
    await expect(readRepositoryFile(file)).rejects.toThrow(`model repository ${file}: models.0.name: expected a model name`);
    const error = await startServer(serveOptions('wine', { models: [spec('wine', '1', 'wine'), spec('wine', '1', 'wine')] }), quiet).catch((e) => e);
    expect(error.message).toBe("model 'wine' lists version '1' twice");
    expect(error.exitCode).toBe(2);
  });
});

describe('shadow agreement', () => {
  it('agrees on the same class per row and on values within 1e-4 relative; disagrees otherwise, with the largest difference', async () => {
    const { compareOutputs } = await import('../../src/server/model-repository.js');
    const scores = (data: number[]) => ({ p: { data: Float32Array.from(data), dims: [2, 2] } });
    expect(compareOutputs(scores([0.9, 0.1, 0.2, 0.8]), scores([0.7, 0.3, 0.4, 0.6]))).toEqual({ agree: true, maxAbs: expect.closeTo(0.2, 6) });
    expect(compareOutputs(scores([0.9, 0.1, 0.2, 0.8]), scores([0.9, 0.1, 0.6, 0.4])).agree).toBe(false);
    const values = (data: number[]) => ({ y: { data: Float64Array.from(data), dims: [2, 1] } });
    expect(compareOutputs(values([100, 5]), values([100.005, 5])).agree).toBe(true);
    expect(compareOutputs(values([100, 5]), values([100, 5.01]))).toEqual({ agree: false, maxAbs: expect.closeTo(0.01, 6) });
    expect(compareOutputs(values([1, 2]), {}).agree).toBe(false);
  });
});

describe('a config of several models', () => {
  const project = path.join(WORK, 'project');
  const config = (models: unknown[], extra: object = {}) => writeFile(path.join(project, 'mlops.config.json'), JSON.stringify({ models, ...extra }));
  const bcEntry = {
    name: 'bc',
    path: fixture('breast_cancer', 'model.onnx'),
    test: { holdout: fixture('breast_cancer', 'holdout.csv'), labels: ['malignant', 'benign'], gates: { accuracy: '>= 0.9' } },
  };
  const wineEntry = (gate: string) => ({
    name: 'wine',
    path: fixture('wine', 'model.onnx'),
    workers: 1,
    test: { holdout: fixture('wine', 'holdout.csv'), gates: { accuracy: gate } },
  });

  it('`mlops test --local` judges every model with its own holdout and gates; one failing gate fails the run and names the model', async () => {
    await mkdir(project, { recursive: true });
    await config([bcEntry, wineEntry('>= 0.8')], { test: { parity: { sample: 0 } } });
    const passed = await runCli(['test', '--local', '--json'], { cwd: project });
    expect(passed.code, passed.stderr).toBe(0);
    const report = JSON.parse(passed.stdout) as { passed: boolean; models: { model: string; rows: number; gates: { threshold: number }[] }[] };
    expect(report.models.map((m) => [m.model, m.rows, m.gates[0].threshold])).toEqual([
      ['bc', 114, 0.9],
      ['wine', 54, 0.8],
    ]);

    await config([bcEntry, wineEntry('> 1')], { test: { parity: { sample: 0 } } });
    const failed = await runCli(['test', '--local'], { cwd: project });
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/FAILED \(wine\)/);
    const one = await runCli(['test', '--local', '--model-name', 'bc', '--json'], { cwd: project });
    expect(one.code, one.stderr).toBe(0);
    expect(JSON.parse(one.stdout).model).toBe('bc');
  }, 60_000);

  it('`mlops monitor --labels` scores the model --model-name names, from only its records in a log of several models', async () => {
    await mkdir(project, { recursive: true });
    await config([bcEntry, wineEntry('>= 0.8')]);
    const time = new Date().toISOString();
    const record = (model: string, id: string, output: string, data: number[]) =>
      JSON.stringify({
        type: 'mlops.inference',
        id,
        rows: 1,
        time,
        model,
        version: '1',
        sha256: model === 'bc' ? 'b'.repeat(64) : 'c'.repeat(64),
        row: 0,
        outputs: [{ name: output, datatype: 'FP32', shape: [1, data.length], data }],
      });
    const ids = ['q1', 'q2', 'q3', 'q4'];
    const lines = [
      ...ids.map((id, i) => record('bc', id, 'probabilities', i % 2 ? [0.9, 0.1] : [0.2, 0.8])),
      ...ids.map((id) => record('wine', id, 'logits', [3, 1, 0])),
    ];
    await writeFile(path.join(project, 'log.jsonl'), lines.join('\n') + '\n');
    await writeFile(path.join(project, 'labels.csv'), ['id,row,label', ...ids.map((id, i) => `${id},,${i % 2 ? 'malignant' : 'benign'}`)].join('\n') + '\n');
    const ambiguous = await runCli(['monitor', '--labels', 'labels.csv', '--log', 'log.jsonl'], { cwd: project });
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toMatch(/--labels scores one model, and the config lists several/);
    const scored = await runCli(['monitor', '--labels', 'labels.csv', '--log', 'log.jsonl', '--model-name', 'bc', '--json'], { cwd: project });
    expect(scored.code, scored.stderr).toBe(0);
    const report = JSON.parse(scored.stdout) as { model: { name: string }; join: { loggedRows: number; matched: number }; metrics: { accuracy: number } };
    expect(report.model.name).toBe('bc');
    expect(report.join).toMatchObject({ loggedRows: 4, matched: 4 });
    expect(report.metrics.accuracy).toBe(1);
  });

  it('refuses a config that gives model and models, a name twice, or path beside versions, naming the field', async () => {
    await mkdir(project, { recursive: true });
    const error = async (raw: object) => {
      await writeFile(path.join(project, 'mlops.config.json'), JSON.stringify(raw));
      const result = await runCli(['test', '--local'], { cwd: project });
      expect(result.code).toBe(2);
      return result.stderr.split('\n')[0];
    };
    expect(await error({ model: { path: 'a.onnx' }, models: [{ name: 'a', path: 'a.onnx' }] })).toMatch(
      /models: give either model \(one\) or models \(several\), not both/,
    );
    expect(
      await error({
        models: [
          { name: 'a', path: 'a.onnx' },
          { name: 'a', path: 'b.onnx' },
        ],
      }),
    ).toMatch(/models\.1\.name: model "a" is listed twice/);
    expect(await error({ models: [{ name: 'a', path: 'a.onnx', versions: [{ version: '1', path: 'a.onnx' }] }] })).toMatch(
      /models\.0\.versions: give either path and version, or versions, not both/,
    );
    expect(await error({ models: [{ name: 'a', versions: [{ version: '1', path: 'a.onnx', shadow: true }] }] })).toMatch(
      /models\.0\.versions: every version is a shadow/,
    );
  });
});
