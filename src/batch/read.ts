/**
 * Reads one piece of a shard as rows for the model. A row that cannot be read (a ragged CSV row, a
 * value that is not a number, an image that does not decode) is a reject with its reason, never a
 * thrown error: one bad row costs itself, not the shard. A file the run cannot read at all (missing
 * columns, a damaged footer) is an input error, as it would fail every row.
 */
import { parse as parseLine } from 'csv-parse/sync';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { asyncBufferFromFile, parquetRead, type AsyncBuffer } from 'hyparquet';
// Every codec Parquet allows (zstd, gzip, brotli, lz4): hyparquet alone reads snappy and uncompressed.
import { compressors } from 'hyparquet-compressors';
import { inputError, shownValue } from '../errors.js';
import { planColumns } from '../holdout/csv.js';
import { shapeOf } from '../holdout/jsonl.js';
import { npyHeaderFrom, npyPreamble } from '../holdout/npy.js';
import type { InputLayout } from '../holdout/types.js';
import { parseValue, valueProblem } from '../holdout/values.js';
import { IMAGE_COLUMNS, TEXT_COLUMNS } from '../holdout/media.js';
import { isObjectUri } from '../storage/object-store.js';
import { readRange, type ByteReader } from './input.js';
import type { Piece, PlannedFile } from './plan.js';

/** What names an output row: the input's id column, else the file and the record's number in it (1-based). */
export interface RowId {
  id?: string;
  source: string;
  row: number;
}

export type Cell = string | number | bigint | boolean | null | undefined | unknown[];

export type BatchItem =
  | { kind: 'row'; rowId: RowId; where: string; inputs: Record<string, ArrayLike<number | string>>; shapes: Record<string, number[]> }
  | { kind: 'raw'; rowId: RowId; where: string; load: () => Promise<Uint8Array | string> }
  /**
   * A row of float feature columns, parsed by the scorer straight into the batch's tensors (parseCellsInto).
   * Where it is comes as a function: the string is made only for a reject, not for every row read.
   */
  | { kind: 'cells'; rowId: RowId; at: () => string; cells: Cell[]; plan: ColumnsPlan }
  | { kind: 'reject'; rowId: RowId; where: string; reason: string };

export interface ReadSettings {
  reader: ByteReader;
  layouts: InputLayout[];
  /** The id column's name ('' for none). */
  idColumn: string;
  /** The feature columns, in the model's order (or by input); empty: every column but the id, in the file's order. */
  columns: string[] | Record<string, string[]>;
  /** What the model takes raw, when it takes images or texts. */
  raw?: { kind: 'image' | 'text'; maxBytes: number };
}

export function readPiece(file: PlannedFile, piece: Piece, settings: ReadSettings): AsyncGenerator<BatchItem> {
  switch (file.format) {
    case 'csv':
    case 'jsonl':
      return readTextPiece(file, piece, settings);
    case 'parquet':
      return readParquetPiece(file, piece, settings);
    case 'npy':
      return readNpyPiece(file, piece, settings);
    case 'image':
      return readImage(file, settings);
  }
}

