/**
 * Cuts the input into shards: the unit a worker takes, a re-run skips when done, and `--shard i/n`
 * or a Job's index runs. The input's files are laid end to end; shard k owns the records that start
 * in the k-th n-th of their bytes. A cut is moved to the next record start (a CSV record may span
 * lines inside quotes; a Parquet file is cut between row groups; an .npy between rows), so every
 * record is read by exactly one shard, and every process planning the same input cuts it the same way.
 */
import { createHash } from 'node:crypto';
import { parquetMetadata, type FileMetaData } from 'hyparquet';
import { inputError } from '../errors.js';
import { npyHeaderFrom, npyPreamble } from '../holdout/npy.js';
import { readRange, type ByteReader, type InputFile } from './input.js';

/** One file's part of a shard, in the file's own unit: bytes (CSV, JSONL), rows (Parquet, .npy) or the file (an image). */
export interface Piece {
  file: number;
  /** CSV/JSONL: byte offsets [from, to); Parquet and .npy: row indexes; an image: 0 to 1. */
  from: number;
  to: number;
  /** The index in its file of the piece's first record (0 is the first data row). */
  firstRecord: number;
  /** The line its first record starts on (CSV/JSONL), for messages. */
  firstLine: number;
  records: number;
}

export interface Shard {
  index: number;
  pieces: Piece[];
  records: number;
}

/** What planning learnt of each file, which readers need again. */
export interface PlannedFile extends InputFile {
  records: number;
  /** CSV: the header's cells. */
  header?: string[];
  /** Parquet: each row group's first row and row count. */
  rowGroups?: { start: number; rows: number }[];
  /** Parquet: the top-level column names. */
  columns?: string[];
  /** .npy: each row's shape, the data's offset and the item size. */
  npy?: { rowShape: number[]; dataOffset: number; rowBytes: number };
}

export interface BatchPlan {
  /** Fixed by the files' names and sizes and the shard count: a manifest from another input is not resumed. */
  fingerprint: string;
  files: PlannedFile[];
  shards: Shard[];
  records: number;
}

/** A position records can start at: [file, unit offset, record index, line]. */
interface Start {
  at: number;
  record: number;
  line: number;
  /** This start's byte offset in the file (for the cut). */
  byte: number;
}

/** Each file's weight for cutting: its size, or a Parquet file's uncompressed size, read from its footer. */
export async function weighInput(files: InputFile[], reader: ByteReader): Promise<InputFile[]> {
  return Promise.all(
    files.map(async (file) => {
      if (file.format !== 'parquet') return { ...file, weight: file.size };
      const metadata = await parquetFooter(file, reader);
      return { ...file, weight: metadata.row_groups.reduce((n, g) => n + Number(g.total_byte_size), 0) };
    }),
  );
}

export const inputWeight = (files: InputFile[]) => files.reduce((n, f) => n + (f.weight ?? f.size), 0);

export async function planShards(files: InputFile[], shardCount: number, reader: ByteReader): Promise<BatchPlan> {
  const total = inputWeight(files);
  // Cut k (1..n-1) falls at byte k*total/n of the files laid end to end.
  const cuts: { file: number; byte: number }[] = [];
  let base = 0;
  let k = 1;
  files.forEach((file, index) => {
    const size = file.weight ?? file.size;
    while (k < shardCount && Math.floor((k * total) / shardCount) < base + size) {
      cuts.push({ file: index, byte: Math.floor((k * total) / shardCount) - base });
      k++;
    }
    base += size;
  });
  const last = files[files.length - 1];
  while (k++ < shardCount) cuts.push({ file: files.length - 1, byte: last ? (last.weight ?? last.size) : 0 });
  const planned: PlannedFile[] = [];
  const positions: Start[][] = [];
  for (const [index, file] of files.entries()) {
    const wanted = cuts.filter((c) => c.file === index).map((c) => c.byte);
    const { facts, starts, first, end } = await scanFile(file, wanted, reader);
    planned.push(facts);
    positions.push([first, ...starts, end]);
  }
  const shards = cutShards(positions, cuts.length + 1);
  const fingerprint = createHash('sha256')
    .update(JSON.stringify([shardCount, files.map((f) => [f.shown, f.size])]))
    .digest('hex')
    .slice(0, 16);
  return { fingerprint, files: planned, shards, records: planned.reduce((n, f) => n + f.records, 0) };
}

/**
 * Each file's positions are its first record, one start per cut in it, and its end: the piece between
 * two positions belongs to the current shard, and every position but the last is a cut that starts
 * the next one.
 */
