import { open } from 'node:fs/promises';
import { inputError } from '../errors.js';
import type { HoldoutRow, HoldoutSource, InputLayout } from './types.js';
import { parseValue, valueProblem } from './values.js';

export interface NpyHeader {
  descr: string;
  fortranOrder: boolean;
  shape: number[];
  dataOffset: number;
  itemSize: number;
  read: (view: DataView, offset: number) => number | string;
}

/** NumPy .npy format 1.0-3.0: magic, version, header length, a Python dict literal, then the data. */
export async function readNpyHeader(file: string, shown: string): Promise<NpyHeader> {
  const handle = await open(file, 'r').catch(() => {
    throw inputError(`${shown}: file not found`, 'check the --holdout / --labels path');
  });
  try {
    const start = Buffer.alloc(12);
    const { bytesRead } = await handle.read(start, 0, 12, 0);
    const { headerStart, headerLength } = npyPreamble(start.subarray(0, bytesRead), shown);
    const header = Buffer.alloc(headerStart + headerLength);
    await handle.read(header, 0, header.length, 0);
    return npyHeaderFrom(header, shown);
  } finally {
    await handle.close();
  }
}

/** Where the header dict starts and how long it is, from the file's first 12 bytes. */
export function npyPreamble(start: Buffer, shown: string): { headerStart: number; headerLength: number } {
  if (start.length < 10 || start.toString('latin1', 0, 6) !== '\x93NUMPY') {
    throw inputError(`${shown} is not a NumPy .npy file (no \\x93NUMPY magic)`, 'save it with numpy.save');
  }
  const major = start[6];
  return major === 1 ? { headerStart: 10, headerLength: start.readUInt16LE(8) } : { headerStart: 12, headerLength: start.readUInt32LE(8) };
}

/** The header, from the file's first bytes (at least up to the end of the header dict). */
export function npyHeaderFrom(bytes: Buffer, shown: string): NpyHeader {
  const { headerStart, headerLength } = npyPreamble(bytes, shown);
  if (bytes.length < headerStart + headerLength) throw inputError(`${shown}: unreadable .npy header (the file ends inside it)`, 'save it with numpy.save');
  const text = bytes.toString('latin1', headerStart, headerStart + headerLength);
  const descr = /'descr':\s*'([^']+)'/.exec(text)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(text)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw inputError(`${shown}: unreadable .npy header`, 'save it with numpy.save');
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  const { itemSize, read } = reader(descr, shown);
  return { descr, fortranOrder: fortran === 'True', shape, dataOffset: headerStart + headerLength, itemSize, read };
}

function reader(descr: string, shown: string): Pick<NpyHeader, 'itemSize' | 'read'> {
  const little = descr[0] !== '>';
  const kind = descr.slice(1);
  const numeric: Record<string, [number, (v: DataView, o: number) => number]> = {
    f4: [4, (v, o) => v.getFloat32(o, little)],
    f8: [8, (v, o) => v.getFloat64(o, little)],
    i1: [1, (v, o) => v.getInt8(o)],
    u1: [1, (v, o) => v.getUint8(o)],
    b1: [1, (v, o) => v.getUint8(o)],
    i2: [2, (v, o) => v.getInt16(o, little)],
    u2: [2, (v, o) => v.getUint16(o, little)],
    i4: [4, (v, o) => v.getInt32(o, little)],
    u4: [4, (v, o) => v.getUint32(o, little)],
    i8: [8, (v, o) => Number(v.getBigInt64(o, little))],
    u8: [8, (v, o) => Number(v.getBigUint64(o, little))],
  };
  if (numeric[kind]) return { itemSize: numeric[kind][0], read: numeric[kind][1] };
  const unicode = /^U(\d+)$/.exec(kind);
  if (unicode) {
    const chars = Number(unicode[1]);
    return {
      itemSize: chars * 4,
      read: (v, o) => {
        let s = '';
        for (let i = 0; i < chars; i++) {
          const code = v.getUint32(o + i * 4, little);
          if (code === 0) break;
          s += String.fromCodePoint(code);
        }
        return s;
      },
    };
  }
  throw inputError(`${shown}: dtype '${descr}' is not supported`, 'save numbers (float, int, bool) or unicode strings');
}

/** Bytes one read takes: a few rows of images, thousands of tabular rows, never rows x a fixed count. */
const READ_BYTES = 4 * 2 ** 20;

