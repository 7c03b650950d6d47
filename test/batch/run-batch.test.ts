/**
 * `mlops batch` on this machine: every input format in, every output format out, shards, resumes,
 * rejects and the gate, checked against the model run in-process. Workers run from dist/ (npm run build).
 */
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { fileWriter, ParquetWriter } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBatch, type RunBatchOptions } from '../../src/batch/run-batch.js';
import { loadModel } from '../../src/model/session.js';
import { isMlopsError } from '../../src/errors.js';
import { fixture, runCli } from '../helpers.js';
import { batchRun, fixtureRows, writeDataset } from './datasets.js';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';

let dir: string;
const MODEL = fixture('breast_cancer', 'model.onnx');
const ROWS = 5_000;

const options = (input: string, output: string, more: Partial<RunBatchOptions> = {}): RunBatchOptions =>
  batchRun(dir, input, output, { batchSize: 128, shardCount: 4, ...more });

/** The in-process model's probabilities for every fixture row, as the float32 values it returns. */
async function expectedProbabilities(): Promise<Float32Array[]> {
  const model = await loadModel({ path: MODEL });
  const { rows } = fixtureRows();
  const result = await model.run({ features: { data: Float32Array.from(rows.flat()), dims: [rows.length, rows[0].length] } });
  await model.release();
  const data = result.probabilities.data as Float32Array;
  return rows.map((_, r) => data.subarray(r * 2, r * 2 + 2));
}

