import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { QualityReport } from '../../src/monitor/quality.js';
import { startServer } from '../../src/server/run.js';
import { expectClose, fixture, runCli, serveOptions, withTempDir } from '../helpers.js';

const quiet = () => undefined;

interface Fixture {
  model: string;
  label: string;
  input: string;
  test?: Record<string, unknown>;
}

const FIXTURES: Fixture[] = [
  { model: 'breast_cancer', label: 'label', input: 'features', test: { labels: ['malignant', 'benign'] } },
  { model: 'wine', label: 'label', input: 'features' },
  { model: 'diabetes', label: 'target', input: 'features', test: { label: 'target' } },
];

async function holdout(model: string, label: string): Promise<{ rows: number[][]; labels: string[] }> {
  const [head, ...body] = (await readFile(fixture(model, 'holdout.csv'), 'utf8')).trim().split(/\r?\n/);
  const at = head.split(',').indexOf(label);
  const cells = body.map((line) => line.split(','));
  return { rows: cells.map((c) => c.filter((_, i) => i !== at).map(Number)), labels: cells.map((c) => c[at]) };
}

async function project(dir: string, f: Fixture, extra: Record<string, unknown> = {}): Promise<void> {
  await copyFile(fixture(f.model, 'model.onnx'), path.join(dir, 'model.onnx'));
  await copyFile(fixture(f.model, 'holdout.csv'), path.join(dir, 'holdout.csv'));
  await writeFile(
    path.join(dir, 'mlops.config.json'),
    JSON.stringify({ model: { path: 'model.onnx', name: f.model }, test: { holdout: 'holdout.csv', parity: { sample: 0 }, ...f.test }, ...extra }),
  );
}

/**
 * Serves the model with the file sink logging every request, sends the rows in
 * requests of 1, 3 and 7 rows under ids of our own, and returns the log and
 * the labels file a team would write when the truth arrives (id, row, label).
 */
async function logTraffic(
  dir: string,
  f: Fixture,
  rows: number[][],
  options: { idPrefix?: string } = {},
): Promise<{ log: string; answered: { id: string; rows: number; first: number }[] }> {
  const log = path.join(dir, `log-${options.idPrefix ?? 'r'}.jsonl`);
  const server = await startServer(serveOptions(f.model, { modelName: f.model, inferenceLog: { sample: 1, sink: `file:${log}`, inputs: false } }), quiet);
  const answered: { id: string; rows: number; first: number }[] = [];
  try {
    const sizes = [1, 3, 7];
    for (let at = 0, n = 0; at < rows.length; n++) {
      const batch = rows.slice(at, at + sizes[n % 3]);
      const id = `${options.idPrefix ?? 'r'}-${n}`;
      const body = { id, inputs: [{ name: f.input, datatype: 'FP32', shape: [batch.length, batch[0].length], data: batch.flat() }] };
      const response = await fetch(`${server.url}/v2/models/${f.model}/infer`, { method: 'POST', body: JSON.stringify(body) });
      expect(response.status).toBe(200);
      answered.push({ id, rows: batch.length, first: at });
      at += batch.length;
    }
  } finally {
    await server.stop();
  }
  return { log, answered };
}

function labelsCsv(answered: { id: string; rows: number; first: number }[], labels: string[]): string {
  const lines = ['id,row,label'];
  for (const a of answered) for (let r = 0; r < a.rows; r++) lines.push(`${a.id},${a.rows > 1 ? r : ''},${labels[a.first + r]}`);
  return lines.join('\n') + '\n';
}

async function monitorJson(dir: string, ...args: string[]) {
  const result = await runCli(['monitor', ...args, '--json'], { cwd: dir });
  return { ...result, report: result.stdout ? (JSON.parse(result.stdout) as QualityReport) : undefined };
}