async function* readRows(file: string, header: NpyHeader): AsyncGenerator<ArrayLike<number | string>> {
  const text = header.descr.includes('U');
  const rows = header.shape[0] ?? 1;
  const rowSize = header.shape.slice(1).reduce((n, d) => n * d, 1);
  const rowBytes = rowSize * header.itemSize;
  const rowsPerRead = Math.max(1, Math.min(rows, Math.floor(READ_BYTES / Math.max(1, rowBytes))));
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(rowBytes * rowsPerRead);
    for (let first = 0; first < rows; first += rowsPerRead) {
      const count = Math.min(rowsPerRead, rows - first);
      const { bytesRead } = await handle.read(buffer, 0, count * rowBytes, header.dataOffset + first * rowBytes);
      if (bytesRead < count * rowBytes) throw new Error('truncated');
      const view = new DataView(buffer.buffer, buffer.byteOffset, bytesRead);
      for (let r = 0; r < count; r++) {
        // Numbers as a typed array: an image row of 3x320x320 is 2.4 MB, not an array of 307,200 boxed values.
        const values = text ? new Array<number | string>(rowSize) : new Float64Array(rowSize);
        for (let j = 0; j < rowSize; j++) values[j] = header.read(view, (r * rowSize + j) * header.itemSize);
        yield values;
      }
    }
  } finally {
    await handle.close();
  }
}

export interface NpyOptions {
  file: string;
  shown: string;
  /** Undefined for data without labels (a reference profile needs none). */
  labelsFile?: string;
  labelsShown?: string;
  layouts: InputLayout[];
}

export async function openNpy(options: NpyOptions): Promise<HoldoutSource> {
  const { layouts, shown } = options;
  const labelsShown = options.labelsShown ?? '';
  if (layouts.length !== 1) {
    throw inputError(`${shown}: .npy holdouts fit single-input models; this model has ${layouts.length} inputs`, 'use a CSV or JSONL holdout');
  }
  const layout = layouts[0];
  const x = await readNpyHeader(options.file, shown);
  const y = options.labelsFile ? await readNpyHeader(options.labelsFile, labelsShown) : undefined;
  if (x.fortranOrder || y?.fortranOrder)
    throw inputError(`${x.fortranOrder ? shown : labelsShown}: Fortran-ordered arrays are not supported`, 'save with numpy.save(np.ascontiguousarray(a))');
  const rowShape = x.shape.slice(1);
  const fits = rowShape.length === layout.rowShape.length && layout.rowShape.every((d, i) => d === -1 || d === rowShape[i]);
  if (!fits) {
    throw inputError(
      `${shown}: shape (${x.shape.join(', ')}) gives rows of shape [${rowShape.join(', ')}], input '${layout.name}' wants [${layout.rowShape.join(', ')}]`,
      'the first axis is the rows; the rest must match the model input',
    );
  }
  if (y && (y.shape.length > 2 || (y.shape.length === 2 && y.shape[1] !== 1))) {
    throw inputError(`${labelsShown}: shape (${y.shape.join(', ')}); expected one label per row, shape (n,) or (n, 1)`);
  }
  if (y && y.shape[0] !== x.shape[0]) {
    throw inputError(`${labelsShown} has ${y.shape[0]} labels but ${shown} has ${x.shape[0]} rows`, 'the two files must have the same number of rows');
  }
  const rowSize = rowShape.reduce((n, d) => n * d, 1);
  return {
    file: options.file,
    format: 'npy',
    featureNames: { [layout.name]: Array.from({ length: rowSize }, (_, i) => `${layout.name}[${i}]`) },
    async *rows(): AsyncGenerator<HoldoutRow> {
      const labels = y ? readRows(options.labelsFile!, y) : undefined;
      let index = 0;
      try {
        for await (const raw of readRows(options.file, x)) {
          const where = `index ${index}`;
          const values = layout.datatype === 'BYTES' ? new Array<number | string>(raw.length) : new Float64Array(raw.length);
          for (let j = 0; j < raw.length; j++) {
            const value = parseValue(raw[j], layout.datatype);
            if (value === undefined)
              throw inputError(`${shown} ${where}, element ${j}: ${valueProblem(raw[j], layout.datatype)}`, 'clean the array before saving it');
            values[j] = value;
          }
          const label = labels ? ((await labels.next()).value as (number | string)[] | undefined)?.[0] : '';
          if (label === undefined || (typeof label === 'number' && !Number.isFinite(label))) {
            throw inputError(`${labelsShown} ${where}: the label is missing or not finite`);
          }
          yield { where, inputs: { [layout.name]: values }, shapes: { [layout.name]: rowShape }, label };
          index++;
        }
      } catch (error) {
        if ((error as Error).message === 'truncated') throw inputError(`${shown} or ${labelsShown} ends early (truncated file?)`, 'save the arrays again');
        throw error;
      } finally {
        // The labels are read in step, not by a for-await: when the rows stop early (an error, a sample
        // of the first rows) their file is closed here, not left to the garbage collector.
        await labels?.return(undefined);
      }
    },
  };
}
