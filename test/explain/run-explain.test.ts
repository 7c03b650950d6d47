/**
 * `mlops explain`, in-process on real ONNX models: Kernel SHAP's truth on a linear model, the
 * efficiency property on a non-linear one, permutation importance on a model that ignores an input;
 * occlusion maps over an image folder's pictures and token occlusion over a text CSV.
 */
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import type { GlobalExplanation } from '../../src/explain/global.js';
import { fixture, lines, runCli, withTempDir } from '../helpers.js';

async function explain(dir: string, args: string[] = []): Promise<{ code: number; report: GlobalExplanation; stderr: string }> {
  const result = await runCli(['explain', '--json', ...args], { cwd: dir });
  return { code: result.code, report: result.code === 0 ? JSON.parse(result.stdout) : (null as never), stderr: result.stderr };
}

async function project(dir: string, name: string, config: Record<string, unknown> = {}) {
  await copyFile(fixture(name, 'model.onnx'), path.join(dir, 'model.onnx'));
  // Models without a holdout of their own get a stand-in: they are refused before it is read.
  await copyFile(fixture(name, 'holdout.csv'), path.join(dir, 'holdout.csv')).catch(() => writeFile(path.join(dir, 'holdout.csv'), 'a,label\n1,0\n'));
  await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: 'model.onnx', name }, test: { holdout: 'holdout.csv', ...config } }));
}

