/** src/evaluate/quality-test.ts, the core of `mlops test`, and evaluate.ts under it: metrics, gates, baselines, reports and parity. */
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyDefaults } from '../../src/config/normalize.js';
import { evaluate } from '../../src/evaluate/evaluate.js';
import { openHoldout } from '../../src/holdout/open.js';
import { classificationMetrics } from '../../src/metrics/classification.js';
import { regressionMetrics } from '../../src/metrics/regression.js';
import { openLocalPredictor, type Predictor } from '../../src/predict/predictor.js';
import { expectClose, fixture, lines, runCli, withTempDir } from '../helpers.js';
import { writeNpy } from '../npy.js';

const json = async (file: string) => JSON.parse(await readFile(file, 'utf8'));
const csvRows = async (name: string) =>
  (await readFile(fixture(name, 'holdout.csv'), 'utf8'))
    .trim()
    .split(/\r?\n/)
    .slice(1)
    .map((l) => l.split(','));

/** A config file for a fixture model, in a temp project. */
async function project(dir: string, name: string, test: Record<string, unknown> = {}) {
  await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: fixture(name, 'model.onnx') }, test }));
}

const COUNT_METRICS = [
  'accuracy',
  'balanced_accuracy',
  'precision_macro',
  'recall_macro',
  'f1_macro',
  'precision_weighted',
  'recall_weighted',
  'f1_weighted',
  'confusion_matrix',
  'per_class',
];

describe('metrics on the fixtures match scikit-learn', () => {
  it('breast cancer (probabilities): on the framework outputs to 1e-9, and end to end through ONNX Runtime', async () => {
    const expected = await json(fixture('breast_cancer', 'metrics.sklearn.json'));
    const labels = await json(fixture('breast_cancer', 'labels.json'));
    const proba = (await json(fixture('breast_cancer', 'expected_outputs.json'))).probabilities as number[][];
    const yTrue = (await csvRows('breast_cancer')).map((r) => labels.indexOf(r.at(-1)));
    const yPred = proba.map((p) => (p[1] > p[0] ? 1 : 0));
    expectClose(classificationMetrics(yTrue, yPred, proba.flat(), labels), expected);

    await withTempDir(async (dir) => {
      await project(dir, 'breast_cancer', { labels });
      const { code, stdout } = await runCli(['test', '--local', '--holdout', fixture('breast_cancer', 'holdout.csv'), '--json'], { cwd: dir });
      expect(code).toBe(0);
      const report = JSON.parse(stdout);
      expect(report).toMatchObject({ mode: 'local', task: 'classification', rows: 114, outputKind: 'probabilities', passed: true, parity: null });
      for (const key of COUNT_METRICS) expectClose(report.metrics[key], expected[key], key);
      expect(Math.abs(report.metrics.log_loss - expected.log_loss)).toBeLessThan(1e-5);
      expect(Math.abs(report.metrics.roc_auc - expected.roc_auc)).toBeLessThan(1e-5);
    });
  });

  it('wine (logits, three classes): softmax applied, JSONL and CSV agree', async () => {
    const expected = await json(fixture('wine', 'metrics.sklearn.json'));
    await withTempDir(async (dir) => {
      await project(dir, 'wine');
      const fromCsv = JSON.parse((await runCli(['test', '--local', '--holdout', fixture('wine', 'holdout.csv'), '--json'], { cwd: dir })).stdout);
      const fromJsonl = JSON.parse((await runCli(['test', '--local', '--holdout', fixture('wine', 'holdout.jsonl'), '--json'], { cwd: dir })).stdout);
      expect(fromCsv.outputKind).toBe('logits');
      expect(fromJsonl.metrics).toEqual(fromCsv.metrics);
      for (const key of COUNT_METRICS) expectClose(fromCsv.metrics[key], expected[key], key);
      expect(Math.abs(fromCsv.metrics.log_loss - expected.log_loss)).toBeLessThan(1e-5);
      expect(Math.abs(fromCsv.metrics.roc_auc - expected.roc_auc)).toBeLessThan(1e-5);
    });
  });

  it('diabetes (regression): on the framework outputs to 1e-9, and end to end', async () => {
    const expected = await json(fixture('diabetes', 'metrics.sklearn.json'));
    const predictions = (await json(fixture('diabetes', 'expected_outputs.json'))).progression.map((p: number[]) => p[0]);
    const yTrue = (await csvRows('diabetes')).map((r) => Number(r.at(-1)));
    expectClose(regressionMetrics(yTrue, predictions), expected);
    await withTempDir(async (dir) => {
      await project(dir, 'diabetes', { label: 'target' });
      const { code, stdout } = await runCli(['test', '--local', '--holdout', fixture('diabetes', 'holdout.csv'), '--json'], { cwd: dir });
      expect(code).toBe(0);
      const report = JSON.parse(stdout);
      expect(report.task).toBe('regression');
      for (const key of Object.keys(expected)) expect(Math.abs(report.metrics[key] - expected[key]) / Math.max(1, Math.abs(expected[key]))).toBeLessThan(1e-5);
    });
  });

  it('reads .npy pairs, with string labels', async () => {
    await withTempDir(async (dir) => {
      const rows = await csvRows('breast_cancer');
      await writeNpy(
        path.join(dir, 'x.npy'),
        rows.flatMap((r) => r.slice(0, 30).map(Number)),
        [rows.length, 30],
        '<f4',
      );
      await writeNpy(
        path.join(dir, 'y.npy'),
        rows.map((r) => r[30]),
        [rows.length],
        '<U16',
      );
      await project(dir, 'breast_cancer', { labels: ['malignant', 'benign'] });
      const npy = JSON.parse((await runCli(['test', '--local', '--holdout', 'x.npy', '--labels', 'y.npy', '--json'], { cwd: dir })).stdout);
      const csv = JSON.parse((await runCli(['test', '--local', '--holdout', fixture('breast_cancer', 'holdout.csv'), '--json'], { cwd: dir })).stdout);
      expect(npy.rows).toBe(114);
      expect(npy.metrics.confusion_matrix).toEqual(csv.metrics.confusion_matrix);
      expect(npy.holdout.format).toBe('npy');
      // In CI the pair comes from config: test.holdout and test.labelsFile, no flags.
      await project(dir, 'breast_cancer', { labels: ['malignant', 'benign'], holdout: 'x.npy', labelsFile: 'y.npy' });
      const configured = await runCli(['test', '--local', '--json'], { cwd: dir });
      expect(configured.code, configured.stderr).toBe(0);
      expect(JSON.parse(configured.stdout).metrics.confusion_matrix).toEqual(csv.metrics.confusion_matrix);
    });
  });
});

