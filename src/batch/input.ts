/**
 * What `mlops batch --input` names, as a sorted list of files: one file, a folder, a glob, or the
 * same on object storage. Each file is read by byte ranges, so a shard reads only its own part of
 * the input, here or from a bucket.
 */
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import picomatch from 'picomatch';
import { glob } from 'tinyglobby';
import { inputError } from '../errors.js';
import { isObjectUri, type ObjectStore } from '../storage/object-store.js';

export type InputFormat = 'csv' | 'jsonl' | 'parquet' | 'npy' | 'image';

export interface InputFile {
  /** A local absolute path, or an object URI. */
  location: string;
  /** As messages and output rows name it: relative to the input's folder or prefix. */
  shown: string;
  size: number;
  /** A local file's modification time: a re-run over a file changed in place starts over. */
  modified?: number;
  /** What the file weighs when cutting shards: its size, or for Parquet its uncompressed size (compressed bytes say little of the rows). */
  weight?: number;
  format: InputFormat;
  /** Images: the class folder it sits in, when the folder is an ImageFolder. */
  label?: string;
}

export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);
const TABLE_FORMATS: Record<string, InputFormat> = { '.csv': 'csv', '.jsonl': 'jsonl', '.ndjson': 'jsonl', '.parquet': 'parquet', '.npy': 'npy' };

export function formatOf(name: string): InputFormat | undefined {
  const extension = path.extname(name).toLowerCase();
  return TABLE_FORMATS[extension] ?? (IMAGE_EXTENSIONS.has(extension) ? 'image' : undefined);
}

/** Reads files here or in a bucket: the one seam between the batch code and where bytes live. */
export interface ByteReader {
  /** Bytes [start, end) of a file, streamed. */
  read(location: string, start: number, end: number): Readable;
}

export function byteReader(storeFor: (uri: string) => ObjectStore): ByteReader {
  return {
    read(location, start, end) {
      if (end <= start) return Readable.from([]);
      if (isObjectUri(location)) return storeFor(location).read(location, { start, end });
      return createReadStream(location, { start, end: end - 1, highWaterMark: 1 << 20 });
    },
  };
}