function cutShards(positions: Start[][], count: number): Shard[] {
  const shards: Shard[] = Array.from({ length: count }, (_, index) => ({ index, pieces: [], records: 0 }));
  let shard = 0;
  positions.forEach((list, file) => {
    for (let j = 0; j < list.length - 1; j++) {
      if (j > 0) shard++;
      const records = list[j + 1].record - list[j].record;
      if (records <= 0) continue;
      shards[shard].pieces.push({ file, from: list[j].at, to: list[j + 1].at, firstRecord: list[j].record, firstLine: list[j].line, records });
      shards[shard].records += records;
    }
  });
  return shards;
}

async function scanFile(file: InputFile, cuts: number[], reader: ByteReader): Promise<{ facts: PlannedFile; starts: Start[]; first: Start; end: Start }> {
  switch (file.format) {
    case 'csv':
    case 'jsonl':
      return scanText(file, cuts, reader);
    case 'parquet':
      return scanParquet(file, cuts, reader);
    case 'npy':
      return scanNpy(file, cuts, reader);
    case 'image': {
      // One record, starting at byte 0: a cut inside it goes after it.
      const first = { at: 0, record: 0, line: 0, byte: 0 };
      const end = { at: 1, record: 1, line: 0, byte: file.size };
      return { facts: { ...file, records: 1 }, first, starts: cuts.map((c) => (c <= 0 ? first : end)), end };
    }
  }
}

/**
 * One pass over a CSV or JSONL file: its record count, its header (CSV), and the first record start at
 * or after each cut. A CSV line break inside quotes does not end a record.
 */
async function scanText(file: InputFile, cuts: number[], reader: ByteReader): Promise<{ facts: PlannedFile; starts: Start[]; first: Start; end: Start }> {
  const csv = file.format === 'csv';
  const starts: Start[] = [];
  let cut = 0;
  let offset = 0;
  let line = 1;
  let records = 0;
  let quotes = 0;
  let recordStart = 0;
  let recordLine = 1;
  let headerBytes: Buffer[] | undefined = csv ? [] : undefined;
  let header: string[] | undefined;
  let first: Start | undefined = csv ? undefined : { at: 0, record: 0, line: 1, byte: 0 };
  let blankRun = true;
  if (!csv) for (; cut < cuts.length && cuts[cut] <= 0; cut++) starts.push(first!);
  const endRecord = (nextStart: number) => {
    if (!blankRun) {
      if (csv && !header) {
        header = parseHeader(Buffer.concat(headerBytes!), file.shown);
        headerBytes = undefined;
        first = { at: nextStart, record: 0, line: line + 1, byte: nextStart };
      } else records++;
    }
    recordStart = nextStart;
    recordLine = line + 1;
    blankRun = true;
    while (cut < cuts.length && cuts[cut] <= recordStart) {
      starts.push({ at: recordStart, record: records, line: recordLine, byte: recordStart });
      cut++;
    }
  };
  for await (const chunk of reader.read(file.location, 0, file.size)) {
    const bytes = chunk as Buffer;
    if (headerBytes) headerBytes.push(bytes.subarray(0, Math.min(bytes.length, 1 << 20)));
    let from = 0;
    // The next quote in the chunk, found once per quote (not searched from every line).
    let quote = csv ? bytes.indexOf(34) : -1;
    for (let nl = bytes.indexOf(10, from); ; nl = bytes.indexOf(10, from)) {
      const stop = nl === -1 ? bytes.length : nl;
      if (blankRun && hasContent(bytes, from, stop)) blankRun = false;
      for (; quote !== -1 && quote < stop; quote = bytes.indexOf(34, quote + 1)) quotes++;
      if (nl === -1) break;
      from = nl + 1;
      if (quotes % 2 === 0) endRecord(offset + from);
      line++;
    }
    offset += bytes.length;
  }
  if (!blankRun) endRecord(offset);
  if (csv && !header) throw inputError(`${file.shown} is empty: no header row`, 'the first line must name the columns');
  first ??= { at: offset, record: 0, line, byte: offset };
  const end = { at: offset, record: records, line, byte: offset };
  while (starts.length < cuts.length) starts.push(end);
  // A cut inside the header moves to the first data row.
  const fixed = starts.map((s) => (s.at < first!.at ? first! : s));
  return { facts: { ...file, records, ...(header ? { header } : {}) }, starts: fixed, first, end };
}

function hasContent(bytes: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] > 32) return true;
  return false;
}

function parseHeader(bytes: Buffer, shown: string): string[] {
  let text = bytes.toString('utf8');
  const newline = text.indexOf('\n');
  if (newline !== -1) text = text.slice(0, newline);
  text = text.replace(/\r$/, '').replace(/^\uFEFF/, '');
  if (text.includes('"')) throw inputError(`${shown}: a quoted header`, 'name the columns without quotes');
  return text.split(',').map((c) => c.trim());
}

