/**
 * Datasets for the batch tests: the tabular fixture's rows repeated with ids ("r1", "r2", ...), as CSV,
 * JSONL or Parquet, written streaming so a million rows cost little memory here too.
 */
import { createWriteStream, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileWriter, ParquetWriter } from 'hyparquet-writer';
import type { RunBatchOptions } from '../../src/batch/run-batch.js';

const FIXTURE = path.join(import.meta.dirname, '..', '..', 'fixtures', 'breast_cancer', 'holdout.csv');

/** The fixture's feature columns and rows (the label dropped). */
export function fixtureRows(): { columns: string[]; rows: number[][] } {
  const lines = readFileSync(FIXTURE, 'utf8').trim().split('\n');
  const header = lines[0].split(',').map((c) => c.trim());
  const label = header.indexOf('label');
  const keep = header.map((_, i) => i).filter((i) => i !== label);
  return {
    columns: keep.map((i) => header[i]),
    rows: lines.slice(1).map((line) => {
      const cells = line.split(',');
      return keep.map((i) => Number(cells[i]));
    }),
  };
}

async function writeLines(file: string, lines: Iterable<string>): Promise<void> {
  const out = createWriteStream(file);
  let chunk = '';
  for (const line of lines) {
    chunk += line;
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
      chunk = '';
    }
  }
  out.end(chunk);
  await new Promise<void>((resolve, reject) => out.once('finish', () => resolve()).once('error', reject));
}

/** `rowGroupRows`: Parquet's rows per row group (a shard is cut between row groups). */
export async function writeDataset(file: string, count: number, format: 'csv' | 'jsonl' | 'parquet', rowGroupRows = 50_000): Promise<void> {
  const { columns, rows } = fixtureRows();
  if (format === 'parquet') {
    const writer = new ParquetWriter({
      writer: fileWriter(file),
      schema: [
        { name: 'root', num_children: columns.length + 1 },
        { name: 'id', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
        ...columns.map((name) => ({ name, type: 'DOUBLE' as const, repetition_type: 'REQUIRED' as const })),
      ],
    });
    for (let start = 0; start < count; start += rowGroupRows) {
      const end = Math.min(count, start + rowGroupRows);
      const ids: string[] = [];
      const data = columns.map(() => new Float64Array(end - start));
      for (let n = start; n < end; n++) {
        ids.push(`r${n + 1}`);
        const row = rows[n % rows.length];
        for (let c = 0; c < columns.length; c++) data[c][n - start] = row[c];
      }
      await writer.write({
        columnData: [
          { name: 'id', data: ids, type: 'STRING', nullable: false },
          ...columns.map((name, c) => ({ name, data: data[c], type: 'DOUBLE' as const, nullable: false })),
        ],
        rowGroupSize: rowGroupRows,
      });
    }
    await writer.finish();
    return;
  }
  function* lines() {
    if (format === 'csv') yield ['id', ...columns].join(',') + '\n';
    for (let n = 0; n < count; n++) {
      const row = rows[n % rows.length];
      if (format === 'csv') yield `r${n + 1},${row.join(',')}\n`;
      else yield JSON.stringify({ id: `r${n + 1}`, ...Object.fromEntries(columns.map((c, i) => [c, row[i]])) }) + '\n';
    }
  }
  await writeLines(file, lines());
}

/** A local run's options as the tests use them: the tabular fixture, 2 workers, ids from 'id'; `more` overrides. */
export const batchRun = (cwd: string, input: string, output: string, more: Partial<RunBatchOptions> = {}): RunBatchOptions => ({
  cwd,
  env: {},
  model: { path: path.join(import.meta.dirname, '..', '..', 'fixtures', 'breast_cancer', 'model.onnx') },
  input,
  output,
  idColumn: 'id',
  columns: [],
  batchSize: 256,
  workers: 2,
  shardMegabytes: 8,
  maxRejectRate: 0,
  log: () => undefined,
  ...more,
});