/** The records of a CSV or JSONL piece, as [line, text]: a CSV line break inside quotes stays in its record. */
async function* textRecords(file: PlannedFile, piece: Piece, reader: ByteReader): AsyncGenerator<{ line: number; text: string }> {
  const csv = file.format === 'csv';
  let carry = '';
  let line = piece.firstLine;
  let pending = '';
  let pendingLine = line;
  let first = piece.from === 0;
  // A chunk may end inside a character: the decoder keeps its first bytes for the next chunk.
  const decoder = new StringDecoder('utf8');
  for await (const chunk of reader.read(file.location, piece.from, piece.to)) {
    let text = carry + decoder.write(chunk as Buffer);
    // A byte order mark at the file's start is not part of its first record.
    if (first && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    first = false;
    let start = 0;
    for (let end = text.indexOf('\n', start); end !== -1; end = text.indexOf('\n', start)) {
      const part = text.slice(start, end);
      start = end + 1;
      if (pending) pending += '\n' + part;
      else {
        pending = part;
        pendingLine = line;
      }
      line++;
      if (!csv || quotesBalanced(pending)) {
        if (pending.trim() !== '') yield { line: pendingLine, text: pending.endsWith('\r') ? pending.slice(0, -1) : pending };
        pending = '';
      }
    }
    carry = text.slice(start);
  }
  carry += decoder.end();
  const last = pending ? (carry ? `${pending}\n${carry}` : pending) : carry;
  if (last.trim() !== '') yield { line: pending ? pendingLine : line, text: last.endsWith('\r') ? last.slice(0, -1) : last };
}

function quotesBalanced(text: string): boolean {
  let count = 0;
  for (let i = text.indexOf('"'); i !== -1; i = text.indexOf('"', i + 1)) count++;
  return count % 2 === 0;
}

const FLOATS = new Set(['FP32', 'FP64', 'FP16']);
const FP32_MAX = 3.4028234663852886e38;
const PARQUET_SLICE = 65_536;
const FLOAT_LIMITS: Record<string, number> = { FP32: FP32_MAX, FP16: 65504 };
/** Inputs whose batch tensor a row's cells are parsed into directly. */
const FLOAT_TENSORS = new Set(['FP32', 'FP64']);

/** How a table's columns feed the model: by column (features), by key per input (tensors), or one raw column. */
export type ColumnsPlan = {
  mode: 'columns';
  idIndex: number | undefined;
  inputs: { layout: InputLayout; indices: number[]; columns: string[] }[];
  floats: boolean;
};

type TablePlan =
  | ColumnsPlan
  | { mode: 'tensors'; idIndex: number | undefined; inputs: { layout: InputLayout; index: number }[] }
  | { mode: 'raw'; idIndex: number | undefined; index: number; column: string };

function tablePlan(header: string[], shown: string, settings: ReadSettings): TablePlan {
  const idIndex = settings.idColumn ? header.indexOf(settings.idColumn) : -1;
  const id = idIndex === -1 ? undefined : idIndex;
  if (settings.raw) {
    const names = settings.raw.kind === 'image' ? IMAGE_COLUMNS : TEXT_COLUMNS;
    const named = Array.isArray(settings.columns) && settings.columns.length === 1 ? settings.columns : undefined;
    const wanted = named ?? names;
    const index = header.findIndex((h) => wanted.includes(named ? h : h.toLowerCase()));
    if (index === -1)
      throw inputError(
        `${shown}: no ${settings.raw.kind} column (${wanted.join(', ')})`,
        `name the column that holds the ${settings.raw.kind === 'image' ? "images' paths" : 'texts'} '${names[0]}', or pass --columns <name>`,
      );
    return { mode: 'raw', idIndex: id, index, column: header[index] };
  }
  // Nested arrays under each input's name (JSONL, Parquet lists): the tensor layout mlops test reads.
  if (
    Array.isArray(settings.columns) &&
    settings.columns.length === 0 &&
    settings.layouts.every((l) => header.includes(l.name)) &&
    settings.layouts.some((l) => l.rowSize !== 1)
  ) {
    return { mode: 'tensors', idIndex: id, inputs: settings.layouts.map((layout) => ({ layout, index: header.indexOf(layout.name) })) };
  }
  const { plans } = planColumns(header, {
    file: shown,
    shown,
    layouts: settings.layouts,
    label: settings.idColumn || '\u0000no id column',
    labelOptional: true,
    features: perInput(settings.columns, settings.layouts),
    fields: { features: '--columns (batch.columns)', label: '--id-column (batch.idColumn)' },
  });
  const inputs = plans.map((p) => ({ layout: p.input, indices: p.indices, columns: p.columns }));
  return { mode: 'columns', idIndex: id, inputs, floats: inputs.every((i) => FLOAT_TENSORS.has(i.layout.datatype)) };
}

/**
 * Parses a row's float feature cells into row `row` of each input's batch tensor; the reason it cannot, or
 * undefined. The tabular hot path: no array per row, no copy into the tensor afterwards.
 */
export function parseCellsInto(cells: Cell[], plan: ColumnsPlan, tensors: Record<string, Float32Array | Float64Array>, row: number): string | undefined {
  for (const input of plan.inputs) {
    const data = tensors[input.layout.name];
    const offset = row * input.indices.length;
    // A double past FP32's range would be scored as Infinity: a reject, not a number.
    const limit = input.layout.datatype === 'FP32' ? FP32_MAX : Infinity;
    for (let j = 0; j < input.indices.length; j++) {
      const raw = cells[input.indices[j]];
      if (typeof raw === 'string' && raw.length > 0 && raw.charCodeAt(0) > 32) {
        const number = +raw;
        if (number - number === 0 && number <= limit && number >= -limit) {
          data[offset + j] = number;
          continue;
        }
      }
      const value = parseValue(typeof raw === 'bigint' ? Number(raw) : raw, input.layout.datatype);
      if (value === undefined) return `column '${input.columns[j]}': ${valueProblem(typeof raw === 'string' ? raw.trim() : raw, input.layout.datatype)}`;
      if (Math.abs(value as number) > limit) return `column '${input.columns[j]}': ${shownValue(raw)} is out of range for FP32`;
      data[offset + j] = value as number;
    }
  }
  return undefined;
}

/**
 * A flat column list for a model of several inputs, split in the model's input order by each input's row
 * size (`--columns d0,d1,d2,d3,i0,i1,i2` for inputs of 4 and 3): a list that does not add up stays flat, and
 * planColumns says why.
 */
function perInput(columns: ReadSettings['columns'], layouts: InputLayout[]): string[] | Record<string, string[]> {
  if (!Array.isArray(columns) || columns.length === 0 || layouts.length < 2) return columns;
  if (layouts.some((l) => l.rowSize === null) || layouts.reduce((n, l) => n + l.rowSize!, 0) !== columns.length) return columns;
  const split: Record<string, string[]> = {};
  let at = 0;
  for (const layout of layouts) {
    split[layout.name] = columns.slice(at, at + layout.rowSize!);
    at += layout.rowSize!;
  }
  return split;
}

/** A table's column names: a CSV's header, a Parquet file's columns, a JSONL's first record's keys; undefined for others. */
export async function tableColumns(file: PlannedFile, reader: ByteReader): Promise<string[] | undefined> {
  if (file.format === 'csv') return file.header;
  if (file.format === 'parquet') return file.columns;
  if (file.format === 'jsonl' && file.records > 0) return jsonlHeader(file, reader);
  return undefined;
}

/** The feature columns a file's header gives each input (columns mode), to hold every other file to by name. */
export async function featureColumns(file: PlannedFile, settings: ReadSettings): Promise<Record<string, string[]> | undefined> {
  const header = await tableColumns(file, settings.reader);
  if (!header) return undefined;
  const plan = tablePlan(header, file.shown, settings);
  return plan.mode === 'columns' ? Object.fromEntries(plan.inputs.map((i) => [i.layout.name, i.columns])) : undefined;
}

/** One record's cells (by the header's order) to an item. */
function itemOf(cells: Cell[], plan: TablePlan, rowId: RowId, at: () => string, header: string[]): BatchItem {
  if (plan.mode === 'columns' && plan.floats && (plan.idIndex === undefined || typeof cells[plan.idIndex] === 'string')) {
    if (plan.idIndex !== undefined) {
      const id = (cells[plan.idIndex] as string).trim();
      if (id === '') return { kind: 'reject', rowId, where: at(), reason: `column '${header[plan.idIndex]}': the id is empty` };
      rowId.id = id;
    }
    return { kind: 'cells', rowId, at, cells, plan };
  }
  const where = at();
  if (plan.idIndex !== undefined) {
    const id = cells[plan.idIndex];
    if (id === undefined || id === null || String(id).trim() === '')
      return { kind: 'reject', rowId, where, reason: `column '${header[plan.idIndex]}': the id is empty` };
    rowId.id = typeof id === 'string' ? id.trim() : shownValue(id);
  }
  if (plan.mode === 'raw') {
    const value = cells[plan.index];
    if (typeof value !== 'string' || value === '')
      return { kind: 'reject', rowId, where, reason: `column '${plan.column}': expected a value, got ${shownValue(value)}` };
    return { kind: 'raw', rowId, where, load: async () => value };
  }
  const inputs: Record<string, (number | string)[]> = {};
  const shapes: Record<string, number[]> = {};
  if (plan.mode === 'columns' && plan.floats) return { kind: 'cells', rowId, at: () => where, cells, plan };
  if (plan.mode === 'columns') {
    for (const input of plan.inputs) {
      const values = new Array<number | string>(input.indices.length);
      const float = FLOATS.has(input.layout.datatype);
      for (let j = 0; j < input.indices.length; j++) {
        const raw = cells[input.indices[j]];
        // The common case first, without a call: a float input and a cell that is a finite number.
        if (float && typeof raw === 'string' && raw.length > 0 && raw.charCodeAt(0) > 32) {
          const number = +raw;
          if (number - number === 0) {
            values[j] = number;
            continue;
          }
        }
        const value = parseValue(typeof raw === 'bigint' ? Number(raw) : raw, input.layout.datatype);
        if (value === undefined)
          return {
            kind: 'reject',
            rowId,
            where,
            reason: `column '${input.columns[j]}': ${valueProblem(typeof raw === 'string' ? raw.trim() : raw, input.layout.datatype)}`,
          };
        if (typeof value === 'number' && Math.abs(value) > (FLOAT_LIMITS[input.layout.datatype] ?? Infinity))
          return { kind: 'reject', rowId, where, reason: `column '${input.columns[j]}': ${shownValue(raw)} is out of range for ${input.layout.datatype}` };
        values[j] = value;
      }
      inputs[input.layout.name] = values;
      shapes[input.layout.name] = input.layout.rowShape;
    }
    return { kind: 'row', rowId, where, inputs, shapes };
  }
  return tensorsItem(cells, plan, rowId, where);
}

/** A record whose keys hold each input's nested arrays: checked against the input's shape, then parsed. */
function tensorsItem(cells: Cell[], plan: Extract<TablePlan, { mode: 'tensors' }>, rowId: RowId, where: string): BatchItem {
  const inputs: Record<string, (number | string)[]> = {};
  const shapes: Record<string, number[]> = {};
  for (const { layout, index } of plan.inputs) {
    const value = cells[index];
    const shape = shapeOf(value);
    if (shape === null) return { kind: 'reject', rowId, where, reason: `key '${layout.name}': the nested arrays are ragged` };
    const flat = Array.isArray(value) ? value.flat(Infinity) : [value];
    const rowShape = layout.rowSize !== null && flat.length === layout.rowSize ? layout.rowShape : shape;
    const fits = rowShape.length === layout.rowShape.length && layout.rowShape.every((d, i) => d === -1 || d === rowShape[i]);
    if (!fits)
      return {
        kind: 'reject',
        rowId,
        where,
        reason: `key '${layout.name}': a row of shape [${shape.join(', ')}], the model wants [${layout.rowShape.join(', ')}]`,
      };
    const values = new Array<number | string>(flat.length);
    for (let i = 0; i < flat.length; i++) {
      const raw = flat[i];
      const parsed = parseValue(typeof raw === 'bigint' ? Number(raw) : raw, layout.datatype);
      if (parsed === undefined) return { kind: 'reject', rowId, where, reason: `key '${layout.name}' element ${i}: ${valueProblem(raw, layout.datatype)}` };
      if (typeof parsed === 'number' && Math.abs(parsed) > (FLOAT_LIMITS[layout.datatype] ?? Infinity))
        return { kind: 'reject', rowId, where, reason: `key '${layout.name}' element ${i}: ${shownValue(raw)} is out of range for ${layout.datatype}` };
      values[i] = parsed;
    }
    inputs[layout.name] = values;
    shapes[layout.name] = rowShape;
  }
  return { kind: 'row', rowId, where, inputs, shapes };
}

async function* readTextPiece(file: PlannedFile, piece: Piece, settings: ReadSettings): AsyncGenerator<BatchItem> {
  let record = piece.firstRecord;
  let header = file.header;
  let plan = header ? tablePlan(header, file.shown, settings) : undefined;
  for await (const { line, text } of textRecords(file, piece, settings.reader)) {
    record++;
    const rowId: RowId = { source: file.shown, row: record };
    const at = () => `${file.shown} line ${line}`;
    if (file.format === 'csv') {
      let cells: string[];
      try {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- csv-parse types the untyped overload loosely
        cells = text.includes('"') ? ((parseLine(text, { relax_quotes: true }) as string[][])[0] ?? []) : text.split(',');
      } catch (error) {
        yield { kind: 'reject', rowId, where: at(), reason: `not a CSV record (${(error as Error).message.split('\n')[0]})` };
        continue;
      }
      if (cells.length !== header!.length) {
        yield { kind: 'reject', rowId, where: at(), reason: `${cells.length} cells, the header has ${header!.length}` };
        continue;
      }
      yield nearImage(itemOf(cells, plan!, rowId, at, header!), file, settings);
      continue;
    }
    let object: unknown;
    try {
      object = JSON.parse(text);
    } catch (error) {
      yield { kind: 'reject', rowId, where: at(), reason: `not valid JSON (${(error as Error).message})` };
      continue;
    }
    if (typeof object !== 'object' || object === null || Array.isArray(object)) {
      yield { kind: 'reject', rowId, where: at(), reason: 'expected a JSON object' };
      continue;
    }
    const keyed = object as Record<string, Cell>;
    // A JSONL's columns are its first record's keys (in every process the same: the first of the file, read for it).
    if (!header) {
      header = await jsonlHeader(file, settings.reader);
      plan = tablePlan(header, file.shown, settings);
    }
    const missing = header.find((key) => !(key in keyed) && (plan!.mode !== 'columns' || plan!.idIndex !== header!.indexOf(key)));
    if (missing && (plan!.mode !== 'columns' || plan!.inputs.some((i) => i.columns.includes(missing)))) {
      yield { kind: 'reject', rowId, where: at(), reason: `missing key '${missing}'` };
      continue;
    }
    yield nearImage(
      itemOf(
        header.map((key) => keyed[key]),
        plan!,
        rowId,
        at,
        header,
      ),
      file,
      settings,
    );
  }
}

/** Checks that a table's columns feed the model, before any row is scored: a file that fails here would fail every row. */
export async function checkColumns(file: PlannedFile, settings: ReadSettings): Promise<void> {
  if (file.format === 'csv') tablePlan(file.header ?? [], file.shown, settings);
  else if (file.format === 'parquet') tablePlan(file.columns ?? [], file.shown, settings);
  else if (file.format === 'jsonl' && file.records > 0) tablePlan(await jsonlHeader(file, settings.reader), file.shown, settings);
}

export async function jsonlHeader(file: PlannedFile, reader: ByteReader): Promise<string[]> {
  for await (const { line, text } of textRecords(file, { file: 0, from: 0, to: file.size, firstRecord: 0, firstLine: 1, records: 0 }, reader)) {
    try {
      const first = JSON.parse(text) as unknown;
      if (typeof first === 'object' && first !== null && !Array.isArray(first)) return Object.keys(first);
    } catch {
      // a reject where it is read
    }
    throw inputError(`${file.shown} line ${line}: the first record is not a JSON object`, 'the first line names the keys every line has');
  }
  return [];
}

/** A file as hyparquet reads it: ranged reads from a bucket, or the local file. */
async function parquetBuffer(file: PlannedFile, reader: ByteReader): Promise<AsyncBuffer> {
  if (!isObjectUri(file.location)) return asyncBufferFromFile(file.location);
  return {
    byteLength: file.size,
    slice: async (start: number, end?: number) => {
      const bytes = await readRange(reader, file.location, start, end ?? file.size);
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    },
  };
}

async function* readParquetPiece(file: PlannedFile, piece: Piece, settings: ReadSettings): AsyncGenerator<BatchItem> {
  const header = file.columns ?? [];
  const plan = tablePlan(header, file.shown, settings);
  const buffer = await parquetBuffer(file, settings.reader);
  // A row group at a time: memory is bounded by the file's row group size, not the piece's.
  // At most PARQUET_SLICE rows at a time, whatever the file's row groups hold (a writer's default is up to a
  // million): the worker's memory is bounded by the slice, not by how the file was written.
  const slices: { start: number; end: number }[] = [];
  for (const group of file.rowGroups ?? []) {
    const from = Math.max(group.start, piece.from);
    const to = Math.min(group.start + group.rows, piece.to);
    for (let start = from; start < to; start += PARQUET_SLICE) slices.push({ start, end: Math.min(to, start + PARQUET_SLICE) });
  }
  for (const { start, end } of slices) {
    // Column by column (typed arrays for numbers), then a row at a time: rows as arrays of cells would cost
    // several times the group's size.
    const columns: Cell[][] = header.map(() => []);
    try {
      await parquetRead({
        file: buffer,
        compressors,
        rowStart: start,
        rowEnd: end,
        onChunk: (chunk: { columnName: string; columnData: ArrayLike<unknown>; rowStart: number; rowEnd: number }) => {
          const column = columns[header.indexOf(chunk.columnName)];
          if (!column) return;
          for (let i = 0; i < chunk.rowEnd - chunk.rowStart; i++) column[chunk.rowStart - start + i] = chunk.columnData[i] as Cell;
        },
      });
    } catch (error) {
      throw inputError(`${file.shown} rows ${start + 1}-${end}: unreadable Parquet (${(error as Error).message})`, 'write the file again');
    }
    for (let i = 0; i < end - start; i++) {
      // A new array a row: a 'cells' item keeps it until its batch is parsed.
      const cells: Cell[] = new Array<Cell>(header.length);
      for (let c = 0; c < header.length; c++) cells[c] = columns[c][i];
      const row = start + i + 1;
      yield nearImage(
        itemOf(cells, plan, { source: file.shown, row }, () => `${file.shown} row ${row}`, header),
        file,
        settings,
      );
    }
  }
}

async function* readNpyPiece(file: PlannedFile, piece: Piece, settings: ReadSettings): AsyncGenerator<BatchItem> {
  const { reader, layouts } = settings;
  if (layouts.length !== 1) throw inputError(`${file.shown}: an .npy file feeds one input, the model has ${layouts.length}`, 'use a JSONL or Parquet input');
  const layout = layouts[0];
  const start = await readRange(reader, file.location, 0, Math.min(file.size, 12));
  const { headerStart, headerLength } = npyPreamble(start, file.shown);
  const header = npyHeaderFrom(await readRange(reader, file.location, 0, headerStart + headerLength), file.shown);
  const { rowShape, dataOffset, rowBytes } = file.npy!;
  const size = rowShape.reduce((n, d) => n * d, 1);
  const fits = rowShape.length === layout.rowShape.length && layout.rowShape.every((d, i) => d === -1 || d === rowShape[i]);
  const flatFits = layout.rowSize === size;
  if (!fits && !flatFits)
    throw inputError(
      `${file.shown}: rows of shape [${rowShape.join(', ')}], input '${layout.name}' wants [${layout.rowShape.join(', ')}]`,
      'save the array with one row per sample',
    );
  let row = piece.from;
  let carry: Buffer = Buffer.alloc(0);
  for await (const chunk of reader.read(file.location, dataOffset + piece.from * rowBytes, dataOffset + piece.to * rowBytes)) {
    const bytes = carry.length ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let offset = 0;
    for (; offset + rowBytes <= bytes.length; offset += rowBytes) {
      row++;
      const rowId = { source: file.shown, row };
      const values = new Array<number | string>(size);
      let problem: string | undefined;
      for (let i = 0; i < size; i++) {
        const raw = header.read(view, offset + i * header.itemSize);
        const value = parseValue(raw, layout.datatype);
        if (value === undefined) {
          problem = `element ${i}: ${valueProblem(raw, layout.datatype)}`;
          break;
        }
        values[i] = value;
      }
      if (problem) yield { kind: 'reject', rowId, where: `${file.shown} index ${row - 1}`, reason: problem };
      else
        yield {
          kind: 'row',
          rowId,
          where: `${file.shown} index ${row - 1}`,
          inputs: { [layout.name]: values },
          shapes: { [layout.name]: fits ? rowShape : layout.rowShape },
        };
    }
    carry = bytes.subarray(offset);
  }
}

/**
 * A table's image column holds paths relative to the table's folder (or prefix): the row then loads
 * that image. A path that leads out of the folder is a reject.
 */
function nearImage(item: BatchItem, file: PlannedFile, settings: ReadSettings): BatchItem {
  if (item.kind !== 'raw' || settings.raw?.kind !== 'image') return item;
  const raw = settings.raw;
  return {
    ...item,
    load: async () => {
      const relative = (await item.load()) as string;
      const normal = path.posix.normalize(relative.replaceAll('\\', '/'));
      if (path.isAbsolute(relative) || normal.startsWith('../') || normal === '..' || /^[a-z0-9]+:\/\//i.test(relative))
        throw new RowProblem(`'${relative}' is outside the table's folder: image paths are relative to it`);
      const location = isObjectUri(file.location) ? `${file.location.replace(/[^/]*$/, '')}${normal}` : path.join(path.dirname(file.location), normal);
      const bytes = await readRange(settings.reader, location, 0, raw.maxBytes + 1).catch((error: unknown) => {
        throw new RowProblem(`'${relative}': ${(error as Error).message.split('\n')[0]}`);
      });
      if (bytes.length > raw.maxBytes)
        throw new RowProblem(`'${relative}': over the ${raw.maxBytes} bytes an image may have (model.preprocess.image.maxBytes)`);
      return bytes;
    },
  };
}

/** A row's input cannot be loaded: the row is a reject with this reason. */
export class RowProblem extends Error {}

async function* readImage(file: PlannedFile, settings: ReadSettings): AsyncGenerator<BatchItem> {
  const rowId = { source: file.shown, row: 1 };
  if (!settings.raw || settings.raw.kind !== 'image') {
    yield { kind: 'reject', rowId, where: file.shown, reason: 'an image, and the model takes no images' };
    return;
  }
  if (file.size > settings.raw.maxBytes) {
    yield {
      kind: 'reject',
      rowId,
      where: file.shown,
      reason: `${file.size} bytes, over the ${settings.raw.maxBytes} bytes an image may have (model.preprocess.image.maxBytes)`,
    };
    return;
  }
  yield { kind: 'raw', rowId, where: file.shown, load: () => readRange(settings.reader, file.location, 0, file.size) };
}
