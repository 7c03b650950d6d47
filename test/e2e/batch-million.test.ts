/**
 * `mlops batch` at a million rows: the tabular fixture's rows repeated with ids, as CSV, JSONL and
 * Parquet. Every id once with the in-process model's outputs; the peak memory does not grow with the
 * input; a run stopped by SIGTERM halfway resumes into the same bytes. Workers run from dist/.
 */
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBatch, type RunBatchOptions } from '../../src/batch/run-batch.js';
import { loadModel } from '../../src/model/session.js';
import { batchRun, fixtureRows, writeDataset } from '../batch/datasets.js';
import { fixture, ROOT } from '../helpers.js';

const MILLION = 1_000_000;
const MODEL = fixture('breast_cancer', 'model.onnx');
let dir: string;

const options = (input: string, output: string): RunBatchOptions => batchRun(dir, input, output, { model: { path: MODEL } });

/** Runs the CLI in a child process; resolves with how it ended and the peak RSS it reported. */
function cli(args: string[], onSpawn?: (stop: () => void) => void): Promise<{ code: number | null; signal: NodeJS.Signals | null; maxRssMb: number }> {
  // The wrapper (a file: worker threads inherit the parent's flags, and --input-type is refused there)
  // reports the process's peak RSS, its worker threads included, as it exits.
  const child = spawn(process.execPath, [path.join(dir, 'rss-wrapper.mjs'), 'batch', ...args], { cwd: dir, env: { ...process.env, CI: 'true' } });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.resume();
  onSpawn?.(() => child.kill('SIGTERM'));
  return new Promise((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, maxRssMb: Number(/maxrss (\d+)/.exec(stderr)?.[1] ?? NaN) / 1024 })),
  );
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'mlops-batch-million-'));
  await writeDataset(path.join(dir, 'million.csv'), MILLION, 'csv');
  await writeDataset(path.join(dir, 'hundred-thousand.csv'), 100_000, 'csv');
  const bin = JSON.stringify(path.join(ROOT, 'bin', 'mlops.js'));
  await writeFile(
    path.join(dir, 'rss-wrapper.mjs'),
    `process.on('exit', () => process.stderr.write('maxrss ' + process.resourceUsage().maxRSS + '\\n'));\nprocess.argv.splice(1, 1, ${bin});\nawait import(${bin});\n`,
  );
}, 120_000);
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('a million rows', () => {
  it("scores every id once, with the in-process model's outputs", async () => {
    const report = await runBatch(options('million.csv', 'million-out.csv'));
    expect(report).toMatchObject({ complete: true, passed: true, records: MILLION, scored: MILLION, rejected: 0 });
    const model = await loadModel({ path: MODEL });
    const { rows } = fixtureRows();
    const result = await model.run({ features: { data: Float32Array.from(rows.flat()), dims: [rows.length, rows[0].length] } });
    await model.release();
    const expected = result.probabilities.data as Float32Array;
    let n = 0;
    let wrong = 0;
    for await (const line of createInterface({ input: createReadStream(path.join(dir, 'million-out.csv')) })) {
      if (n++ === 0) continue;
      const [id, p0, p1] = line.split(',');
      const r = (n - 2) % rows.length;
      if (id !== `r${n - 1}` || Number(p0) !== expected[2 * r] || Number(p1) !== expected[2 * r + 1]) wrong++;
    }
    expect(n - 1).toBe(MILLION);
    expect(wrong).toBe(0);
  }, 300_000);

  it('reads the same million rows from JSONL and Parquet into the same bytes', async () => {
    const csv = await readFile(path.join(dir, 'million-out.csv'));
    for (const format of ['parquet', 'jsonl'] as const) {
      await writeDataset(path.join(dir, `million.${format}`), MILLION, format);
      const report = await runBatch(options(`million.${format}`, `million-${format}.csv`));
      expect(report.scored, format).toBe(MILLION);
      expect((await readFile(path.join(dir, `million-${format}.csv`))).equals(csv), format).toBe(true);
      await rm(path.join(dir, `million.${format}`));
    }
  }, 600_000);

  it('holds its peak memory for 1,000,000 rows within 20% of that for 100,000', async () => {
    const small = await cli(['--input', 'hundred-thousand.csv', '--output', 'small-out.csv', '--model', MODEL, '--workers', '2']);
    const large = await cli(['--input', 'million.csv', '--output', 'large-out.csv', '--model', MODEL, '--workers', '2']);
    expect([small.code, large.code]).toEqual([0, 0]);
    expect(large.maxRssMb / small.maxRssMb, `${small.maxRssMb.toFixed(0)} MB vs ${large.maxRssMb.toFixed(0)} MB`).toBeLessThan(1.2);
  }, 300_000);

  it('resumes a run stopped by SIGTERM halfway into the bytes of an uninterrupted run', async () => {
    const records = path.join(dir, 'stopped.csv.parts', '_shards');
    let shards = 0;
    const stopped = await cli(['--input', 'million.csv', '--output', 'stopped.csv', '--model', MODEL, '--workers', '2'], (stop) => {
      // Stopped once half the shards are recorded: by what the run has done, not by a clock.
      const look = setInterval(() => {
        void readdir(records)
          .then((names) => {
            const done = names.filter((n) => n.endsWith('.json')).length;
            if (done >= 13) {
              shards = done;
              clearInterval(look);
              stop();
            }
          })
          .catch(() => undefined);
      }, 50);
    });
    expect(stopped.signal === 'SIGTERM' || stopped.code === 143, `ended with ${stopped.code ?? stopped.signal}`).toBe(true);
    expect(shards).toBeGreaterThanOrEqual(13);
    const resumed = await runBatch(options('million.csv', 'stopped.csv'));
    expect(resumed.shards.skipped).toBeGreaterThanOrEqual(13);
    expect(resumed.shards.ran).toBeLessThanOrEqual(resumed.shards.total - 13);
    expect(resumed.records).toBe(MILLION);
    expect((await readFile(path.join(dir, 'stopped.csv'))).equals(await readFile(path.join(dir, 'million-out.csv')))).toBe(true);
  }, 300_000);
});
