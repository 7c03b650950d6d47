/**
 * Where a batch run's files go, here or in a bucket: the parts (one per shard) with a record of each,
 * the manifest, the rejects, and the output the parts are joined into. Nothing appears under a final
 * name until it is whole: local files are written beside it and renamed, objects are uploaded whole.
 */
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { fileWriter, ParquetWriter } from 'hyparquet-writer';
import { inputError } from '../errors.js';
import { isObjectUri, type ObjectStore } from '../storage/object-store.js';
import { HashedFile, hashFile, parquetColumns, parquetSchema, type OutputFormat, type OutputLayout } from './write.js';
import { createHash } from 'node:crypto';

export interface OutputPlace {
  /** A file the parts are joined into, or a folder that keeps them. */
  kind: 'file' | 'folder';
  /** The output file or folder: an absolute path or a URI. */
  output: string;
  format: OutputFormat;
  manifest: string;
  rejects: string;
  /** Where parts go (a folder or a prefix, ending in a separator). */
  parts: string;
  /** Where shard records and per-shard rejects go. */
  records: string;
  /** Where workers write before a part is published: the parts folder itself here, a temporary folder for a bucket. */
  staging: string;
  remote: boolean;
}

const EXTENSIONS: Record<string, OutputFormat> = { '.csv': 'csv', '.jsonl': 'jsonl', '.ndjson': 'jsonl', '.parquet': 'parquet' };

/** Where the output goes and in what format: the output's extension, else the format asked, else the input's. */
export async function outputPlace(output: string, cwd: string, asked: OutputFormat | undefined, inputFormat: OutputFormat): Promise<OutputPlace> {
  const remote = isObjectUri(output);
  const location = remote ? output : path.resolve(cwd, output);
  const extension = path.extname(output.replace(/\/+$/, '')).toLowerCase();
  const existing = remote ? undefined : await stat(location).catch(() => undefined);
  const isFolder = output.endsWith('/') || Boolean(existing?.isDirectory());
  if (isFolder && existing?.isFile())
    throw inputError(`--output ${output}: is a file, not a folder`, 'name a folder (ending in /) or a .csv, .jsonl or .parquet file');
  if (!isFolder && !EXTENSIONS[extension])
    throw inputError(
      `--output ${output}: unknown output format '${extension || '(none)'}'`,
      'name a .csv, .jsonl or .parquet file, or a folder ending in / for one part per shard',
    );
  if (!isFolder && asked && EXTENSIONS[extension] !== asked)
    throw inputError(`--output ${output}: a .${extension.slice(1)} file, but --format ${asked}`, `name the output .${asked}, or drop --format`);
  const format = (isFolder ? asked : EXTENSIONS[extension]) ?? inputFormat;
  const join = (base: string, name: string) => (remote ? `${base.replace(/\/?$/, '/')}${name}` : path.join(base, name));
  const base = location.replace(/\/+$/, '');
  const parts = isFolder ? (remote ? `${base}/` : base) : remote ? `${base}.parts/` : `${base}.parts`;
  const records = join(parts, '_shards');
  return {
    kind: isFolder ? 'folder' : 'file',
    output: base,
    format,
    manifest: isFolder ? join(base, 'manifest.json') : `${base}.manifest.json`,
    rejects: isFolder ? join(base, 'rejects.jsonl') : `${base}.rejects.jsonl`,
    parts,
    records,
    // A bucket's parts are staged in a temporary folder, made only when shards are scored (see stageParts).
    staging: remote ? '' : parts,
    remote,
  };
}

/** A temporary folder for the parts of a bucket output, while shards are scored; removed by the returned function. */
export async function stageParts(place: OutputPlace): Promise<() => Promise<void>> {
  if (!place.remote) return async () => undefined;
  place.staging = await mkdtemp(path.join(os.tmpdir(), 'mlops-batch-'));
  const staging = place.staging;
  return () => rm(staging, { recursive: true, force: true });
}

/** Makes the local folders the run writes to (after every check, so a refused run leaves nothing). */
export async function makeFolders(place: OutputPlace): Promise<void> {
  if (!place.remote) await mkdir(place.records, { recursive: true });
}

export const partName = (index: number, count: number, format: OutputFormat) =>
  `part-${String(index).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.${format}`;

export const placeJoin = (place: OutputPlace, base: string, name: string) => (place.remote ? `${base.replace(/\/?$/, '/')}${name}` : path.join(base, name));