const csvRows = (text: string) =>
  text
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => line.split(','));

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'mlops-batch-'));
  for (const format of ['csv', 'jsonl', 'parquet'] as const) await writeDataset(path.join(dir, `in.${format}`), ROWS, format);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('mlops batch on this machine', () => {
  it("scores every row once, with the in-process model's outputs, over shards on two workers", async () => {
    const report = await runBatch(options('in.csv', 'out.csv'));
    expect(report).toMatchObject({ complete: true, passed: true, records: ROWS, scored: ROWS, rejected: 0 });
    expect(report.shards).toMatchObject({ total: 4, ran: 4, skipped: 0, done: 4 });
    const rows = csvRows(await readFile(path.join(dir, 'out.csv'), 'utf8'));
    expect(rows).toHaveLength(ROWS);
    expect(new Set(rows.map((r) => r[0])).size).toBe(ROWS);
    const expected = await expectedProbabilities();
    rows.forEach((row, i) => {
      expect(row[0]).toBe(`r${i + 1}`);
      const want = expected[i % expected.length];
      expect([Number(row[1]), Number(row[2])]).toEqual([want[0], want[1]]);
    });
    // The parts are joined and gone; the manifest records the output's sha256.
    await expect(stat(path.join(dir, 'out.csv.parts'))).rejects.toThrow();
    const manifest = JSON.parse(await readFile(path.join(dir, 'out.csv.manifest.json'), 'utf8'));
    expect(manifest.written.sha256).toBe(report.written?.sha256);
    expect(manifest.shards).toHaveLength(4);
  });

  it('reads JSONL and Parquet into the same output bytes as CSV', async () => {
    const csv = await readFile(path.join(dir, 'out.csv'));
    for (const format of ['jsonl', 'parquet']) {
      await runBatch(options(`in.${format}`, `from-${format}.csv`));
      expect((await readFile(path.join(dir, `from-${format}.csv`))).equals(csv), format).toBe(true);
    }
  });

  it('writes JSONL and Parquet outputs with the same rows', async () => {
    const csv = csvRows(await readFile(path.join(dir, 'out.csv'), 'utf8'));
    await runBatch(options('in.csv', 'out.jsonl'));
    const jsonl = (await readFile(path.join(dir, 'out.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; probabilities: number[] });
    expect(jsonl.map((r) => [r.id, ...r.probabilities.map(String)])).toEqual(csv);
    await runBatch(options('in.csv', 'out.parquet'));
    const parquet = await parquetReadObjects({ file: await asyncBufferFromFile(path.join(dir, 'out.parquet')) });
    expect(parquet.map((r) => [r.id, String(r.probabilities_0), String(r.probabilities_1)])).toEqual(csv);
  });

  it('resumes: shards run apart, then a run without --shard skips them and joins the same bytes', async () => {
    const output = 'resumed.csv';
    const first = await runBatch(options('in.csv', output, { only: [1] }));
    expect(first).toMatchObject({ complete: false, passed: true, records: first.shards.total > 0 ? first.records : 0 });
    expect(first.shards.pending).toEqual([0, 2, 3]);
    await expect(stat(path.join(dir, output))).rejects.toThrow();
    await runBatch(options('in.csv', output, { only: [3] }));
    const rest = await runBatch(options('in.csv', output, { shardCount: undefined }));
    expect(rest.shards).toMatchObject({ total: 4, ran: 2, skipped: 2, done: 4 });
    expect(rest.records).toBe(ROWS);
    expect((await readFile(path.join(dir, output))).equals(await readFile(path.join(dir, 'out.csv')))).toBe(true);
    // A finished run run again scores nothing.
    const again = await runBatch(options('in.csv', output));
    expect(again.shards).toMatchObject({ ran: 0, done: 4 });
    // Another shard count for a started job is refused, naming the manifest.
    await expect(runBatch(options('in.csv', output, { shardCount: 5 }))).rejects.toThrow(
      /resumed\.csv\.manifest\.json: this job has 4 shards, and 5 are asked/,
    );
  });

  it('keeps one part per shard in a folder output', async () => {
    const report = await runBatch(options('in.csv', 'parts/', { format: 'jsonl' }));
    expect(report.complete).toBe(true);
    const names = (await readdir(path.join(dir, 'parts'))).sort();
    expect(names).toEqual([
      '_shards',
      'manifest.json',
      'part-00000-of-00004.jsonl',
      'part-00001-of-00004.jsonl',
      'part-00002-of-00004.jsonl',
      'part-00003-of-00004.jsonl',
      'rejects.jsonl',
    ]);
    let count = 0;
    for (const name of names.filter((n) => n.startsWith('part-'))) count += (await readFile(path.join(dir, 'parts', name), 'utf8')).trim().split('\n').length;
    expect(count).toBe(ROWS);
  });

  it('scores the first --limit rows only, and globs of several files', async () => {
    const limited = await runBatch(options('in.csv', 'limited.csv', { limit: 1234 }));
    expect(limited.records).toBe(1234);
    expect(csvRows(await readFile(path.join(dir, 'limited.csv'), 'utf8')).at(-1)?.[0]).toBe('r1234');
    await mkdir(path.join(dir, 'many'));
    await writeDataset(path.join(dir, 'many', 'a.csv'), 300, 'csv');
    await writeDataset(path.join(dir, 'many', 'b.csv'), 200, 'csv');
    await writeFile(path.join(dir, 'many', 'notes.txt'), 'not an input');
    const globbed = await runBatch(options('many/*.csv', 'globbed.csv', { idColumn: 'none', columns: fixtureRows().columns }));
    expect(globbed.records).toBe(500);
    const rows = csvRows(await readFile(path.join(dir, 'globbed.csv'), 'utf8'));
    expect(rows[0].slice(0, 2)).toEqual(['a.csv', '1']);
    expect(rows[300].slice(0, 2)).toEqual(['b.csv', '1']);
  });
});

describe('bad rows and bad files', () => {
  const header = ['id', ...fixtureRows().columns].join(',');
  const good = (id: string) => [id, ...fixtureRows().rows[0]].join(',');

  it('rejects a ragged row, a value that is not a number and an empty id, with the reason, and the gate says so', async () => {
    const bad = good('r3').replace(/,[^,]*$/, '');
    const text = [good('r2').replace(/^r2,[^,]*/, 'r2,abc')];
    const lines = [header, good('r1'), text[0], bad, good('').replace(/^/, ''), good('r5')];
    await writeFile(path.join(dir, 'bad.csv'), lines.join('\n') + '\n');
    const report = await runBatch(options('bad.csv', 'bad-out.csv', { shardCount: 1 }));
    expect(report).toMatchObject({ complete: true, passed: false, records: 5, scored: 2, rejected: 3 });
    expect(report.verdict).toMatch(/3 of 5 rows rejected \(60\.0%\), over batch\.maxRejectRate 0/);
    const rejects = (await readFile(path.join(dir, 'bad-out.csv.rejects.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { where: string; reason: string });
    expect(rejects.map((r) => `${r.where}: ${r.reason}`)).toEqual([
      'bad.csv line 3: column \'mean_radius\': "abc" is not a number',
      'bad.csv line 4: 30 cells, the header has 31',
      "bad.csv line 5: column 'id': the id is empty",
    ]);
    expect(csvRows(await readFile(path.join(dir, 'bad-out.csv'), 'utf8')).map((r) => r[0])).toEqual(['r1', 'r5']);
    const lenient = await runBatch(options('bad.csv', 'bad-lenient.csv', { shardCount: 1, maxRejectRate: 0.6 }));
    expect(lenient.passed).toBe(true);
  });

  it('fails the gate when the model fails on every row: rejects, never a pass', async () => {
    const report = await runBatch({
      ...options(fixture('failing_reshape', 'holdout.csv'), 'failing.csv', { shardCount: 1 }),
      model: { path: fixture('failing_reshape', 'model.onnx') },
      columns: ['f0', 'f1', 'f2', 'f3'],
    });
    expect(report).toMatchObject({ passed: false, scored: 0, rejected: 20 });
    expect(report.verdict).toBe('every row was rejected (20)');
    const first = JSON.parse((await readFile(path.join(dir, 'failing.csv.rejects.jsonl'), 'utf8')).split('\n')[0]) as { reason: string };
    expect(first.reason).toMatch(/^the model failed on this row: /);
  });

  it('refuses a Parquet file without a column the model needs, naming both, and writes nothing', async () => {
    const writer = new ParquetWriter({
      writer: fileWriter(path.join(dir, 'narrow.parquet')),
      schema: [
        { name: 'root', num_children: 2 },
        { name: 'id', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
        { name: 'mean_radius', type: 'DOUBLE', repetition_type: 'REQUIRED' },
      ],
    });
    await writer.write({
      columnData: [
        { name: 'id', data: ['a'], type: 'STRING', nullable: false },
        { name: 'mean_radius', data: [1], type: 'DOUBLE', nullable: false },
      ],
    });
    await writer.finish();
    const error = await runBatch(options('narrow.parquet', 'narrow/out.csv', { columns: fixtureRows().columns })).catch((e: unknown) => e);
    expect(isMlopsError(error) && error.exitCode).toBe(2);
    expect((error as Error).message).toBe("narrow.parquet: missing column 'mean_texture' (listed in --columns (batch.columns))");
    await expect(stat(path.join(dir, 'narrow'))).rejects.toThrow();
  });

  it('exits 2 on a missing input and 1 on the gate from the CLI, with one JSON document', async () => {
    const missing = await runCli(['batch', '--input', path.join(dir, 'nope.csv'), '--output', path.join(dir, 'x.csv'), '--model', MODEL]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/nope\.csv: not found/);
    const gate = await runCli([
      '--json',
      'batch',
      '--input',
      path.join(dir, 'bad.csv'),
      '--output',
      path.join(dir, 'cli-bad.csv'),
      '--model',
      MODEL,
      '--workers',
      '1',
    ]);
    expect(gate.code).toBe(1);
    const doc = JSON.parse(gate.stdout) as { passed: boolean; rejected: number };
    expect(doc).toMatchObject({ passed: false, rejected: 3 });
  });
});

describe('images, texts and .npy', () => {
  it('labels a folder of images per class, one row per image', async () => {
    const report = await runBatch({
      ...options(fixture('shapes_image', 'holdout'), 'images.csv', { shardCount: 2 }),
      model: { path: fixture('shapes_image') },
    });
    expect(report).toMatchObject({ complete: true, passed: true, records: 48, scored: 48 });
    const rows = csvRows(await readFile(path.join(dir, 'images.csv'), 'utf8'));
    expect(new Set(rows.map((r) => r[0])).size).toBe(48);
    // The fixture's model is right on every holdout image: each row's label is its folder's name.
    for (const row of rows) expect(row.at(-2), row[0]).toBe(row[0].split('/')[0]);
  });

  it('labels the texts of a CSV with a text column', async () => {
    const report = await runBatch({
      ...options(fixture('text_topic', 'holdout.csv'), 'texts.jsonl', { shardCount: 1 }),
      model: { path: fixture('text_topic') },
    });
    expect(report).toMatchObject({ complete: true, passed: true, records: 90 });
    const rows = (await readFile(path.join(dir, 'texts.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { source: string; row: number; label: string; score: number });
    const truth = (await readFile(fixture('text_topic', 'holdout.csv'), 'utf8'))
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split(',').at(-1));
    const right = rows.filter((r, i) => r.label === truth[i]).length;
    expect(rows.map((r) => r.row)).toEqual(Array.from({ length: 90 }, (_, i) => i + 1));
    expect(right / rows.length).toBeGreaterThan(0.9);
  });

  it('reads an .npy of rows', async () => {
    const { rows } = fixtureRows();
    const data = Float32Array.from(rows.slice(0, 100).flat());
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (100, 30), }";
    header = header.padEnd(118, ' ') + '\n';
    const prefix = Buffer.concat([Buffer.from('\x93NUMPY', 'latin1'), Buffer.from([1, 0]), Buffer.from([header.length, 0]), Buffer.from(header, 'latin1')]);
    await writeFile(path.join(dir, 'rows.npy'), Buffer.concat([prefix, Buffer.from(data.buffer)]));
    const report = await runBatch(options('rows.npy', 'npy.csv', { shardCount: 3 }));
    expect(report).toMatchObject({ passed: true, records: 100 });
    const out = csvRows(await readFile(path.join(dir, 'npy.csv'), 'utf8'));
    const expected = await expectedProbabilities();
    expect(out.map((r) => r.slice(0, 2))).toEqual(Array.from({ length: 100 }, (_, i) => ['rows.npy', String(i + 1)]));
    out.forEach((r, i) => expect(Number(r[2])).toBe(expected[i][0]));
  });
});