describe('other model shapes', () => {
  it('maps CSV columns across two inputs in file order, with an INT64 input and an integer label output', async () => {
    const expected = await json(fixture('multi_input', 'expected_outputs.json'));
    await withTempDir(async (dir) => {
      const header = ['d0', 'd1', 'd2', 'd3', 'i0', 'i1', 'i2', 'label'];
      const body = expected.inputs.dense.map((d: number[], r: number) => [...d, ...expected.inputs.ids[r], expected.outputs.label[r]].join(','));
      await writeFile(path.join(dir, 'h.csv'), [header.join(','), ...body].join('\n') + '\n');
      await project(dir, 'multi_input', { output: 'label' });
      const { code, stdout, stderr } = await runCli(['test', '--local', '--holdout', 'h.csv', '--json'], { cwd: dir });
      expect(code, stderr).toBe(0);
      const report = JSON.parse(stdout);
      expect(report.outputKind).toBe('labels');
      expect(report.metrics.accuracy).toBe(1);
      expect(Object.keys(report.featureStats)).toEqual(header.slice(0, -1));
      // The same with an explicit mapping, columns shuffled.
      await project(dir, 'multi_input', { output: 'label', features: { ids: ['i0', 'i1', 'i2'], dense: ['d0', 'd1', 'd2', 'd3'] } });
      const mapped = JSON.parse((await runCli(['test', '--local', '--holdout', 'h.csv', '--json'], { cwd: dir })).stdout);
      expect(mapped.metrics).toEqual(report.metrics);
      // Without test.output the class scores are preferred over the integer label output.
      await project(dir, 'multi_input');
      const scored = JSON.parse((await runCli(['test', '--local', '--holdout', 'h.csv', '--json'], { cwd: dir })).stdout);
      expect(scored).toMatchObject({ output: 'scores', outputKind: 'logits' });
      expect(scored.metrics.accuracy).toBe(1);
      expect(scored.metrics.log_loss).toBeGreaterThan(0);
    });
  });

  it('runs a fixed-batch model one row at a time, padding nothing away', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'h.jsonl'), [0, 1, 2].map((i) => JSON.stringify({ x: [i, -i, 0.5, 1], label: i % 2 })).join('\n'));
      await project(dir, 'fixed_batch', { task: 'classification' });
      const { code, stdout, stderr } = await runCli(['test', '--local', '--holdout', 'h.jsonl', '--json'], { cwd: dir });
      expect(code, stderr).toBe(0);
      expect(JSON.parse(stdout).rows).toBe(3);
    });
  });
});

