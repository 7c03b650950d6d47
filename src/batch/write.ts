/**
 * The scored rows as CSV, JSONL or Parquet: each row's id (the input's id column, else its file and
 * row), the model's outputs and, for a classifier with labels, the top label and its score. Every
 * shard writes a part that stands alone (a CSV part has its header); the output file is the parts
 * joined. The bytes depend only on the rows, so a resumed run writes what an uninterrupted one does.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { fileWriter, ParquetWriter } from 'hyparquet-writer';
import type { Datatype } from '../model/datatypes.js';
import type { TensorSignature } from '../predict/predictor.js';
import type { ScoredLabel } from '../processing/labels.js';
import type { RowId } from './read.js';

export type OutputFormat = 'csv' | 'jsonl' | 'parquet';

export interface OutputColumn {
  /** The output tensor. */
  name: string;
  datatype: Datatype;
  /** Elements per row when the shape fixes it: that many columns (name, or name_0, name_1, ...); null: one JSON column. */
  width: number | null;
}

export interface OutputLayout {
  format: OutputFormat;
  /** 'id' (the input's id column, under its own name) or the file and row. */
  ids: { column: string } | { source: true; row: boolean };
  outputs: OutputColumn[];
  labels: boolean;
}

export function outputLayout(format: OutputFormat, outputs: TensorSignature[], ids: OutputLayout['ids'], labels: boolean): OutputLayout {
  return {
    format,
    ids,
    labels,
    outputs: outputs.map((o) => {
      const rest = o.shape.slice(1);
      const fixed = o.shape.length > 0 && rest.every((d) => d >= 0);
      return { name: o.name, datatype: o.datatype, width: fixed ? rest.reduce((n, d) => n * d, 1) : null };
    }),
  };
}

/** The output's column names, in order. */
export function columnNames(layout: OutputLayout): string[] {
  const names = 'column' in layout.ids ? [layout.ids.column] : layout.ids.row ? ['source', 'row'] : ['source'];
  for (const output of layout.outputs) {
    if (output.width === 1 || output.width === null) names.push(output.name);
    else for (let i = 0; i < output.width; i++) names.push(`${output.name}_${i}`);
  }
  if (layout.labels) names.push('label', 'score');
  return names;
}

/** One batch's results, row by row: each output's elements for that row, and its top label. */
export interface ScoredRows {
  rowIds: RowId[];
  /** Output name -> per-row element lists. */
  values: Record<string, (ArrayLike<number> | string[])[]>;
  labels?: ScoredLabel[];
}

export interface PartWriter {
  add(rows: ScoredRows): Promise<void>;
  /** Finishes the file; its size and sha256, the manifest records. */
  close(): Promise<{ bytes: number; sha256: string }>;
}

