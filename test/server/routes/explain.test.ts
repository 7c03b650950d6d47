/**
 * The server's explain routes (OIP v2 /explain and KServe v1 :explain): Kernel SHAP in a worker
 * thread against the background `mlops build` bakes into the reference profile.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReferenceProfile } from '../../../src/monitor/profile.js';
import { startServer, type RunningServer } from '../../../src/server/run.js';
import { profileFor, ROOT, serveOptions } from '../../helpers.js';

const quiet = () => undefined;
const WORK = path.join(ROOT, '.mlops', 'test-explain-route');
const W = [3, -2, 0, 0.5];

type Explained = {
  features: string[];
  coalitions: number;
  exact: boolean;
  background_rows: number;
  model_rows: number;
  outputs: { name: string; base_values: number[]; rows: { values: number[]; attributions: number[][] }[] }[];
};

async function post(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> & Explained }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as never };
}

let linear: RunningServer;
let linearProfile: ReferenceProfile;

beforeAll(async () => {
  await mkdir(WORK, { recursive: true });
  linearProfile = await profileFor('linear_ignores', { test: { holdout: 'fixtures/linear_ignores/holdout.csv' } });
  const file = path.join(WORK, 'linear.json');
  await writeFile(file, JSON.stringify(linearProfile));
  linear = await startServer(serveOptions('linear_ignores', { profilePath: file, workers: 2 }), quiet);
});
afterAll(async () => {
  await linear?.stop();
});

describe('POST /v2/models/{name}/explain', () => {
  it('a linear model: each attribution is w_i * (x_i - background mean_i), exactly, and they sum with the base to the output', async () => {
    const background = linearProfile.explainBackground!;
    expect(background.rows).toHaveLength(100);
    expect(background.features).toEqual(['f0', 'f1', 'f2', 'f3']);
    const mean = W.map((_, i) => background.rows.reduce((s, r) => s + r[i], 0) / background.rows.length);
    const rows = [
      [0.5, -0.25, 0.9, 0.1],
      [-1, 1, 0, 0.75],
      [0, 0, 0, 0],
    ];
    const { status, json } = await post(`${linear.url}/v2/models/linear_ignores/explain`, {
      id: 'e-1',
      inputs: [{ name: 'features', datatype: 'FP32', shape: [3, 4], data: rows.flat() }],
    });
    expect(status).toBe(200);
    expect(json).toMatchObject({
      model_name: 'linear_ignores',
      id: 'e-1',
      method: 'kernel_shap',
      features: ['f0', 'f1', 'f2', 'f3'],
      coalitions: 14,
      exact: true,
      background_rows: 100,
      model_rows: 3 * (14 * 100 + 1),
    });
    const [value] = json.outputs;
    expect(value.name).toBe('value');
    rows.forEach((x, r) => {
      const row = value.rows[r];
      x.forEach((xi, i) => expect(row.attributions[i][0]).toBeCloseTo(W[i] * (xi - mean[i]), 4));
      const sum = value.base_values[0] + row.attributions.reduce((s, a) => s + a[0], 0);
      expect(sum).toBeCloseTo(row.values[0], 5);
      expect(row.values[0]).toBeCloseTo(
        W.reduce((s, w, i) => s + w * x[i], 1),
        5,
      );
    });
  });

  it('KServe v1 :explain takes instances and answers the same attributions', async () => {
    const x = [0.5, -0.25, 0.9, 0.1];
    const v2 = await post(`${linear.url}/v2/models/linear_ignores/explain`, { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 4], data: x }] });
    const v1 = await post(`${linear.url}/v1/models/linear_ignores:explain`, { instances: [x] });
    expect(v1.status).toBe(200);
    expect(v1.json.outputs[0].rows[0].attributions).toEqual(v2.json.outputs[0].rows[0].attributions);
  });

  it('bad requests: too many rows (400), an unknown model (404), a wrong method (405); inference still answers', async () => {
    const rows = Array.from({ length: 17 }, () => [0, 0, 0, 0]);
    const big = await post(`${linear.url}/v2/models/linear_ignores/explain`, {
      inputs: [{ name: 'features', datatype: 'FP32', shape: [17, 4], data: rows.flat() }],
    });
    expect(big.status).toBe(400);
    expect(String(big.json.error)).toContain('at most 16 rows (explain.maxRows)');
    expect((await post(`${linear.url}/v2/models/nope/explain`, { inputs: [] })).status).toBe(404);
    expect((await fetch(`${linear.url}/v2/models/linear_ignores/explain`)).status).toBe(405);
    const infer = await post(`${linear.url}/v2/models/linear_ignores/infer`, {
      inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 4], data: [1, 0, 0, 0] }],
    });
    expect(infer.status).toBe(200);
  });

  it('the live profile route never shows the background rows', async () => {
    const profile = (await (await fetch(`${linear.url}/v2/models/linear_ignores/profile`)).json()) as { reference: Record<string, unknown> };
    expect(profile.reference.features).toBeDefined();
    expect(profile.reference).not.toHaveProperty('explainBackground');
  });

  it('counts its calls and latency under its own route label on /metrics', async () => {
    const text = await (await fetch(`${linear.url}/metrics`)).text();
    expect(text).toMatch(/mlops_http_requests_total\{protocol="rest",route="\/v2\/models\/\{name\}\/explain",method="POST",code="200"[^}]*\} [1-9]/);
    expect(text).toMatch(/mlops_http_request_duration_seconds_count\{protocol="rest",route="\/v1\/models\/\{name\}:explain",model="linear_ignores"\} [1-9]/);
  });
});

describe('when a server cannot explain, it says why', () => {
  it('a string input is a clear 400; no background is 409; no worker threads is 503', async () => {
    // A server of its own for each case: what its explain route answers.
    const refusal = async (options: Parameters<typeof serveOptions>, body: unknown) => {
      const server = await startServer(serveOptions(...options), quiet);
      try {
        return await post(`${server.url}/v2/models/${options[0]}/explain`, body);
      } finally {
        await server.stop();
      }
    };
    const strings = await refusal(['string_echo'], { inputs: [{ name: 'text', datatype: 'BYTES', shape: [1], data: ['hi'] }] });
    expect(strings.status).toBe(400);
    expect(String(strings.json.error)).toMatch(
      /^explanations take one numeric input, \[batch, features\] \(Kernel SHAP\) or image-like \(occlusion\); model 'string_echo' has text BYTES/,
    );
    const body = { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 4], data: [0, 0, 0, 0] }] };
    const noBackground = await refusal(['linear_ignores'], body);
    expect(noBackground.status).toBe(409);
    expect(String(noBackground.json.error)).toContain('this server has no explanation background');
    const noWorkers = await refusal(['linear_ignores', { profilePath: path.join(WORK, 'linear.json'), workers: 0 }], body);
    expect(noWorkers.status).toBe(503);
    expect(String(noWorkers.json.error)).toContain('explanations run in worker threads');
  });

  it('a 30-feature classifier: sampled coalitions, every row efficient, both probability columns explained', async () => {
    const profile = await profileFor('breast_cancer', { test: { holdout: 'fixtures/breast_cancer/holdout.csv', labels: ['malignant', 'benign'] } });
    const file = path.join(WORK, 'bc.json');
    await writeFile(file, JSON.stringify(profile));
    const server = await startServer(serveOptions('breast_cancer', { profilePath: file, workers: 2 }), quiet);
    try {
      const rows = profile.explainBackground!.rows.slice(0, 2);
      const { status, json } = await post(`${server.url}/v2/models/breast_cancer/explain`, {
        inputs: [{ name: 'features', datatype: 'FP32', shape: [2, 30], data: rows.flat() }],
      });
      expect(status).toBe(200);
      expect(json).toMatchObject({ coalitions: 256, exact: false, background_rows: 100 });
      const probabilities = json.outputs.find((o) => o.name === 'probabilities')!;
      expect(probabilities.base_values).toHaveLength(2);
      for (const row of probabilities.rows) {
        expect(row.attributions).toHaveLength(30);
        for (let k = 0; k < 2; k++) expect(probabilities.base_values[k] + row.attributions.reduce((s, a) => s + a[k], 0)).toBeCloseTo(row.values[k], 5);
      }
    } finally {
      await server.stop();
    }
  });
});

describe('occlusion for image-like inputs', () => {
  it("zeroing each patch in turn: a model that sums its top-left 4x4 corner gets that corner's sum there and 0 elsewhere", async () => {
    const server = await startServer(serveOptions('region_sum', { workers: 2, explain: { samples: 256, patch: 4, maxRows: 16 } }), quiet);
    try {
      const images = [Array.from({ length: 64 }, (_, i) => (i % 7) / 7), Array.from({ length: 64 }, (_, i) => (i % 3) - 1)];
      const { status, json } = await post(`${server.url}/v2/models/region_sum/explain`, {
        inputs: [{ name: 'image', datatype: 'FP32', shape: [2, 1, 8, 8], data: images.flat() }],
      });
      expect(status, JSON.stringify(json)).toBe(200);
      expect(json).toMatchObject({ method: 'occlusion', patch: 4, baseline: 0, spatial_shape: [8, 8], grid: [2, 2], model_rows: 2 * (4 + 1) });
      const [score] = (json as unknown as { outputs: { name: string; rows: { values: number[]; column: number; map: number[][] }[] }[] }).outputs;
      expect(score.name).toBe('score');
      images.forEach((image, r) => {
        const corner = image.filter((_, i) => Math.floor(i / 8) < 4 && i % 8 < 4).reduce((a, b) => a + b, 0);
        const row = score.rows[r];
        expect(row.values[0]).toBeCloseTo(corner, 4);
        expect(row.column).toBe(0);
        // One value a patch: the top-left patch holds the corner's sum.
        expect(row.map).toEqual([
          [expect.closeTo(corner, 4), 0],
          [0, 0],
        ]);
      });
      // ?map=full: one value a position, as the 8 x 8 image.
      const full = await post(`${server.url}/v2/models/region_sum/explain?map=full`, {
        inputs: [{ name: 'image', datatype: 'FP32', shape: [2, 1, 8, 8], data: images.flat() }],
      });
      expect(full.json).not.toHaveProperty('grid');
      const fullRows = (full.json as unknown as { outputs: { rows: { map: number[][] }[] }[] }).outputs[0].rows;
      images.forEach((image, r) => {
        const corner = image.filter((_, i) => Math.floor(i / 8) < 4 && i % 8 < 4).reduce((a, b) => a + b, 0);
        expect(fullRows[r].map).toHaveLength(8);
        fullRows[r].map.forEach((line, y) => line.forEach((cell, x) => expect(cell).toBeCloseTo(y < 4 && x < 4 ? corner : 0, 4)));
      });
    } finally {
      await server.stop();
    }
  });

  it('a digits CNN: the map is for the predicted class, one value a patch of the image', async () => {
    const server = await startServer(serveOptions('digits_cnn', { workers: 2 }), quiet);
    try {
      const image = Array.from({ length: 64 }, (_, i) => (i * 5) % 17);
      const { status, json } = await post(`${server.url}/v2/models/digits_cnn/explain`, {
        inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 8, 8], data: image }],
      });
      expect(status, JSON.stringify(json)).toBe(200);
      const [probabilities] = (json as unknown as { outputs: { rows: { values: number[]; column: number; map: number[][] }[] }[] }).outputs;
      const row = probabilities.rows[0];
      expect(row.values).toHaveLength(10);
      expect(row.column).toBe(row.values.indexOf(Math.max(...row.values)));
      // Patches of 8 (explain.patch) over an 8 x 8 image: one.
      expect(json).toMatchObject({ spatial_shape: [8, 8], grid: [1, 1] });
      expect(row.map.map((line) => line.length)).toEqual([1]);
    } finally {
      await server.stop();
    }
  });
});
