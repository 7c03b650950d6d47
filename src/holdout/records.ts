import { parse as parseLine } from 'csv-parse/sync';
import { createReadStream } from 'node:fs';

export interface CsvRecord {
  /** The line the record starts on (1 is the header). */
  line: number;
  cells: string[];
}

/**
 * Streams CSV records. Lines without a quote character (nearly every line of
 * a numeric holdout) are split on commas directly; a record with quotes,
 * including one whose quoted field spans lines (RFC 4180), is handed to
 * csv-parse. csv-parse alone reads about 7 MB/s here, a third of the speed.
 */
export async function* csvRecords(file: string): AsyncGenerator<CsvRecord> {
  let carry = '';
  let line = 0;
  let pending = '';
  let pendingLine = 0;
  let first = true;
  const emit = (text: string, at: number): CsvRecord | null => {
    let record = text.endsWith('\r') ? text.slice(0, -1) : text;
    if (first) {
      first = false;
      if (record.charCodeAt(0) === 0xfeff) record = record.slice(1);
    }
    if (record.trim() === '') return null;
    const cells = record.includes('"') ? (parseLine(record, { relax_quotes: true })[0] ?? []) : record.split(',');
    // Cells are not trimmed here (Number() ignores spaces); the header and labels are trimmed where read.
    return { line: at, cells };
  };
  for await (const chunk of createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
    const text = carry + (chunk as string);
    let start = 0;
    for (let end = text.indexOf('\n'); end !== -1; end = text.indexOf('\n', start)) {
      const piece = text.slice(start, end);
      start = end + 1;
      line++;
      if (pending) {
        pending += '\n' + piece;
      } else {
        pending = piece;
        pendingLine = line;
      }
      if (quotesBalanced(pending)) {
        const record = emit(pending, pendingLine);
        pending = '';
        if (record) yield record;
      }
    }
    carry = text.slice(start);
  }
  if (carry || pending) {
    line++;
    const last = pending ? `${pending}\n${carry}` : carry;
    const record = emit(last, pending ? pendingLine : line);
    if (record) yield record;
  }
}

function quotesBalanced(text: string): boolean {
  let count = 0;
  for (let i = text.indexOf('"'); i !== -1; i = text.indexOf('"', i + 1)) count++;
  return count % 2 === 0;
}
