/**
 * The truth that arrives after the answer: a CSV or JSONL file with an `id`
 * (the id the server answered with), a `label` and, for requests of several
 * rows, a `row`. Read for `mlops monitor --labels`.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import readline from 'node:readline';
import { inputError } from '../errors.js';
import { csvRecords } from '../holdout/records.js';

export interface LabelRow {
  id: string;
  /** undefined: the file has no row for it, which means row 0 of a one-row request. */
  row: number | undefined;
  label: unknown;
  /** "line 12": where it is in the file, for messages. */
  where: string;
}

export interface LabelSet {
  file: string;
  /** One per (id, row); identical duplicates were merged, conflicting ones removed. */
  labels: LabelRow[];
  /** Lines that repeat an (id, row) with the same label: kept once. */
  duplicates: number;
  /** (id, row) pairs given different labels: none of their lines is scored. */
  conflicting: { count: number; example?: string };
}

export const labelKey = (id: string, row: number | undefined) => `${id}\u0000${row ?? 0}`;

function rowNumber(value: unknown, where: string, file: string): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw inputError(
      `${file} ${where}, row: ${JSON.stringify(value)} is not a row index (0, 1, ...)`,
      'row is the index of the row within its request; leave it empty for one-row requests',
    );
  return n;
}

async function* csvLabels(file: string): AsyncGenerator<LabelRow> {
  let columns: { id: number; label: number; row: number } | undefined;
  for await (const record of csvRecords(file)) {
    if (!columns) {
      const header = record.cells.map((c) => c.trim());
      const id = header.indexOf('id');
      const label = header.indexOf('label');
      if (id === -1 || label === -1) {
        throw inputError(
          `${file}: the header has no ${id === -1 ? "'id'" : "'label'"} column (it has ${header.join(', ')})`,
          'a labels file needs the columns id and label (and row for requests of several rows)',
        );
      }
      columns = { id, label, row: header.indexOf('row') };
      continue;
    }
    const where = `line ${record.line}`;
    const id = record.cells[columns.id]?.trim() ?? '';
    if (id === '') throw inputError(`${file} ${where}, id: empty`, 'every label needs the id the server answered with');
    const label = record.cells[columns.label]?.trim();
    if (label === undefined || label === '') throw inputError(`${file} ${where}, label: empty`, 'drop rows whose truth is not known yet');
    yield { id, row: columns.row === -1 ? undefined : rowNumber(record.cells[columns.row]?.trim(), where, file), label, where };
  }
  if (!columns) throw inputError(`${file} is empty`, 'a labels file needs a header with id and label, and a line per label');
}

async function* jsonlLabels(file: string): AsyncGenerator<LabelRow> {
  let line = 0;
  for await (const text of readline.createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity })) {
    line++;
    if (text.trim() === '') continue;
    const where = `line ${line}`;
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch (error) {
      throw inputError(`${file} ${where}: not valid JSON (${(error as Error).message})`, 'one JSON object per line, like {"id": "...", "label": 1}');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw inputError(`${file} ${where}: expected a JSON object`, 'one JSON object per line, like {"id": "...", "label": 1}');
    const id = parsed.id;
    if (typeof id !== 'string' && typeof id !== 'number')
      throw inputError(
        `${file} ${where}, id: ${id === undefined ? 'missing' : `${JSON.stringify(id)} is not a string`}`,
        'every label needs the id the server answered with',
      );
    if (parsed.label === undefined || parsed.label === null) throw inputError(`${file} ${where}, label: missing`, 'drop lines whose truth is not known yet');
    yield { id: String(id), row: rowNumber(parsed.row, where, file), label: parsed.label, where };
  }
}

/** Reads and checks a labels file (.csv or .jsonl); every problem names the file and line. */
export async function readLabels(file: string, shown: string): Promise<LabelSet> {
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) throw inputError(`--labels ${shown}: file not found`, 'pass a CSV or JSONL file with id and label');
  const lower = shown.toLowerCase();
  const rows = lower.endsWith('.csv') ? csvLabels(file) : lower.endsWith('.jsonl') || lower.endsWith('.ndjson') ? jsonlLabels(file) : undefined;
  if (!rows)
    throw inputError(
      `--labels ${shown}: expected a .csv or .jsonl file`,
      'the truth: a CSV with a header, or JSONL, with id and label (and row for requests of several rows)',
    );
  const byKey = new Map<string, LabelRow>();
  const conflicted = new Set<string>();
  let duplicates = 0;
  let example: string | undefined;
  for await (const row of rows) {
    const key = labelKey(row.id, row.row);
    const seen = byKey.get(key);
    if (!seen) {
      byKey.set(key, row);
      continue;
    }
    if (String(seen.label) === String(row.label)) duplicates++;
    else if (!conflicted.has(key)) {
      conflicted.add(key);
      example ??= `id ${row.id}${row.row !== undefined ? ` row ${row.row}` : ''}: ${JSON.stringify(seen.label)} (${seen.where}) and ${JSON.stringify(row.label)} (${row.where})`;
    }
  }
  for (const key of conflicted) byKey.delete(key);
  return { file: shown, labels: [...byKey.values()], duplicates, conflicting: { count: conflicted.size, example } };
}