describe('mlops monitor --labels: live quality from the inference log', () => {
  for (const f of FIXTURES) {
    it(`gives the metrics mlops test gives on the same rows, to 1e-9 (${f.model})`, async () => {
      await withTempDir(async (dir) => {
        await project(dir, f, { monitor: { minRows: 10 } });
        const { rows, labels } = await holdout(f.model, f.label);
        const { log, answered } = await logTraffic(dir, f, rows);
        await writeFile(path.join(dir, 'labels.csv'), labelsCsv(answered, labels));
        const live = await monitorJson(dir, '--labels', 'labels.csv', '--log', path.basename(log));
        expect(live.code, live.stderr).toBe(0);
        const tested = await runCli(['test', '--local', '--json'], { cwd: dir });
        expect(tested.code, tested.stderr).toBe(0);
        const report = live.report!;
        expect(report.join).toMatchObject({ labels: rows.length, matched: rows.length, coverage: 1, loggedRows: rows.length, skipped: {} });
        const expected = JSON.parse(tested.stdout) as { metrics: Record<string, unknown>; task: string; outputKind: string };
        expect(report.task).toBe(expected.task);
        expect(report.outputKind).toBe(expected.outputKind);
        expectClose(report.metrics, expected.metrics, 'metrics');
        expect(report.model).toMatchObject({ name: f.model, version: '1' });
      });
    });
  }

  it('counts what it cannot score, by reason, and never lets it into the metrics', async () => {
    const f = FIXTURES[1];
    await withTempDir(async (dir) => {
      await project(dir, f, { monitor: { minRows: 1 } });
      const { rows, labels } = await holdout(f.model, f.label);
      const { log, answered } = await logTraffic(dir, f, rows.slice(0, 30));
      // The same id answered twice with different rows: which prediction the label is for cannot be known.
      const twice = await logTraffic(dir, f, [rows[40]], { idPrefix: 'r' });
      const good = answered.filter((a) => a.rows === 1);
      const lines = ['id,row,label'];
      for (const a of good.slice(1)) lines.push(`${a.id},,${labels[a.first]}`);
      lines.push(`${good[1].id},,${labels[good[1].first]}`); // a duplicate, same label: kept once
      lines.push('never-logged,,1'); // no prediction
      const multi = answered.find((a) => a.rows === 3)!;
      lines.push(`${multi.id},,1`); // a three-row request, no row given
      const seven = answered.find((a) => a.rows === 7)!;
      lines.push(`${seven.id},0,7`); // not one of the model's classes (0..2)
      lines.push(`${seven.id},1,0`, `${seven.id},1,2`); // one (id, row), two labels
      lines.push(`${good[0].id},,${labels[good[0].first]}`); // r-0: logged twice with different outputs
      await writeFile(path.join(dir, 'labels.csv'), lines.join('\n') + '\n');
      const live = await monitorJson(dir, '--labels', 'labels.csv', '--log', path.basename(log), '--log', path.basename(twice.log));
      expect(live.code, live.stderr).toBe(0);
      const { join } = live.report!;
      expect(join.matched).toBe(good.length - 1);
      expect(join.duplicateLabels).toBe(1);
      expect(join.conflictingLabels).toBe(1);
      expect(join.skipped['no-prediction']).toMatchObject({ count: 1, example: expect.stringContaining('never-logged') });
      expect(join.skipped['ambiguous-row']).toMatchObject({ count: 1, example: expect.stringContaining('the request had 3 rows; add a row column') });
      expect(join.skipped['unscorable-label']).toMatchObject({ count: 1, example: expect.stringMatching(/'7' is outside the model's classes \(0\.\.2\)/) });
      expect(join.skipped['conflicting-predictions']).toMatchObject({ count: 1, example: expect.stringContaining(good[0].id) });
      expect(join.labels).toBe(good.length - 1 + 1 + 1 + 1 + 1);
      expect(join.coverage).toBeCloseTo(join.matched / join.labels, 12);
      // The metrics are those of the matched rows alone: the confusion matrix holds exactly them.
      const matrix = (live.report!.metrics as unknown as { confusion_matrix: number[][] }).confusion_matrix;
      expect(matrix.flat().reduce((a, b) => a + b, 0)).toBe(join.matched);
    });
  });

  it("holds live quality against the version's test metrics (monitor.maxDrop) and absolute gates: exit 1 on a drop", async () => {
    const f = FIXTURES[0];
    await withTempDir(async (dir) => {
      await project(dir, f, { monitor: { minRows: 10, maxDrop: { accuracy: 0.05 }, gates: { accuracy: '>= 0.5', drifted_share: '< 0.5' } } });
      const { rows, labels } = await holdout(f.model, f.label);
      const { log, answered } = await logTraffic(dir, f, rows);
      const tested = await runCli(['test', '--local', '--json'], { cwd: dir });
      await writeFile(path.join(dir, 'baseline.json'), tested.stdout);
      await writeFile(path.join(dir, 'labels.csv'), labelsCsv(answered, labels));
      const same = await monitorJson(dir, '--labels', 'labels.csv', '--log', path.basename(log), '--baseline', 'baseline.json');
      expect(same.code, same.stderr).toBe(0);
      expect(same.report!.gates.map((g) => [g.metric, g.op, g.passed])).toEqual([
        ['accuracy', '>=', true],
        ['accuracy', 'max_drop', true],
      ]);
      // The truth turns out otherwise for a quarter of the rows: live accuracy falls well past the allowed drop.
      const flipped = labels.map((l, i) => (i % 4 === 0 ? (l === 'malignant' ? 'benign' : 'malignant') : l));
      await writeFile(path.join(dir, 'labels.csv'), labelsCsv(answered, flipped));
      const worse = await monitorJson(dir, '--labels', 'labels.csv', '--log', path.basename(log), '--baseline', 'baseline.json', '--markdown', 'quality.md');
      expect(worse.code).toBe(1);
      const drop = worse.report!.gates.find((g) => g.op === 'max_drop')!;
      expect(drop).toMatchObject({ passed: false, baseline: (JSON.parse(tested.stdout) as { metrics: { accuracy: number } }).metrics.accuracy });
      expect(drop.baseline! - drop.value!).toBeGreaterThan(0.05);
      const markdown = await readFile(path.join(dir, 'quality.md'), 'utf8');
      expect(markdown).toMatch(/## mlops monitor --labels: FAILED/);
      expect(markdown).toMatch(/accuracy drops at most 0.05 from/);
      // A gate on a metric of the other task is refused before any log is read.
      const typo = await runCli(['monitor', '--labels', 'labels.csv', '--log', path.basename(log), '--gate', 'acuracy>=0.9'], { cwd: dir });
      expect(typo.code).toBe(2);
      expect(typo.stderr).toMatch(/gate on unknown metric 'acuracy'/);
    });
  });

  it('exits 2 with one line when no label matches, when maxDrop has nothing to compare with, and on a bad labels file', async () => {
    const f = FIXTURES[1];
    await withTempDir(async (dir) => {
      await project(dir, f, { monitor: { minRows: 1 } });
      const { rows, labels } = await holdout(f.model, f.label);
      const { log, answered } = await logTraffic(dir, f, rows.slice(0, 5));
      const cases: [string, string[], RegExp][] = [
        ['id,label\nunknown-1,0\nunknown-2,1\n', [], /no label matched a logged prediction: none of its 2 ids is among the 5 logged rows/],
        [
          'id,label\nr-0,0\n',
          ['--since', '2999-01-01T00:00:00Z'],
          /--since 2999-01-01T00:00:00Z is not before --until|the log has no inference records in the time range/,
        ],
        ['ident,label\nr-0,0\n', [], /labels\.csv: the header has no 'id' column \(it has ident, label\)/],
        ['id,label\nr-0,\n', [], /labels\.csv line 2, label: empty/],
        ['id,row,label\nr-1,x,0\n', [], /labels\.csv line 2, row: "x" is not a row index/],
      ];
      for (const [text, extra, message] of cases) {
        await writeFile(path.join(dir, 'labels.csv'), text);
        const result = await runCli(['monitor', '--labels', 'labels.csv', '--log', path.basename(log), ...extra], { cwd: dir });
        expect(result.code, result.stderr).toBe(2);
        expect(result.stderr).toMatch(message);
        expect(result.stderr).not.toMatch(/\n\s+at /);
        expect(result.stdout).toBe('');
      }
      // monitor.maxDrop without the version's test metrics (no --baseline, no image stamped with them): exit 2, never a silent pass.
      await writeFile(path.join(dir, 'labels.csv'), labelsCsv(answered, labels));
      await project(dir, f, { monitor: { minRows: 1, maxDrop: { accuracy: 0.01 } }, image: { repository: 'mlops-test-nothing-stamped/wine' } });
      const rewritten = (await readFile(log, 'utf8')).replaceAll(/"sha256":"[0-9a-f]{64}"/g, `"sha256":"${'0'.repeat(64)}"`);
      await writeFile(log, rewritten);
      const noBaseline = await runCli(['monitor', '--labels', 'labels.csv', '--log', path.basename(log)], { cwd: dir });
      expect(noBaseline.code, noBaseline.stderr).toBe(2);
      expect(noBaseline.stderr).toMatch(/monitor\.maxDrop needs the test metrics of version 1 \(model sha256 000000000000\), and no image of it carries them/);
      // Flags that belong to the drift check are refused with --labels.
      const mixed = await runCli(['monitor', '--labels', 'labels.csv', '--url', 'http://127.0.0.1:1'], { cwd: dir });
      expect(mixed.code).toBe(2);
      expect(mixed.stderr).toMatch(/--labels reads the inference log, not live counts: drop --url/);
    });
  });

  it('scores the version most labels belong to, and counts labels of the other as skipped', async () => {
    const f = FIXTURES[1];
    await withTempDir(async (dir) => {
      await project(dir, f, { monitor: { minRows: 1 } });
      const { rows, labels } = await holdout(f.model, f.label);
      const old = await logTraffic(dir, f, rows.slice(0, 20), { idPrefix: 'old' });
      const current = await logTraffic(dir, f, rows.slice(20, 50), { idPrefix: 'new' });
      // The "old" log as another version of the model had written it.
      await writeFile(
        old.log,
        (await readFile(old.log, 'utf8'))
          .replaceAll('"version":"1"', '"version":"0.9.0"')
          .replaceAll(/"sha256":"[0-9a-f]{64}"/g, `"sha256":"${'e'.repeat(64)}"`),
      );
      const lines = ['id,row,label'];
      for (const a of old.answered) for (let r = 0; r < a.rows; r++) lines.push(`${a.id},${r},${labels[a.first + r]}`);
      for (const a of current.answered) for (let r = 0; r < a.rows; r++) lines.push(`${a.id},${r},${labels[20 + a.first + r]}`);
      await writeFile(path.join(dir, 'labels.csv'), lines.join('\n') + '\n');
      const live = await monitorJson(dir, '--labels', 'labels.csv', '--log', path.basename(old.log), '--log', path.basename(current.log));
      expect(live.code, live.stderr).toBe(0);
      expect(live.report!.model.version).toBe('1');
      expect(live.report!.join.matched).toBe(30);
      expect(live.report!.join.skipped['other-version']).toMatchObject({ count: 20, example: expect.stringContaining('predicted by 0.9.0') });
      expect(live.report!.versions.map((v) => [v.version, v.rows, v.matched])).toEqual([
        ['1', 30, 30],
        ['0.9.0', 20, 20],
      ]);
    });
  });
});
