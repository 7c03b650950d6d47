/** src/image/base-image.ts: bases read from what `docker save` writes, with plain or gzip'd layers. */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { absoluteBase, resolveBase } from '../../src/image/base-image.js';
import { BlobStore } from '../../src/oci/blob-store.js';
import { packEntries } from '../../src/oci/layer.js';
import { withTempDir } from '../helpers.js';
import { isMlopsError } from '../../src/errors.js';
import { collect, sha } from '../oci/bytes.js';

describe('bases from docker save archives', () => {
  for (const compressed of [false, true]) {
    it(`reads one whose layers are ${compressed ? "gzip'd (Docker's containerd store)" : 'plain tars (the classic store)'}, named by its RepoTag`, async () => {
      await withTempDir(async (work) => {
        const layer = await collect(packEntries([{ name: 'etc/', size: 0, type: 'directory', mode: 0o755 }]));
        const config = Buffer.from(
          JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: [sha(layer)] } }),
        );
        const stored = compressed ? gzipSync(layer) : layer;
        const pack = tar.pack();
        pack.entry({ name: `blobs/sha256/${sha(config).slice(7)}` }, config);
        pack.entry({ name: `blobs/sha256/${sha(stored).slice(7)}` }, stored);
        pack.entry(
          { name: 'manifest.json' },
          JSON.stringify([{ Config: `blobs/sha256/${sha(config).slice(7)}`, RepoTags: ['team/base:1'], Layers: [`blobs/sha256/${sha(stored).slice(7)}`] }]),
        );
        pack.finalize();
        await writeFile(path.join(work, 'base.tar'), await collect(pack as unknown as Readable));
        const store = new BlobStore(path.join(work, 'store'));
        const base = await resolveBase(absoluteBase('docker-archive:base.tar', work), 'linux/amd64', {}, store);
        expect(base.name).toBe('team/base:1');
        expect(base.layers).toHaveLength(1);
        expect(await store.has(base.layers[0].digest)).toBe(true);
        // Refused for another platform, naming what it is.
        await expect(resolveBase(absoluteBase('docker-archive:base.tar', work), 'linux/arm64', {}, store)).rejects.toThrow(
          /is a linux\/amd64 image, not linux\/arm64/,
        );
      });
    });
  }

  it('refuses a file that is not what it says in one line, exit 2: not a tar, a tar cut short, a layout missing a blob', async () => {
    await withTempDir(async (work) => {
      const store = new BlobStore(path.join(work, 'store'));
      await writeFile(path.join(work, 'garbage.tar'), Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 37) % 256)));
      // A real archive cut in the middle of its layer.
      const layer = await collect(packEntries([{ name: 'etc/', size: 0, type: 'directory', mode: 0o755 }]));
      const big = Buffer.alloc(200_000, 1);
      const pack = tar.pack();
      pack.entry({ name: 'manifest.json' }, JSON.stringify([{ Config: 'c.json', RepoTags: ['t:1'], Layers: ['l.tar'] }]));
      pack.entry({ name: 'c.json' }, JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(layer)] } }));
      pack.entry({ name: 'l.tar' }, Buffer.concat([layer, big]));
      pack.finalize();
      const whole = await collect(pack as unknown as Readable);
      await writeFile(path.join(work, 'cut.tar'), whole.subarray(0, whole.length - 100_000));
      await mkdir(path.join(work, 'layout'));
      await writeFile(path.join(work, 'layout', 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
      await writeFile(
        path.join(work, 'layout', 'index.json'),
        JSON.stringify({
          schemaVersion: 2,
          manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 10 }],
        }),
      );
      for (const [spec, why] of [
        ['docker-archive:garbage.tar', /^base image docker-archive:.*garbage\.tar cannot be read: /],
        ['docker-archive:cut.tar', /^base image docker-archive:.*cut\.tar cannot be read: /],
        ['oci:layout', /^base image oci:.*layout cannot be read: its index names sha256:a{64}, which is not in blobs\/$/],
      ] as const) {
        const error = await resolveBase(absoluteBase(spec, work), 'linux/amd64', {}, store).catch((e: unknown) => e);
        expect(isMlopsError(error) && error.exitCode, spec).toBe(2);
        expect((error as Error).message, spec).toMatch(why);
        expect((error as Error).message, spec).not.toContain('\n');
      }
    });
  });

  it('resolves file bases from the folder given, and leaves references alone', () => {
    expect(absoluteBase('docker-archive:b.tar', '/p')).toBe('docker-archive:/p/b.tar');
    expect(absoluteBase('oci:layout:v1', '/p')).toBe('oci:/p/layout:v1');
    expect(absoluteBase('oci:../x', '/p/q')).toBe('oci:/p/x');
    expect(absoluteBase('registry.example.com:5000/team/node:20', '/p')).toBe('registry.example.com:5000/team/node:20');
  });
});