async function scanParquet(file: InputFile, cuts: number[], reader: ByteReader): Promise<{ facts: PlannedFile; starts: Start[]; first: Start; end: Start }> {
  const metadata = await parquetFooter(file, reader);
  const groups: { start: number; rows: number; byte: number }[] = [];
  let row = 0;
  // Cuts fall in the file's weight (its uncompressed bytes): a row group starts where the ones before it end.
  let weight = 0;
  for (const group of metadata.row_groups) {
    groups.push({ start: row, rows: Number(group.num_rows), byte: weight });
    row += Number(group.num_rows);
    weight += Number(group.total_byte_size);
  }
  const end = { at: row, record: row, line: 0, byte: weight };
  const starts = cuts.map((c) => {
    const group = groups.find((g) => g.byte >= c);
    return group ? { at: group.start, record: group.start, line: 0, byte: group.byte } : end;
  });
  const columns = topLevelColumns(metadata);
  return {
    facts: { ...file, records: row, rowGroups: groups.map((g) => ({ start: g.start, rows: g.rows })), columns },
    starts,
    first: { at: 0, record: 0, line: 0, byte: 0 },
    end,
  };
}

/** The names of the root's children: the columns a row has (a nested column's leaves are under its name). */
function topLevelColumns(metadata: FileMetaData): string[] {
  const names: string[] = [];
  let position = 1;
  for (let c = 0; c < (metadata.schema[0].num_children ?? 0); c++) {
    names.push(metadata.schema[position].name);
    position += subtreeSize(metadata, position);
  }
  return names;
}

function subtreeSize(metadata: FileMetaData, position: number): number {
  const children = metadata.schema[position].num_children ?? 0;
  let size = 1;
  for (let c = 0; c < children; c++) size += subtreeSize(metadata, position + size);
  return size;
}

/** A Parquet file's metadata, read from its footer with two ranged reads. */
export async function parquetFooter(file: InputFile, reader: ByteReader): Promise<FileMetaData> {
  if (file.size < 12) throw inputError(`${file.shown}: not a Parquet file (${file.size} bytes)`, 'write it with a Parquet library');
  const tail = await readRange(reader, file.location, file.size - 8, file.size);
  if (tail.toString('latin1', 4) !== 'PAR1') throw inputError(`${file.shown}: not a Parquet file (no PAR1 at its end)`, 'write it with a Parquet library');
  const length = tail.readUInt32LE(0);
  if (length + 8 > file.size) throw inputError(`${file.shown}: a damaged Parquet footer`, 'write the file again');
  const footer = await readRange(reader, file.location, file.size - 8 - length, file.size);
  try {
    return parquetMetadata(new Uint8Array(footer));
  } catch (error) {
    throw inputError(`${file.shown}: a damaged Parquet footer (${(error as Error).message})`, 'write the file again');
  }
}

async function scanNpy(file: InputFile, cuts: number[], reader: ByteReader): Promise<{ facts: PlannedFile; starts: Start[]; first: Start; end: Start }> {
  const start = await readRange(reader, file.location, 0, Math.min(file.size, 12));
  const { headerStart, headerLength } = npyPreamble(start, file.shown);
  const header = npyHeaderFrom(await readRange(reader, file.location, 0, headerStart + headerLength), file.shown);
  if (header.fortranOrder) throw inputError(`${file.shown}: a Fortran-ordered array`, 'save it with numpy.save(np.ascontiguousarray(x))');
  if (header.shape.length === 0) throw inputError(`${file.shown}: a 0-d array has no rows`, 'save one row per sample');
  const rows = header.shape[0];
  const rowShape = header.shape.slice(1);
  const rowBytes = rowShape.reduce((n, d) => n * d, 1) * header.itemSize;
  if (header.dataOffset + rows * rowBytes > file.size) throw inputError(`${file.shown}: the file ends before its ${rows} rows`, 'save it again');
  const end = { at: rows, record: rows, line: 0, byte: file.size };
  const starts = cuts.map((c) => {
    const row = rowBytes === 0 ? rows : Math.max(0, Math.ceil((c - header.dataOffset) / rowBytes));
    return row >= rows ? end : { at: row, record: row, line: 0, byte: header.dataOffset + row * rowBytes };
  });
  return {
    facts: { ...file, records: rows, npy: { rowShape, dataOffset: header.dataOffset, rowBytes } },
    starts,
    first: { at: 0, record: 0, line: 0, byte: header.dataOffset },
    end,
  };
}