/** Reads a small file or object as text; null when it is absent. */
export async function readText(location: string, store: ObjectStore | undefined): Promise<string | null> {
  if (!store) return readFile(location, 'utf8').catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? null : Promise.reject(error)));
  if ((await store.size(location)) === null) return null;
  const chunks: Buffer[] = [];
  for await (const chunk of store.read(location)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Writes a small file whole: a temporary name and a rename here, one upload to a bucket. */
export async function writeText(location: string, text: string, store: ObjectStore | undefined): Promise<void> {
  if (store) return store.write(location, Buffer.from(text, 'utf8'), location.endsWith('.json') ? 'application/json' : 'text/plain');
  const temporary = `${location}.${process.pid}.tmp`;
  await writeFile(temporary, text);
  await rename(temporary, location);
}

/** Uploads a staged file to its place in the bucket (nothing to do here, where staging is the place). */
export async function publish(localFile: string, location: string, store: ObjectStore | undefined): Promise<void> {
  if (!store || localFile === location) return;
  await store.write(location, createReadStream(localFile), undefined);
}

export async function sizeOf(location: string, store: ObjectStore | undefined): Promise<number | null> {
  if (store) return store.size(location);
  const info = await stat(location).catch(() => undefined);
  return info?.isFile() ? info.size : null;
}

const readStream = (location: string, store: ObjectStore | undefined): Readable =>
  store ? store.read(location) : createReadStream(location, { highWaterMark: 1 << 20 });

/**
 * Joins the parts into one stream: CSV keeps the first part's header only; JSONL and the rejects are
 * the parts one after another.
 */
async function* joinedText(parts: string[], store: ObjectStore | undefined, csv: boolean): AsyncGenerator<Buffer> {
  for (const [index, part] of parts.entries()) {
    let skipping = csv && index > 0;
    for await (const chunk of readStream(part, store)) {
      let bytes = chunk as Buffer;
      if (skipping) {
        const newline = bytes.indexOf(10);
        if (newline === -1) continue;
        bytes = bytes.subarray(newline + 1);
        skipping = false;
      }
      if (bytes.length > 0) yield bytes;
    }
  }
}

/** Writes the joined parts to `target` (a temporary name, renamed, here; one streamed upload to a bucket); its size and sha256. */
export async function joinParts(
  parts: string[],
  target: string,
  format: OutputFormat | 'rejects',
  layout: OutputLayout,
  store: ObjectStore | undefined,
): Promise<{ bytes: number; sha256: string }> {
  if (format === 'parquet') {
    const local = store ? path.join(await mkdtemp(path.join(os.tmpdir(), 'mlops-join-')), 'joined.parquet') : `${target}.${process.pid}.tmp`;
    await joinParquet(parts, local, layout, store);
    const facts = await hashFile(local);
    if (store) {
      await store.write(target, createReadStream(local), 'application/vnd.apache.parquet');
      await rm(path.dirname(local), { recursive: true, force: true });
    } else await rename(local, target);
    return facts;
  }
  const hash = createHash('sha256');
  let bytes = 0;
  const counted = async function* () {
    for await (const chunk of joinedText(parts, store, format === 'csv')) {
      hash.update(chunk);
      bytes += chunk.length;
      yield chunk;
    }
  };
  if (store) {
    const body = new PassThrough();
    const pumping = (async () => {
      for await (const chunk of counted()) if (!body.write(chunk)) await new Promise((resolve) => body.once('drain', resolve));
      body.end();
    })();
    await Promise.all([store.write(target, body, format === 'csv' ? 'text/csv' : 'application/jsonl'), pumping]);
  } else {
    const temporary = `${target}.${process.pid}.tmp`;
    const out = new HashedFile(temporary);
    for await (const chunk of counted()) await out.write(chunk);
    await out.close();
    await rename(temporary, target);
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** Parquet parts into one file: each part's row groups read and written again (a Parquet file has one footer). */
async function joinParquet(parts: string[], target: string, layout: OutputLayout, store: ObjectStore | undefined): Promise<void> {
  const columns = parquetColumns(layout);
  const writer = new ParquetWriter({ writer: fileWriter(target), schema: parquetSchema(columns) });
  for (const part of parts) {
    const file = store ? await remoteBuffer(part, store) : await asyncBufferFromFile(part);
    const metadata = await parquetMetadataAsync(file);
    let start = 0;
    // A row group at a time: memory holds one group, not the part.
    for (const group of metadata.row_groups) {
      const end = start + Number(group.num_rows);
      let rows: unknown[][] = [];
      await parquetRead({ file, metadata, compressors, rowStart: start, rowEnd: end, rowFormat: 'array', onComplete: (data: unknown[][]) => (rows = data) });
      start = end;
      if (rows.length === 0) continue;
      await writer.write({
        columnData: columns.map((c, i) => ({ name: c.name, data: rows.map((r) => r[i]), type: c.type, nullable: c.type === 'STRING' })),
        rowGroupSize: rows.length,
      });
    }
  }
  await writer.finish();
}

async function remoteBuffer(location: string, store: ObjectStore) {
  const size = (await store.size(location)) ?? 0;
  return {
    byteLength: size,
    slice: async (start: number, end?: number) => {
      const chunks: Buffer[] = [];
      for await (const chunk of store.read(location, { start, end: end ?? size })) chunks.push(chunk as Buffer);
      const bytes = Buffer.concat(chunks);
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    },
  };
}

/**
 * Removes what an earlier run left: its parts, records, rejects and manifest, by their names only; a
 * folder output may hold other files, which stay.
 */
export async function removeRun(place: OutputPlace, store: ObjectStore | undefined): Promise<void> {
  const ours = (name: string) => /^part-\d{5}-of-\d{5}\./.test(name) || name === 'manifest.json' || name === 'rejects.jsonl';
  if (store) {
    const objects = [...(await store.list(place.parts)), ...(await store.list(place.records + '/'))];
    for (const object of objects) {
      const name = object.uri.slice(place.parts.length);
      if (ours(name) || name.startsWith('_shards/')) await store.remove(object.uri);
    }
    await store.remove(place.manifest);
    await store.remove(place.rejects);
    return;
  }
  if (place.kind === 'file') await rm(place.parts, { recursive: true, force: true });
  else {
    const names = await readdir(place.parts).catch(() => [] as string[]);
    for (const name of names.filter(ours)) await rm(path.join(place.parts, name), { force: true });
    await rm(place.records, { recursive: true, force: true });
  }
  await rm(place.manifest, { force: true });
  await rm(place.rejects, { force: true });
}

/** Removes the parts of a joined file output (the output holds them now). */
export async function removeParts(place: OutputPlace, locations: string[], store: ObjectStore | undefined): Promise<void> {
  if (store) {
    for (const location of locations) await store.remove(location);
    return;
  }
  await rm(place.parts, { recursive: true, force: true });
}

export const readableFrom = (text: string) => Readable.from([Buffer.from(text)]);