const csvCell = (value: string) => (/[",\n\r]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value);
const numberText = (value: number | string) =>
  typeof value === 'number' ? (Number.isFinite(value) ? String(value) : Number.isNaN(value) ? 'NaN' : String(value)) : value;
const jsonNumber = (value: number | string) => (typeof value === 'number' && !Number.isFinite(value) ? null : value);

export function openPartWriter(file: string, layout: OutputLayout): PartWriter {
  return layout.format === 'parquet' ? parquetPart(file, layout) : textPart(file, layout);
}

/** A write stream that hashes what it writes and waits when the disk is slower than the model. */
export class HashedFile {
  private readonly stream: WriteStream;
  private readonly hash = createHash('sha256');
  bytes = 0;
  constructor(file: string) {
    this.stream = createWriteStream(file);
  }
  /** Text as UTF-8, or bytes as they are (a part's bytes, which may end inside a character). */
  async write(data: string | Buffer): Promise<void> {
    const chunk = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    this.hash.update(chunk);
    this.bytes += chunk.length;
    if (this.stream.write(chunk)) return;
    await new Promise<void>((resolve, reject) => {
      const drained = () => {
        this.stream.off('error', failed);
        resolve();
      };
      const failed = (error: Error) => {
        this.stream.off('drain', drained);
        reject(error);
      };
      this.stream.once('drain', drained).once('error', failed);
    });
  }
  async close(): Promise<{ bytes: number; sha256: string }> {
    await new Promise<void>((resolve, reject) => this.stream.end((error?: Error | null) => (error ? reject(error) : resolve())));
    return { bytes: this.bytes, sha256: this.hash.digest('hex') };
  }
}

function idCells(layout: OutputLayout, rowId: RowId): (string | number)[] {
  if ('column' in layout.ids) return [rowId.id ?? ''];
  return layout.ids.row ? [rowId.source, rowId.row] : [rowId.source];
}

function textPart(file: string, layout: OutputLayout): PartWriter {
  const out = new HashedFile(file);
  const names = columnNames(layout);
  let started = false;
  return {
    async add(rows) {
      let text = '';
      if (!started && layout.format === 'csv') text += names.map(csvCell).join(',') + '\n';
      started = true;
      for (let r = 0; r < rows.rowIds.length; r++) {
        const ids = idCells(layout, rows.rowIds[r]);
        if (layout.format === 'csv') {
          const cells = ids.map((v) => csvCell(String(v)));
          for (const output of layout.outputs) {
            const values = rows.values[output.name][r];
            if (output.width === null) cells.push(csvCell(JSON.stringify(Array.from(values as ArrayLike<number>, jsonNumber))));
            // Numbers need no quoting: only a BYTES output's strings go through csvCell.
            else if (typeof values[0] === 'number') for (let i = 0; i < values.length; i++) cells.push(numberText(values[i]));
            else for (let i = 0; i < values.length; i++) cells.push(csvCell(String(values[i])));
          }
          if (layout.labels) cells.push(csvCell(rows.labels![r].label), String(rows.labels![r].score));
          text += cells.join(',') + '\n';
        } else {
          const record: Record<string, unknown> = {};
          const idNames = names.slice(0, ids.length);
          idNames.forEach((name, i) => (record[name] = ids[i]));
          for (const output of layout.outputs) {
            const values = Array.from(rows.values[output.name][r] as ArrayLike<number>, jsonNumber);
            record[output.name] = output.width === 1 ? values[0] : values;
          }
          if (layout.labels) {
            record.label = rows.labels![r].label;
            record.score = rows.labels![r].score;
          }
          text += JSON.stringify(record) + '\n';
        }
      }
      if (text) await out.write(text);
    },
    async close() {
      if (!started && layout.format === 'csv') await out.write(names.map(csvCell).join(',') + '\n');
      return out.close();
    },
  };
}

type ParquetType = 'STRING' | 'INT64' | 'INT32' | 'FLOAT' | 'DOUBLE' | 'BOOLEAN';

function parquetType(datatype: Datatype): ParquetType {
  if (datatype === 'FP64') return 'DOUBLE';
  if (datatype === 'FP32' || datatype === 'FP16') return 'FLOAT';
  if (datatype === 'INT64' || datatype === 'UINT64' || datatype === 'UINT32') return 'INT64';
  if (datatype === 'BOOL') return 'BOOLEAN';
  if (datatype === 'BYTES') return 'STRING';
  return 'INT32';
}

/** The output's Parquet columns: name and type, in columnNames' order. */
export function parquetColumns(layout: OutputLayout): { name: string; type: ParquetType }[] {
  const names = columnNames(layout);
  const types: ParquetType[] = 'column' in layout.ids ? ['STRING'] : layout.ids.row ? ['STRING', 'INT64'] : ['STRING'];
  for (const output of layout.outputs) {
    const type = output.width === null ? 'STRING' : parquetType(output.datatype);
    for (let i = 0; i < (output.width ?? 1); i++) types.push(type);
  }
  if (layout.labels) types.push('STRING', 'DOUBLE');
  return names.map((name, i) => ({ name, type: types[i] }));
}

/** Rows buffered per row group: bounded memory, and groups big enough to read fast. */
const ROW_GROUP = 16_384;

function parquetPart(file: string, layout: OutputLayout): PartWriter {
  const columns = parquetColumns(layout);
  const writer = new ParquetWriter({ writer: fileWriter(file), schema: parquetSchema(columns) });
  let buffered: unknown[][] = columns.map(() => []);
  let count = 0;
  const flush = async () => {
    if (count === 0) return;
    await writer.write({
      columnData: columns.map((c, i) => ({ name: c.name, data: buffered[i], type: c.type, nullable: c.type === 'STRING' })),
      rowGroupSize: count,
    });
    buffered = columns.map(() => []);
    count = 0;
  };
  return {
    async add(rows) {
      for (let r = 0; r < rows.rowIds.length; r++) {
        let c = 0;
        for (const id of idCells(layout, rows.rowIds[r])) buffered[c++].push(typeof id === 'number' ? BigInt(id) : id);
        for (const output of layout.outputs) {
          const values = rows.values[output.name][r];
          if (output.width === null) buffered[c++].push(JSON.stringify(Array.from(values as ArrayLike<number>, jsonNumber)));
          else
            for (let i = 0; i < values.length; i++) {
              buffered[c].push(parquetValue(values[i], columns[c].type));
              c++;
            }
        }
        if (layout.labels) {
          buffered[c].push(rows.labels![r].label);
          buffered[c + 1].push(rows.labels![r].score);
        }
        count++;
        if (count >= ROW_GROUP) await flush();
      }
    },
    async close() {
      await flush();
      await writer.finish();
      return hashFile(file);
    },
  };
}

function parquetValue(value: number | string, type: ParquetType): unknown {
  if (type === 'INT64') return BigInt(value);
  if (type === 'BOOLEAN') return Boolean(value);
  return value;
}

export function parquetSchema(columns: { name: string; type: ParquetType }[]) {
  const element = (c: { name: string; type: ParquetType }) =>
    c.type === 'STRING'
      ? { name: c.name, type: 'BYTE_ARRAY' as const, converted_type: 'UTF8' as const, repetition_type: 'OPTIONAL' as const }
      : { name: c.name, type: c.type, repetition_type: 'REQUIRED' as const };
  return [{ name: 'root', num_children: columns.length }, ...columns.map(element)];
}

export async function hashFile(file: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  const handle = await open(file, 'r');
  let bytes = 0;
  try {
    for await (const chunk of handle.createReadStream({ highWaterMark: 1 << 20 })) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
  } finally {
    await handle.close().catch(() => undefined);
  }
  return { bytes, sha256: hash.digest('hex') };
}
