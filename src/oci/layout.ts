import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { BlobStore } from './blob-store.js';
import { blobsOf, type StoredImage } from './image.js';
import { documentBytes, MEDIA, type Descriptor } from './media.js';

const LAYOUT_FILE = documentBytes({ imageLayoutVersion: '1.0.0' });

/** The top descriptor as index.json lists it, named as OCI layouts name their images. */
function indexEntry(top: Descriptor, name: string): Descriptor {
  return { ...top, annotations: { 'org.opencontainers.image.ref.name': name } };
}

/** oci:<dir>[:<tag or digest>]: an OCI image layout (skopeo, crane, buildah and `docker save` write them), as its folder (from `from`) and the name asked for, if any. */
export function layoutSpec(spec: string, from = process.cwd()): { dir: string; ref?: string } {
  const body = spec.slice('oci:'.length);
  const colon = body.lastIndexOf(':');
  const hasRef = colon > 0 && !body.slice(colon).includes('/');
  return { dir: path.resolve(from, hasRef ? body.slice(0, colon) : body), ref: hasRef ? body.slice(colon + 1) : undefined };
}

/** Whether `dir` is an OCI image layout (its `oci-layout` file says so). */
export async function isOciLayout(dir: string): Promise<boolean> {
  try {
    return (JSON.parse(await readFile(path.join(dir, 'oci-layout'), 'utf8')) as { imageLayoutVersion?: string }).imageLayoutVersion !== undefined;
  } catch {
    return false;
  }
}

/**
 * `image` under `names` in an OCI image layout (image-spec's image-layout.md). A new layout is
 * written in a folder beside `dir` and renamed onto it when complete, so a failure (a full disk)
 * leaves nothing under the name. An existing layout is added to, as skopeo does: the blobs first
 * (each under a temporary name until whole), then index.json replaced in one rename, with the
 * images it named under other names kept.
 */
export async function writeLayout(store: BlobStore, image: StoredImage, dir: string, names: string[]): Promise<void> {
  const target = path.resolve(dir);
  if (await isOciLayout(target)) {
    const out = new BlobStore(target);
    for (const blob of blobsOf(image)) await store.copyTo(out, blob.digest);
    const index = JSON.parse(await readFile(path.join(target, 'index.json'), 'utf8')) as { manifests?: Descriptor[] };
    const kept = (index.manifests ?? []).filter((m) => !names.includes(m.annotations?.['org.opencontainers.image.ref.name'] ?? ''));
    const temporary = path.join(target, `.index.json.tmp-${process.pid}`);
    await writeFile(
      temporary,
      documentBytes({ ...index, schemaVersion: 2, mediaType: MEDIA.index, manifests: [...kept, ...names.map((n) => indexEntry(image.top, n))] }),
    );
    await rename(temporary, path.join(target, 'index.json'));
    return;
  }
  const temporary = `${target}.tmp-${process.pid}`;
  await rm(temporary, { recursive: true, force: true });
  try {
    // Not recursive: the folder it goes in must exist (a recursive mkdir under /proc never returns).
    await mkdir(temporary);
    const out = new BlobStore(temporary);
    for (const blob of blobsOf(image)) await store.copyTo(out, blob.digest);
    await writeFile(path.join(temporary, 'oci-layout'), LAYOUT_FILE);
    await writeFile(
      path.join(temporary, 'index.json'),
      documentBytes({ schemaVersion: 2, mediaType: MEDIA.index, manifests: names.map((n) => indexEntry(image.top, n)) }),
    );
    await rename(temporary, target);
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw error;
  }
}

/**
 * What `docker save` writes and `docker load` reads: manifest.json (Docker's list of config and
 * layers, per tag) beside an OCI layout of the same blobs. One platform: Docker loads one.
 */
export function dockerArchive(store: BlobStore, image: StoredImage, repoTags: string[]): Readable {
  const [platform] = image.platforms;
  const pack = tar.pack();
  const blobName = (d: Descriptor) => `blobs/sha256/${d.digest.slice('sha256:'.length)}`;
  void (async () => {
    try {
      const add = (name: string, bytes: Buffer) =>
        new Promise<void>((resolve, reject) => pack.entry({ name, mtime: new Date(1000), mode: 0o644 }, bytes, (e) => (e ? reject(e) : resolve())));
      await new Promise<void>((resolve, reject) =>
        pack.entry({ name: 'blobs/', type: 'directory', mtime: new Date(1000), mode: 0o755 }, (e) => (e ? reject(e) : resolve())),
      );
      await new Promise<void>((resolve, reject) =>
        pack.entry({ name: 'blobs/sha256/', type: 'directory', mtime: new Date(1000), mode: 0o755 }, (e) => (e ? reject(e) : resolve())),
      );
      for (const blob of blobsOf({ top: platform.descriptor, platforms: [platform] })) {
        const size = await store.size(blob.digest);
        await pipeline(store.open(blob.digest), pack.entry({ name: blobName(blob), size, mtime: new Date(1000), mode: 0o644 }));
      }
      await add('oci-layout', LAYOUT_FILE);
      const top = { ...platform.descriptor };
      delete top.platform;
      await add(
        'index.json',
        documentBytes({
          schemaVersion: 2,
          mediaType: MEDIA.index,
          manifests: repoTags.map((n) => ({
            ...indexEntry(top, n),
            annotations: { 'io.containerd.image.name': n, 'org.opencontainers.image.ref.name': n.slice(n.lastIndexOf(':') + 1) },
          })),
        }),
      );
      await add(
        'manifest.json',
        documentBytes([{ Config: blobName(platform.manifest.config), RepoTags: repoTags, Layers: platform.manifest.layers.map(blobName) }]),
      );
      pack.finalize();
    } catch (error) {
      pack.destroy(error as Error);
    }
  })();
  return pack as unknown as Readable;
}

/** The archive into a file, under a temporary name until complete. */
export async function writeDockerArchive(store: BlobStore, image: StoredImage, file: string, repoTags: string[]): Promise<void> {
  const target = path.resolve(file);
  const temporary = `${target}.tmp-${process.pid}`;
  try {
    await pipeline(dockerArchive(store, image, repoTags), createWriteStream(temporary));
    await rename(temporary, target);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