/** Reads a whole (small) range into memory: Parquet footers and pages, .npy headers, images. */
export async function readRange(reader: ByteReader, location: string, start: number, end: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of reader.read(location, start, end)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A file `mlops batch` wrote: a part, a shard record, a manifest, the rejects, or anything in a parts folder. */
export function isBatchOutput(shown: string): boolean {
  const parts = shown.split(/[\\/]/);
  const name = parts[parts.length - 1];
  return (
    parts.some((p) => p.endsWith('.parts') || p === '_shards') ||
    /^part-\d{5}-of-\d{5}\./.test(name) ||
    name === 'manifest.json' ||
    name.endsWith('.manifest.json') ||
    name === 'rejects.jsonl' ||
    name.endsWith('.rejects.jsonl') ||
    name.endsWith('.partial')
  );
}

const hasWildcard = (value: string) => /[*?[\]{}]/.test(value);

/**
 * Every file the input names, sorted: the sort fixes the shards, so every process planning the same
 * input (a re-run, a pod of a Job) cuts it the same way.
 */
export async function listInput(
  input: string,
  cwd: string,
  storeFor: (uri: string) => ObjectStore,
  isOutput?: (location: string) => boolean,
): Promise<InputFile[]> {
  const all = isObjectUri(input) ? await listObjects(input, storeFor) : await listLocal(input, cwd);
  // Named as the input itself, the output would overwrite it: refused. Inside the input's folder, it is left out.
  if (isOutput && all.length > 0 && all.every((f) => isOutput(f.location!)))
    throw inputError(`--output: would write over the input ${all[0].shown}`, 'write the scores to another file');
  const files = all.filter((f) => !isOutput?.(f.location!));
  // mlops batch's own outputs (parts, manifests, rejects) are never inputs: an output inside the input's folder stays out of it.
  const usable = files.filter((f) => f.format && !isBatchOutput(f.shown!));
  if (usable.length === 0) {
    throw inputError(
      `${input}: no input files found`,
      'name a .csv, .jsonl, .parquet or .npy file, a folder or glob of them, or a folder of images (.jpg, .png, ...)',
    );
  }
  const formats = new Set(usable.map((f) => (f.format === 'image' ? 'image' : 'table')));
  if (formats.size > 1) throw inputError(`${input}: holds both images and tables`, 'score one kind of input per run: point --input at one of them');
  const tables = new Set(usable.filter((f) => f.format !== 'image').map((f) => f.format));
  if (tables.size > 1) throw inputError(`${input}: holds ${[...tables].join(' and ')} files`, 'score one format per run: narrow --input with a glob');
  return usable as InputFile[];
}

async function listLocal(input: string, cwd: string): Promise<Partial<InputFile>[]> {
  const absolute = path.resolve(cwd, input);
  if (hasWildcard(input)) {
    const found = await glob(input, { cwd, absolute: true, onlyFiles: true, dot: false });
    const base = path.resolve(cwd, input.split(/[*?[{]/)[0].replace(/[^/]*$/, ''));
    return Promise.all(found.sort().map(async (file) => describe(file, path.relative(base, file), await stat(file))));
  }
  const info = await stat(absolute).catch(() => undefined);
  if (!info) throw inputError(`${input}: not found`, 'check the --input path');
  if (info.isFile()) {
    if (!formatOf(absolute))
      throw inputError(`${input}: unknown input format '${path.extname(absolute) || '(none)'}'`, 'use .csv, .jsonl, .parquet, .npy or images');
    return [describe(absolute, path.basename(absolute), info)];
  }
  const entries = await readdir(absolute, { recursive: true, withFileTypes: true });
  const found = entries
    .filter((e) => e.isFile() && !e.name.startsWith('.'))
    .map((e) => path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name))
    .filter(
      (file) =>
        !path
          .relative(absolute, file)
          .split(path.sep)
          .some((part) => part.startsWith('.')),
    )
    .sort();
  return Promise.all(found.map(async (file) => describe(file, path.relative(absolute, file), await stat(file))));
}

async function listObjects(input: string, storeFor: (uri: string) => ObjectStore): Promise<Partial<InputFile>[]> {
  const store = storeFor(input);
  if (hasWildcard(input)) {
    const prefix = input.split(/[*?[{]/)[0];
    const base = prefix.replace(/[^/]*$/, '');
    const matches = picomatch(input.slice(base.length));
    const objects = await store.list(prefix);
    return objects.filter((o) => matches(o.uri.slice(base.length))).map((o) => describe(o.uri, o.uri.slice(base.length), o.size));
  }
  const objects = await store.list(input);
  const exact = objects.find((o) => o.uri === input);
  if (exact) return [describe(exact.uri, exact.uri.replace(/^.*\//, ''), exact.size)];
  const base = input.endsWith('/') ? input : `${input}/`;
  const inside = objects.filter((o) => o.uri.startsWith(base));
  if (inside.length === 0) throw inputError(`${input}: no such object or prefix`, 'check the URI; a folder is a prefix ending in /');
  return inside.map((o) => describe(o.uri, o.uri.slice(base.length), o.size));
}

/** A listed file: its size and, here, its modification time (a bucket's listing gives the size). */
function describe(location: string, shown: string, facts: number | { size: number; mtimeMs: number }): Partial<InputFile> {
  const format = formatOf(location);
  const parts = shown.split(/[\\/]/);
  const size = typeof facts === 'number' ? facts : facts.size;
  return {
    location,
    shown,
    size,
    ...(typeof facts === 'number' ? {} : { modified: Math.floor(facts.mtimeMs) }),
    format,
    ...(format === 'image' && parts.length > 1 ? { label: parts[parts.length - 2] } : {}),
  };
}
