/** The profiles src/monitor/ compares: the reference profile mlops build writes (reference.ts, profile.ts), and the live one the server counts (live.ts). */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { binCounts } from '../../src/monitor/drift.js';
import type { ProfileDocument } from '../../src/monitor/live.js';
import { MAX_SUMMARY_VALUES, planFeatures, summariseRow, type ReferenceProfile } from '../../src/monitor/profile.js';
import { startServer, type RunningServer } from '../../src/server/run.js';
import { fixture, holdoutRows, profileFor, ROOT, serveOptions, withTempDir } from '../helpers.js';
import { writeNpy } from '../npy.js';

const quiet = () => undefined;

async function infer(server: RunningServer, rows: number[][]): Promise<void> {
  const body = { inputs: [{ name: 'features', datatype: 'FP32', shape: [rows.length, rows[0].length], data: rows.flat() }] };
  const response = await fetch(`${server.url}/v2/models/${server.modelName}/infer`, { method: 'POST', body: JSON.stringify(body) });
  expect(response.status).toBe(200);
}

describe('reference profile (mlops build)', () => {
  it('bins every CSV column of a tabular input at its quantiles, with the shares of every row, and the predicted classes', async () => {
    const profile = await profileFor('breast_cancer', { test: { holdout: 'fixtures/breast_cancer/holdout.csv' } });
    const { header, rows } = holdoutRows();
    expect(profile.source).toEqual({ file: 'fixtures/breast_cancer/holdout.csv', format: 'csv', rows: rows.length });
    expect(profile.features.map((f) => f.name)).toEqual(header);
    expect(profile.bins).toBe(10);
    for (const [i, f] of profile.features.entries()) {
      const column = rows.map((r) => Math.fround(r[i]));
      expect(f.edges).toHaveLength(11);
      expect(f.edges[0]).toBe(Math.min(...column));
      expect(f.edges[10]).toBe(Math.max(...column));
      const counts = binCounts(column, f.edges);
      expect(f.shares.map((s) => s * rows.length).map(Math.round), f.name).toEqual(counts);
      expect(f.count).toBe(rows.length);
    }
    expect(profile.prediction).toMatchObject({ output: 'probabilities', kind: 'argmax', classes: ['0', '1'] });
    expect(profile.prediction!.shares!.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    expect(profile.warnings).toEqual([]);
  });

  it('names a constant column in a warning and still gives valid bins', async () => {
    await withTempDir(async (dir) => {
      const [head, ...body] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split('\n');
      const file = path.join(dir, 'constant.csv');
      await writeFile(file, [head, ...body.map((line) => line.replace(/^[^,]+/, '7'))].join('\n'));
      const profile = await profileFor('breast_cancer', { monitor: { reference: file } });
      expect(profile.warnings).toEqual([expect.stringMatching(/^feature 'mean_radius' is constant \(7\)/)]);
      const f = profile.features[0];
      expect(f.edges).toEqual(new Array(11).fill(7));
      expect(f.shares.slice(1, 11).reduce((a, b) => a + b, 0)).toBe(1);
    });
  });

  it('without reference data still counts the predicted classes, and says why there is no drift', async () => {
    const profile = await profileFor('wine', {});
    expect(profile.unavailable).toMatch(/no reference data: set monitor.reference/);
    expect(profile.features).toEqual([]);
    expect(profile.prediction).toMatchObject({ kind: 'argmax', classes: ['0', '1', '2'], shares: null });
  });

  it('builds without a profile, and says why, when test.holdout does not fit the model; a monitor.reference that does not fit is an error', async () => {
    const borrowed = await profileFor('wine', { test: { holdout: 'fixtures/breast_cancer/holdout.csv' } });
    expect(borrowed.unavailable).toMatch(/^the reference data could not be profiled: test.holdout: .*holdout.csv: extra columns/);
    expect(borrowed.warnings).toEqual([expect.stringMatching(/^no reference profile, so no drift checks: .*set monitor.reference/)]);
    await expect(profileFor('wine', { monitor: { reference: 'fixtures/breast_cancer/holdout.csv' } })).rejects.toThrow(/^monitor.reference: .*extra columns/);
  });

  it('needs no labels in the reference data (CSV without the label column, JSONL without the key, .npy alone)', async () => {
    await withTempDir(async (dir) => {
      const [head, ...body] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split(/\r?\n/);
      const drop = head.split(',').indexOf('label');
      const strip = (line: string) =>
        line
          .split(',')
          .filter((_, i) => i !== drop)
          .join(',');
      await writeFile(path.join(dir, 'unlabelled.csv'), [strip(head), ...body.map(strip)].join('\n'));
      const labelled = await profileFor('breast_cancer', { monitor: { reference: 'fixtures/breast_cancer/holdout.csv' } });
      const csv = await profileFor('breast_cancer', { monitor: { reference: path.join(dir, 'unlabelled.csv') } });
      expect(csv.features.map((f) => f.shares)).toEqual(labelled.features.map((f) => f.shares));

      const rows = body.map((line) =>
        line
          .split(',')
          .map(Number)
          .filter((_, i) => i !== drop),
      );
      await writeFile(path.join(dir, 'unlabelled.jsonl'), rows.map((r) => JSON.stringify({ features: r })).join('\n'));
      const jsonl = await profileFor('breast_cancer', { monitor: { reference: path.join(dir, 'unlabelled.jsonl') } });
      expect(jsonl.features.map((f) => f.edges)).toEqual(labelled.features.map((f) => f.edges.map((e) => e)));
      expect(jsonl.source).toMatchObject({ format: 'jsonl', rows: rows.length });

      await writeNpy(path.join(dir, 'x.npy'), rows.flat(), [rows.length, 30], '<f4');
      const npy = await profileFor('breast_cancer', { monitor: { reference: path.join(dir, 'x.npy') } });
      expect(npy.features.map((f) => f.edges)).toEqual(labelled.features.map((f) => f.edges));
      expect(npy.source).toMatchObject({ format: 'npy', rows: rows.length });
    });
  });

  it('summarises inputs of higher rank (images) by row statistics, and skips strings', () => {
    const { features, skipped } = planFeatures(
      [
        { name: 'image', datatype: 'FP32', shape: [-1, 3, 32, 32] },
        { name: 'wide', datatype: 'FP32', shape: [-1, 1000] },
        { name: 'age', datatype: 'INT64', shape: [-1] },
        { name: 'text', datatype: 'BYTES', shape: [-1, 1] },
      ],
      {},
    );
    expect(features.map((f) => f.name)).toEqual(['image.mean', 'image.std', 'image.min', 'image.max', 'wide.mean', 'wide.std', 'wide.min', 'wide.max', 'age']);
    expect(skipped).toEqual([{ input: 'text', reason: 'strings are not profiled' }]);
  });
});

describe('row statistics of a large input', () => {
  it('are exact up to MAX_SUMMARY_VALUES values, and taken from 16 runs spread over the row beyond', () => {
    const row = Float32Array.from({ length: 3000 }, (_, i) => Math.sin(i) * 10 + (i % 7));
    const values = Array.from(row);
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
    const summary = summariseRow(row, 0, row.length);
    expect(summary.mean).toBeCloseTo(mean, 10);
    expect(summary.std).toBeCloseTo(std, 9);
    expect([summary.min, summary.max]).toEqual([Math.min(...values), Math.max(...values)]);

    // Runs of 256 values start at floor(c * (150528 - 256) / 15): the sample is exactly the values there.
    const image = Float32Array.from({ length: 3 * 224 * 224 }, (_, i) => i);
    const sampled: number[] = [];
    for (let c = 0; c < 16; c++) for (let i = 0; i < MAX_SUMMARY_VALUES / 16; i++) sampled.push(Math.floor((c * (image.length - 256)) / 15) + i);
    const sampledMean = sampled.reduce((a, b) => a + b, 0) / sampled.length;
    const summary2 = summariseRow(image, 0, image.length);
    expect(summary2.mean).toBeCloseTo(sampledMean, 6);
    expect([summary2.min, summary2.max]).toEqual([0, image.length - 1]);
    expect(summary2.mean / (image.length / 2)).toBeCloseTo(1, 2);
  });
});

describe('live profile (the server counts what it serves)', () => {
  let profileFile: string;
  let profile: ReferenceProfile;
  let dir: string;
  beforeAll(async () => {
    profile = await profileFor('breast_cancer', { test: { holdout: 'fixtures/breast_cancer/holdout.csv' }, monitor: { windowRows: 50 } });
    dir = path.join(ROOT, '.mlops', 'test-profile');
    profileFile = path.join(dir, 'profile.json');
    await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
    await writeFile(profileFile, JSON.stringify(profile));
  });
  afterAll(async () => {
    await import('node:fs/promises').then((fs) => fs.rm(dir, { recursive: true, force: true }));
  });

  // Main thread (small batches of a fast model), worker threads, and whole bodies decoded in a worker.
  for (const [where, overrides] of [
    ['on the main thread', { workers: 2 }],
    ['in worker threads', { workers: 2, inlineMaxMs: 0 }],
    ['for bodies decoded in a worker', { workers: 1, inlineMaxMs: 0, offloadBytes: 0 }],
  ] as const) {
    it(`counts each served row in the reference bins ${where}, since start and over the window`, async () => {
      const server = await startServer(serveOptions('breast_cancer', { ...overrides, profilePath: profileFile }), quiet);
      try {
        const { rows } = holdoutRows();
        // Shifted: the first feature scaled by 1.5, so some rows fall above the reference's maximum.
        const sent = rows.map((r) => r.map((v, i) => (i === 0 ? v * 1.5 : v)));
        for (let i = 0; i < sent.length; i += 7) await infer(server, sent.slice(i, i + 7));
        const doc = (await (await fetch(`${server.url}/v2/models/${server.modelName}/profile`)).json()) as ProfileDocument;
        expect(doc.live.rows).toBe(sent.length);
        expect(doc.live.window.rows).toBe(50);
        expect(doc.reference?.features).toHaveLength(30);
        for (const [i, f] of profile.features.entries()) {
          const column = sent.map((r) => Math.fround(r[i]));
          expect(doc.live.features[f.name].total, f.name).toEqual([...binCounts(column, f.edges), 0]);
          expect(doc.live.features[f.name].window, f.name).toEqual([...binCounts(column.slice(-50), f.edges), 0]);
        }
        expect(doc.live.features.mean_radius.total.at(-2)).toBeGreaterThan(0);
        const predicted = doc.live.prediction!.total;
        expect(predicted.reduce((a, b) => a + b, 0)).toBe(sent.length);

        const metrics = await (await fetch(`${server.url}/metrics`)).text();
        const reference = doc.referenceSha256!.slice(0, 12);
        expect(metrics).toContain(`mlops_profiled_rows_total{reference="${reference}",model="breast_cancer",version="1"} ${sent.length}`);
        expect(metrics).toContain(
          `mlops_feature_out_of_range_total{feature="mean_radius",side="above",reference="${reference}",model="breast_cancer",version="1"} ${doc.live.features.mean_radius.total.at(-2)}`,
        );
        expect(metrics).toContain(`mlops_prediction_class_total{class="1",reference="${reference}",model="breast_cancer",version="1"} ${predicted[1]}`);
        expect(metrics).toMatch(/# TYPE mlops_feature_bin_total counter/);
      } finally {
        await server.stop();
      }
    });
  }

  it('serves unprofiled, and says why, when the profile is for another model', async () => {
    const logged: string[] = [];
    const server = await startServer(serveOptions('wine', { profilePath: profileFile }), (l) => logged.push(l));
    try {
      const response = await fetch(`${server.url}/v2/models/${server.modelName}/profile`);
      expect(response.status).toBe(409);
      expect(((await response.json()) as { error: string }).error).toMatch(/does not match the model: it was built for model sha256/);
      expect(logged.join('\n')).toMatch(/warning: not profiling live traffic/);
    } finally {
      await server.stop();
    }
  });

  it('refuses to start on an unreadable profile file, naming it', async () => {
    await expect(startServer(serveOptions('wine', { profilePath: path.join(dir, 'missing.json') }), quiet)).rejects.toThrow(
      /reference profile .*missing.json: cannot be read/,
    );
  });
});