describe('gates, baselines and reports', () => {
  it('exits 1 with every gate in the report, writes JUnit and Markdown, and appends the step summary', async () => {
    await withTempDir(async (dir) => {
      await project(dir, 'breast_cancer', { labels: ['malignant', 'benign'], gates: { accuracy: '>= 0.95' } });
      const summary = path.join(dir, 'summary.md');
      await appendFile(summary, 'before\n');
      const { code, stdout } = await runCli(
        [
          'test',
          '--local',
          '--holdout',
          fixture('breast_cancer', 'holdout.csv'),
          '--gate',
          'f1_macro>=0.999',
          '--gate',
          'log_loss < 1',
          '--junit',
          'out/junit.xml',
          '--markdown',
          'out/summary.md',
          '--json',
        ],
        { cwd: dir, env: { GITHUB_STEP_SUMMARY: summary } },
      );
      expect(code).toBe(1);
      const report = JSON.parse(stdout);
      expect(report.passed).toBe(false);
      expect(report.gates.map((g: { metric: string; passed: boolean }) => [g.metric, g.passed])).toEqual([
        ['accuracy', true],
        ['f1_macro', false],
        ['log_loss', true],
      ]);
      expect(report.gates[1]).toMatchObject({ op: '>=', threshold: 0.999 });
      const junit = await readFile(path.join(dir, 'out/junit.xml'), 'utf8');
      expect(junit).toContain('tests="3" failures="1"');
      expect(junit).toContain('<testcase classname="mlops test" name="f1_macro &gt;= 0.999">');
      const markdown = await readFile(path.join(dir, 'out/summary.md'), 'utf8');
      expect(markdown).toContain('## mlops test: FAILED');
      expect(await readFile(summary, 'utf8')).toBe(`before\n${markdown}`);
      expect(report.featureStats.mean_radius).toMatchObject({ count: 114 });
      expect(report.featureStats.mean_radius.quantiles.p50).toBeGreaterThan(report.featureStats.mean_radius.min);
    });
  });

  it('fails a metric that dropped more than test.maxDrop from the baseline', async () => {
    await withTempDir(async (dir) => {
      await project(dir, 'breast_cancer', { labels: ['malignant', 'benign'], maxDrop: { accuracy: 0.001, log_loss: 0.5 } });
      const base = { metrics: { accuracy: 0.999, log_loss: 0.2 } };
      await writeFile(path.join(dir, 'base.json'), JSON.stringify(base));
      const { code, stdout } = await runCli(['test', '--local', '--holdout', fixture('breast_cancer', 'holdout.csv'), '--baseline', 'base.json', '--json'], {
        cwd: dir,
      });
      expect(code).toBe(1);
      const gates = JSON.parse(stdout).gates;
      expect(gates).toEqual([
        expect.objectContaining({ metric: 'accuracy', op: 'max_drop', threshold: 0.001, baseline: 0.999, passed: false }),
        expect.objectContaining({ metric: 'log_loss', op: 'max_drop', threshold: 0.5, baseline: 0.2, passed: true }),
      ]);
    });
  });

  it('refuses a gate on an unknown metric, and a malformed --gate', async () => {
    await withTempDir(async (dir) => {
      await project(dir, 'diabetes', { label: 'target' });
      const unknown = await runCli(['test', '--local', '--holdout', fixture('diabetes', 'holdout.csv'), '--gate', 'accuracy>=0.9'], { cwd: dir });
      expect(unknown.code).toBe(2);
      expect(lines(unknown.stderr).find((l) => l.startsWith('error:'))).toBe("error: gate on unknown metric 'accuracy' for regression");
      const malformed = await runCli(['test', '--local', '--holdout', fixture('diabetes', 'holdout.csv'), '--gate', 'r2 high'], { cwd: dir });
      expect(malformed.code).toBe(2);
      expect(malformed.stderr).toContain(`--gate "r2 high": expected metric, comparison and number`);
    });
  });
});

describe('parity', () => {
  it('fails with the row and both values when the server differs from in-process ONNX Runtime', async () => {
    const config = applyDefaults({ test: { labels: ['malignant', 'benign'] } });
    const reference = await openLocalPredictor(fixture('breast_cancer', 'model.onnx'));
    const inner = await openLocalPredictor(fixture('breast_cancer', 'model.onnx'));
    // A "server" whose packaging shifts one output a little: what parity exists to catch.
    const skewed: Predictor = {
      ...inner,
      async predict(feeds) {
        const out = await inner.predict(feeds);
        const data = Float64Array.from(out.probabilities.data as ArrayLike<number>);
        data[1] += 0.01;
        return { probabilities: { data, dims: out.probabilities.dims } };
      },
    };
    const holdout = await openHoldout({ cwd: '/', holdout: fixture('breast_cancer', 'holdout.csv'), inputs: reference.inputs, label: 'label', features: [] });
    const result = await evaluate({ predictor: skewed, reference, holdout, settings: { ...config.test, batchSize: 1000 } });
    expect(result.parity).toMatchObject({ passed: false, rows: 114, tolerance: 1e-4 });
    expect(result.parity!.maxAbsDiff).toBeCloseTo(0.01, 6);
    expect(result.parity!.worst).toMatchObject({ row: 'row 2', output: 'probabilities', index: 1 });
    await reference.close();
    await inner.close();
  });
});
