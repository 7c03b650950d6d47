import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Gzip } from 'fflate';
import tar from 'tar-stream';
import type { BlobStore } from './blob-store.js';
import { MEDIA, type Descriptor } from './media.js';

/**
 * Every entry's time in a layer mlops writes: one second after the epoch, as Jib does (some tools read
 * 0 as "unset"). Not the commit's time: a new commit must not change the runtime's layer, or every
 * push would send it again. The image's `created` carries the build's time instead.
 */
export const LAYER_MTIME = new Date(1000);

/** Compression level: fixed, as part of what makes the same input give the same bytes. */
const GZIP_LEVEL = 6;
/** fflate compresses each push as it comes: fixed-size pushes make the output independent of how reads were sized. */
const CHUNK = 1 << 20;

export interface LayerDescriptor extends Descriptor {
  /** The uncompressed tar's digest, as the config's rootfs lists it. */
  diffId: string;
}

interface Entry {
  name: string;
  file?: string;
  size: number;
  type: 'file' | 'directory';
  mode: number;
}

async function walk(dir: string, prefix: string, into: Entry[]): Promise<void> {
  for (const item of await readdir(dir, { withFileTypes: true })) {
    const file = path.join(dir, item.name);
    const name = `${prefix}${item.name}`;
    // A symbolic link in the context is stored as what it points to, as COPY does.
    const info = await stat(file);
    if (info.isDirectory()) {
      into.push({ name: `${name}/`, size: 0, type: 'directory', mode: 0o755 });
      await walk(file, `${name}/`, into);
    } else if (info.isFile()) {
      // Only the owner's execute bit is kept: a umask must not change a digest.
      into.push({ name, file, size: info.size, type: 'file', mode: info.mode & 0o100 ? 0o755 : 0o644 });
    }
  }
}

/**
 * The files under `dir` as a tar whose entries sit under `prefix` (e.g. "app/"): sorted by name, owned
 * by root, folders 755, files 644 (755 where the owner may run them), all at LAYER_MTIME, so the same
 * files give the same bytes on any machine. The prefix's own folders come first.
 */
export async function treeEntries(dir: string, prefix: string): Promise<Entry[]> {
  const entries: Entry[] = [];
  const parts = prefix.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) entries.push({ name: `${parts.slice(0, i).join('/')}/`, size: 0, type: 'directory', mode: 0o755 });
  const below: Entry[] = [];
  await walk(dir, prefix, below);
  below.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return [...entries, ...below];
}

export function packEntries(entries: Entry[]): Readable {
  const pack = tar.pack();
  void (async () => {
    try {
      for (const entry of entries) {
        const header = { name: entry.name, size: entry.size, type: entry.type, mode: entry.mode, mtime: LAYER_MTIME, uid: 0, gid: 0, uname: '', gname: '' };
        if (entry.type === 'directory') {
          await new Promise<void>((resolve, reject) => pack.entry(header, (error) => (error ? reject(error) : resolve())));
        } else {
          const sink = pack.entry(header);
          await pipeline(createReadStream(entry.file!), sink);
        }
      }
      pack.finalize();
    } catch (error) {
      pack.destroy(error as Error);
    }
  })();
  return pack as unknown as Readable;
}

/** The tar's bytes in fixed-size pieces. */
async function* rechunk(source: AsyncIterable<Buffer>): AsyncGenerator<Uint8Array> {
  let pending: Buffer[] = [];
  let length = 0;
  for await (const chunk of source) {
    pending.push(chunk);
    length += chunk.length;
    while (length >= CHUNK) {
      const all = Buffer.concat(pending, length);
      yield all.subarray(0, CHUNK);
      pending = [all.subarray(CHUNK)];
      length -= CHUNK;
    }
  }
  if (length > 0) yield Buffer.concat(pending, length);
}

/**
 * gzip by fflate, a deflate written in JavaScript: the same bytes on every CPU and Node version.
 * Node's zlib (Chromium's fork) picks its match finder by CPU features, so its output may differ
 * between machines; measured on the 45 MB ONNX Runtime library, fflate took 1.3 s to zlib's 0.9 s,
 * which the layer cache pays once per machine. No file name and no time in the header.
 */
export async function* gzip(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const out: Uint8Array[] = [];
  const compressor = new Gzip({ level: GZIP_LEVEL, mtime: 0 }, (data) => out.push(data));
  for await (const piece of rechunk(source)) {
    compressor.push(piece);
    while (out.length > 0) yield Buffer.from(out.shift()!);
  }
  compressor.push(new Uint8Array(0), true);
  while (out.length > 0) yield Buffer.from(out.shift()!);
}

async function digestOf(source: AsyncIterable<Buffer>): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of source) hash.update(chunk);
  return `sha256:${hash.digest('hex')}`;
}

/**
 * A layer into the store: its tar is made twice when new (once to learn its digest, once to
 * compress it), once when the store has compressed that tar before (diffids/ maps one to the other;
 * `reuse` false compresses it again, for --no-cache, and must give the same blob).
 */
export async function storeLayer(store: BlobStore, makeTar: () => Readable, reuse = true): Promise<LayerDescriptor> {
  const diffId = await digestOf(makeTar());
  const known = path.join(store.dir, 'diffids', diffId.slice('sha256:'.length));
  const cached = reuse ? await readFile(known, 'utf8').catch(() => '') : '';
  if (cached && (await store.has(cached))) return { mediaType: MEDIA.layerGzip, digest: cached, size: await store.size(cached), diffId };
  const { digest, size } = await store.write(Readable.from(gzip(makeTar())));
  await mkdir(path.dirname(known), { recursive: true });
  await writeFile(known, digest);
  return { mediaType: MEDIA.layerGzip, digest, size, diffId };
}
