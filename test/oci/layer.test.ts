/**
 * The daemonless builder's floor (src/oci): layers that are the same bytes whatever the files' times,
 * owners' umask or read sizes.
 */
import { chmod, mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/oci/blob-store.js';
import { gzip, packEntries, storeLayer, treeEntries } from '../../src/oci/layer.js';
import { withTempDir } from '../helpers.js';
import { collect, sha } from './bytes.js';

async function tree(dir: string, when: Date, mode: number) {
  await mkdir(path.join(dir, 'b', 'c'), { recursive: true });
  await writeFile(path.join(dir, 'a.txt'), 'alpha');
  await writeFile(path.join(dir, 'b', 'c', 'run.sh'), '#!/bin/sh\n');
  await writeFile(path.join(dir, 'b', 'z.bin'), Buffer.alloc(3000, 7));
  await chmod(path.join(dir, 'b', 'c', 'run.sh'), 0o700);
  await chmod(path.join(dir, 'a.txt'), mode);
  for (const f of ['a.txt', 'b/c/run.sh', 'b/z.bin']) await utimes(path.join(dir, f), when, when);
}

describe('layers', () => {
  it('are the same bytes for the same files, whatever their times and group or other bits', async () => {
    await withTempDir(async (work) => {
      await tree(path.join(work, 'one'), new Date('2020-01-01'), 0o644);
      await tree(path.join(work, 'two'), new Date('2031-05-05'), 0o600);
      const tars = await Promise.all(['one', 'two'].map(async (d) => collect(packEntries(await treeEntries(path.join(work, d), 'app/')))));
      expect(sha(tars[0])).toBe(sha(tars[1]));
      // Sorted, root-owned, the prefix's folder first, the owner's execute bit kept.
      const headers: { name: string; mode?: number; uid?: number; mtime?: Date }[] = [];
      const extract = tar.extract();
      extract.on('entry', (header, stream, next) => {
        headers.push(header);
        stream.on('end', next);
        stream.resume();
      });
      await new Promise<void>((resolve, reject) => Readable.from([tars[0]]).pipe(extract).on('finish', resolve).on('error', reject));
      expect(headers.map((h) => h.name)).toEqual(['app/', 'app/a.txt', 'app/b/', 'app/b/c/', 'app/b/c/run.sh', 'app/b/z.bin']);
      expect(headers.map((h) => [h.mode, h.uid])).toEqual([
        [0o755, 0],
        [0o644, 0],
        [0o755, 0],
        [0o755, 0],
        [0o755, 0],
        [0o644, 0],
      ]);
      expect(new Set(headers.map((h) => h.mtime!.getTime()))).toEqual(new Set([1000]));
    });
  });

  it('gzip the same whatever size the reads come in, with no name or time in the header', async () => {
    const data = Buffer.from(Array.from({ length: 3 << 20 }, (_, i) => (i * 7919) % 251));
    const chunked = (size: number) =>
      (async function* () {
        for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
      })();
    const [a, b] = await Promise.all([collect(gzip(chunked(65536))), collect(gzip(chunked(1000003)))]);
    expect(sha(a)).toBe(sha(b));
    expect([...a.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
  });

  it('are compressed once: a second store of the same tar takes the cached blob, and --no-cache gives the same one', async () => {
    await withTempDir(async (work) => {
      await tree(path.join(work, 'files'), new Date('2020-01-01'), 0o644);
      const store = new BlobStore(path.join(work, 'store'));
      const entries = await treeEntries(path.join(work, 'files'), 'app/');
      const first = await storeLayer(store, () => packEntries(entries));
      const again = await storeLayer(store, () => packEntries(entries));
      const fresh = await storeLayer(store, () => packEntries(entries), false);
      expect(again).toEqual(first);
      expect(fresh).toEqual(first);
      expect(sha(await readFile(store.path(first.digest)))).toBe(first.digest);
    });
  });
});
