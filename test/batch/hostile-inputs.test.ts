/**
 * What a stranger threw at `mlops batch`, kept: files whose columns come in another order, an input
 * changed in place, an output over the input or inside its folder, numbers past FP32, a BOM, a model
 * of several inputs, zstd Parquet. Workers run from dist/ (npm run build).
 */
import { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPiece } from '../../src/batch/read.js';
import { runBatch } from '../../src/batch/run-batch.js';
import { isMlopsError } from '../../src/errors.js';
import { fixture } from '../helpers.js';
import { batchRun, fixtureRows } from './datasets.js';

let dir: string;
const { columns, rows } = fixtureRows();
const run = (input: string, output: string, more: Parameters<typeof batchRun>[3] = {}) => runBatch(batchRun(dir, input, output, { shardCount: 1, ...more }));
const lines = async (file: string) => (await readFile(path.join(dir, file), 'utf8')).trim().split('\n');
const refusal = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: unknown) => error as Error & { exitCode?: number },
  );

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'mlops-batch-hostile-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('mlops batch against hostile inputs', () => {
  it('reads a folder of files whose columns come in different orders by name, and names rows of a file without ids by source and row', async () => {
    await mkdir(path.join(dir, 'orders'));
    const reversed = [...columns].reverse();
    await writeFile(path.join(dir, 'orders', 'a.csv'), ['id,' + columns.join(','), 'a1,' + rows[0].join(',')].join('\n') + '\n');
    await writeFile(path.join(dir, 'orders', 'b.csv'), ['id,' + reversed.join(','), 'b1,' + [...rows[0]].reverse().join(',')].join('\n') + '\n');
    await writeFile(path.join(dir, 'orders', 'c.csv'), [columns.join(','), rows[0].join(',')].join('\n') + '\n');
    const report = await run('orders', 'orders.csv');
    expect(report).toMatchObject({ passed: true, scored: 3 });
    const out = (await lines('orders.csv')).map((l) => l.split(','));
    expect(out[0].slice(0, 2)).toEqual(['source', 'row']);
    // The same row, whatever its file's column order: the same scores.
    expect(out[2].slice(2)).toEqual(out[1].slice(2));
    expect(out[3].slice(2)).toEqual(out[1].slice(2));
    expect(out.slice(1).map((r) => r.slice(0, 2))).toEqual([
      ['a.csv', '1'],
      ['b.csv', '1'],
      ['c.csv', '1'],
    ]);
  });

  it('starts over when the input changed in place, at the same size', async () => {
    const first = ['id,' + columns.join(','), 'x1,' + rows[0].join(',')].join('\n') + '\n';
    await writeFile(path.join(dir, 'changing.csv'), first);
    await run('changing.csv', 'changing-out.csv');
    const before = await lines('changing-out.csv');
    await writeFile(
      path.join(dir, 'changing.csv'),
      first
        .replace('x1,' + rows[0].join(','), 'x1,' + rows[1].join(','))
        .slice(0, first.length)
        .padEnd(first.length, '0'),
    );
    const later = new Date(Date.now() + 5_000);
    await utimes(path.join(dir, 'changing.csv'), later, later);
    const again = await run('changing.csv', 'changing-out.csv');
    expect(again.shards.ran).toBe(1);
    expect(await lines('changing-out.csv')).not.toEqual(before);
  });

  it('refuses an output over its input, an unknown output format and a file named as a folder, writing nothing', async () => {
    await writeFile(path.join(dir, 'self.csv'), ['id,' + columns.join(','), 's1,' + rows[0].join(',')].join('\n') + '\n');
    const over = await refusal(run('self.csv', 'self.csv'));
    expect(over?.exitCode).toBe(2);
    expect(over?.message).toBe('--output: would write over the input self.csv');
    const unknown = await refusal(run('self.csv', 'scores.xlsx'));
    expect(unknown?.message).toBe("--output scores.xlsx: unknown output format '.xlsx'");
    await writeFile(path.join(dir, 'plain.txt'), 'a file');
    const notFolder = await refusal(run('self.csv', 'plain.txt/'));
    expect(notFolder?.message).toBe('--output plain.txt/: is a file, not a folder');
    expect(isMlopsError(notFolder) && notFolder.exitCode).toBe(2);
    await expect(stat(path.join(dir, 'scores.xlsx'))).rejects.toThrow();
    expect((await lines('self.csv')).length).toBe(2);
  });

  it('leaves its own outputs out of the input when they are written inside the input folder', async () => {
    await mkdir(path.join(dir, 'inside'));
    await writeFile(path.join(dir, 'inside', 'rows.csv'), ['id,' + columns.join(','), 'i1,' + rows[0].join(',')].join('\n') + '\n');
    await run('inside', 'inside/scores/', { format: 'jsonl' });
    await run('inside', 'inside/scores.csv');
    const again = await run('inside', 'inside/scores.csv');
    expect(again).toMatchObject({ passed: true, records: 1 });
  });

  it('rejects a number past FP32 rather than scoring Infinity, in CSV and JSONL', async () => {
    const big = [...rows[0]];
    big[0] = 1e39;
    await writeFile(path.join(dir, 'big.csv'), ['id,' + columns.join(','), 'ok,' + rows[0].join(','), 'big,' + big.join(',')].join('\n') + '\n');
    const csv = await run('big.csv', 'big-out.csv', { maxRejectRate: 0.5 });
    expect(csv).toMatchObject({ scored: 1, rejected: 1 });
    const reason = (JSON.parse((await lines('big-out.csv.rejects.jsonl'))[0]) as { reason: string }).reason;
    expect(reason).toBe("column 'mean_radius': 1e+39 is out of range for FP32");
    await writeFile(path.join(dir, 'big.jsonl'), JSON.stringify({ id: 'big', ...Object.fromEntries(columns.map((c, i) => [c, big[i]])) }) + '\n');
    const jsonl = await run('big.jsonl', 'big-jsonl.csv');
    expect(jsonl).toMatchObject({ scored: 0, rejected: 1, passed: false });
  });

  it('reads a JSONL file that starts with a byte order mark', async () => {
    await writeFile(path.join(dir, 'bom.jsonl'), '\uFEFF' + JSON.stringify({ id: 'b1', ...Object.fromEntries(columns.map((c, i) => [c, rows[0][i]])) }) + '\n');
    expect(await run('bom.jsonl', 'bom.csv')).toMatchObject({ passed: true, scored: 1 });
    expect((await lines('bom.csv'))[1].split(',')[0]).toBe('b1');
  });

  it('splits --columns across the inputs of a model of several, in their order', async () => {
    // multi_input: 'dense' takes 4 floats, 'ids' 3 integers.
    const header = ['key', 'd0', 'd1', 'd2', 'd3', 'i0', 'i1', 'i2', 'extra'];
    await writeFile(path.join(dir, 'multi.csv'), [header.join(','), 'm1,0.1,0.2,0.3,0.4,1,2,3,ignored'].join('\n') + '\n');
    const report = await run('multi.csv', 'multi-out.csv', {
      model: { path: fixture('multi_input', 'model.onnx') },
      idColumn: 'key',
      columns: ['d0', 'd1', 'd2', 'd3', 'i0', 'i1', 'i2'],
    });
    expect(report).toMatchObject({ passed: true, scored: 1 });
  });

  it('reads Parquet compressed with zstd', async () => {
    const report = await run(fixture('batch', 'zstd.parquet'), 'zstd.csv');
    expect(report).toMatchObject({ passed: true, records: 40 });
    expect((await lines('zstd.csv'))[40].split(',')[0]).toBe('z40');
  });

  it('keeps a character whole when a chunk of the file ends inside it', async () => {
    const text = `id,${columns.join(',')}\ncafé€,${rows[0].join(',')}\n`;
    const bytes = Buffer.from(text);
    // The piece's bytes in chunks cut inside 'é' (2 bytes) and inside '€' (3 bytes).
    const reader = {
      read: (_: string, from: number, to: number) => {
        const part = bytes.subarray(from, to);
        const at = part.indexOf('é') + 1;
        return Readable.from([part.subarray(0, at), part.subarray(at, at + 2), part.subarray(at + 2)]);
      },
    };
    const file = { location: 'utf8.csv', shown: 'utf8.csv', size: bytes.length, format: 'csv' as const, records: 1, header: ['id', ...columns] };
    const layouts = [{ name: 'features', datatype: 'FP32' as const, rowShape: [30], rowSize: 30 }];
    const items = [];
    const piece = { file: 0, from: Buffer.byteLength(text.slice(0, text.indexOf('\n') + 1)), to: bytes.length, firstRecord: 0, firstLine: 2, records: 1 };
    for await (const item of readPiece(file, piece, { reader, layouts, idColumn: 'id', columns: [] })) items.push(item);
    expect(items.map((i) => i.rowId.id)).toEqual(['café€']);
  });
});