describe('mlops explain', () => {
  it('a linear model: each attribution is w_i * (x_i - mean_i), the ignored input has none, and ranks follow |w| * spread', async () => {
    await withTempDir(async (dir) => {
      await project(dir, 'linear_ignores');
      const { code, report } = await explain(dir);
      expect(code).toBe(0);
      expect(report).toMatchObject({
        task: 'regression',
        metric: 'r2',
        holdoutRows: 300,
        explainedRows: 50,
        backgroundRows: 100,
        coalitions: 14,
        exact: true,
        modelRowsPerExplanation: 1401,
      });
      expect(report.features.map((f) => f.feature)).toEqual(['f0', 'f1', 'f3', 'f2']);
      const w: Record<string, number> = { f0: 3, f1: -2, f2: 0, f3: 0.5 };
      for (const f of report.features) {
        // Attribution against value is a line of slope w_i through (background mean, 0).
        const [[x0, a0], [x1, a1]] = [f.points[0], f.points.find((p) => Math.abs(p[0] - f.points[0][0]) > 0.2)!];
        expect((a1 - a0) / (x1 - x0)).toBeCloseTo(w[f.feature], 4);
        for (const [x, a] of f.points) expect(a).toBeCloseTo(a0 + w[f.feature] * (x - x0), 4);
      }
      const f2 = report.features.find((f) => f.feature === 'f2')!;
      expect(f2.meanAbsAttribution).toBeLessThan(1e-6);
      expect(f2.permutation).toMatchObject({ mean: 0, std: 0 });
      expect(report.features[0].permutation.mean).toBeGreaterThan(1);
      expect(report.maxEfficiencyError).toBeLessThan(1e-4);
    });
  });

  it('a classifier with 30 features: sampled coalitions, attributions plus base sum to the output, the same report twice', async () => {
    await withTempDir(async (dir) => {
      await project(dir, 'breast_cancer', { labels: ['malignant', 'benign'] });
      const first = await explain(dir, ['--rows', '10', '--markdown', 'explain.md', '--html', 'explain.html']);
      expect(first.code, first.stderr).toBe(0);
      expect(first.report).toMatchObject({
        task: 'classification',
        metric: 'accuracy',
        explainedRows: 10,
        coalitions: 256,
        exact: false,
        output: 'probabilities',
        scatterColumn: "'probabilities' class benign",
      });
      expect(first.report.base.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
      expect(first.report.maxEfficiencyError).toBeLessThan(1e-4);
      expect(first.report.features).toHaveLength(30);
      const ranked = first.report.features.map((f) => f.meanAbsAttribution);
      expect(ranked).toEqual([...ranked].sort((a, b) => b - a));
      expect(first.report.features.every((f) => f.permutation.drops.length === 5)).toBe(true);
      const again = await explain(dir, ['--rows', '10']);
      expect(again.report.features.map((f) => [f.feature, f.meanAbsAttribution, f.permutation.mean])).toEqual(
        first.report.features.map((f) => [f.feature, f.meanAbsAttribution, f.permutation.mean]),
      );
      const html = await readFile(path.join(dir, 'explain.html'), 'utf8');
      expect(html).toContain('<svg');
      expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org)/);
      expect(await readFile(path.join(dir, 'explain.md'), 'utf8')).toContain(`| 1 | ${first.report.features[0].feature} |`);
    });
  });

  it('an image model: occlusion over holdout images; a model that sums its top-left 4x4 corner looks there and nowhere else', async () => {
    await withTempDir(async (dir) => {
      await copyFile(fixture('region_sum', 'model.onnx'), path.join(dir, 'model.onnx'));
      const header = Array.from({ length: 64 }, (_, i) => `p${i}`).join(',');
      const images = Array.from({ length: 12 }, (_, r) => Array.from({ length: 64 }, (_, i) => ((i * 7 + r * 3) % 11) / 10 + 0.05));
      await writeFile(path.join(dir, 'images.csv'), [header, ...images.map((row) => row.join(','))].join('\n') + '\n');
      await writeFile(
        path.join(dir, 'mlops.config.json'),
        JSON.stringify({ model: { path: 'model.onnx', name: 'region_sum' }, test: { holdout: 'images.csv' }, explain: { patch: 4, rows: 8 } }),
      );
      const result = await runCli(['explain', '--json', '--html', 'map.html', '--markdown', 'map.md'], { cwd: dir });
      expect(result.code, result.stderr).toBe(0);
      const report = JSON.parse(result.stdout) as {
        method: string;
        spatialShape: number[];
        explainedRows: number;
        modelRowsPerExplanation: number;
        map: number[][];
        patches: { rows: number[]; columns: number[]; meanAbsAttribution: number }[];
      };
      expect(report).toMatchObject({ method: 'occlusion', spatialShape: [8, 8], explainedRows: 8, modelRowsPerExplanation: 5 });
      // The corner's mean sum over the sampled rows is all there is; every other patch moves nothing.
      expect(report.patches[0]).toMatchObject({ rows: [0, 4], columns: [0, 4] });
      expect(report.patches[0].meanAbsAttribution).toBeGreaterThan(1);
      for (const p of report.patches.slice(1)) expect(p.meanAbsAttribution).toBeCloseTo(0, 5);
      report.map.forEach((line, y) => line.forEach((cell, x) => expect(cell).toBeCloseTo(y < 4 && x < 4 ? report.patches[0].meanAbsAttribution : 0, 5)));
      const html = await readFile(path.join(dir, 'map.html'), 'utf8');
      expect(html).toContain('<svg role="img" aria-label="mean occlusion map"');
      expect(html).not.toMatch(/<(script|link|img)\b|https?:\/\//);
      expect(await readFile(path.join(dir, 'map.md'), 'utf8')).toMatch(/^### mlops explain: region_sum: 8 x 8 input; it looks most at rows 0-3, columns 0-3/);
    });
  });

  it('refuses what it cannot explain with exit 2 and one line: several inputs, a string input, a bad flag, an unknown metric', async () => {
    await withTempDir(async (dir) => {
      await project(dir, 'multi_input');
      const multi = await runCli(['explain'], { cwd: dir });
      expect(multi.code).toBe(2);
      expect(lines(multi.stderr).find((l) => l.startsWith('error:'))).toMatch(
        /^error: explanations take one numeric input, \[batch, features\] \(Kernel SHAP\) or image-like \(occlusion\), and this model has /,
      );
      await project(dir, 'linear_ignores');
      expect((await runCli(['explain', '--samples', '1'], { cwd: dir })).code).toBe(2);
      const metric = await runCli(['explain', '--metric', 'accuracy'], { cwd: dir });
      expect(metric.code).toBe(2);
      expect(metric.stderr).toContain("explain.metric 'accuracy' has no value for this regression model");
    });
    await withTempDir(async (dir) => {
      await project(dir, 'string_echo');
      const strings = await runCli(['explain'], { cwd: dir });
      expect(strings.code).toBe(2);
      expect(strings.stderr).toContain('explanations take one numeric input');
    });
  });
});

const IMAGE = fixture('shapes_image');
const TEXT = fixture('text_topic');

describe('mlops explain on an image folder', () => {
  it('draws each example map over the picture the model saw, the preprocessing undone', async () => {
    await withTempDir(async (dir) => {
      const html = path.join(dir, 'explain.html');
      const result = await runCli(['explain', '--local', '--model', IMAGE, '--holdout', path.join(IMAGE, 'holdout'), '--rows', '8', '--html', html, '--json']);
      expect(result.code, result.stderr).toBe(0);
      const report = JSON.parse(result.stdout) as { method: string; examples: { where: string; picture: string; map: number[][] }[] };
      expect(report.method).toBe('occlusion');
      expect(report.examples.map((e) => e.where.split('/')[0])).toEqual(['circle', 'cross', 'square', 'triangle']);
      // The picture is the image at the model's size: 64 x 64, the pixels of the holdout file resized.
      const picture = Buffer.from(report.examples[0].picture.replace('data:image/png;base64,', ''), 'base64');
      const meta = await sharp(picture).metadata();
      expect([meta.width, meta.height]).toEqual([64, 64]);
      const written = await readFile(html, 'utf8');
      expect(written).toContain('<image href="data:image/png;base64,');
      expect(written).not.toMatch(/<(script|link|img)\b|https?:\/\/(?!www\.w3\.org)/);
    });
  });
});

describe('mlops explain on a text CSV', () => {
  it('ranks vocabulary tokens by the fall when each is masked, and shades sentences token by token', async () => {
    await withTempDir(async (dir) => {
      const html = path.join(dir, 'explain.html');
      const result = await runCli([
        'explain',
        '--local',
        '--model',
        TEXT,
        '--holdout',
        path.join(TEXT, 'holdout.csv'),
        '--rows',
        '30',
        '--html',
        html,
        '--json',
      ]);
      expect(result.code, result.stderr).toBe(0);
      const report = JSON.parse(result.stdout) as {
        method: string;
        maskToken: string;
        explainedRows: number;
        tokens: { token: string; meanAbsAttribution: number }[];
        examples: { label: string; tokens: { token: string }[] }[];
      };
      expect(report).toMatchObject({ method: 'token-occlusion', maskToken: '[MASK]', explainedRows: 30 });
      // A topic classifier leans on topic words, not on punctuation or special tokens.
      const top = report.tokens.slice(0, 10).map((t) => t.token);
      expect(top.filter((t) => /^[a-z]{3,}$/.test(t)).length).toBeGreaterThanOrEqual(8);
      expect(report.tokens.map((t) => t.token)).not.toContain('[CLS]');
      expect(report.tokens.map((t) => t.token)).not.toContain('[PAD]');
      expect(report.examples[0].label).toMatch(/^(sports|weather|cooking)$/);
      const written = await readFile(html, 'utf8');
      expect(written).toContain('<span class="token"');
      expect(written).not.toMatch(/<(script|link|img)\b|https?:\/\/(?!www\.w3\.org)/);
    });
  });
});
