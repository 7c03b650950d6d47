import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { environmentError, ExitCode, inputError, isMlopsError } from '../errors.js';
import { BlobStore } from '../oci/blob-store.js';
import { storeLayer } from '../oci/layer.js';
import { layoutSpec } from '../oci/layout.js';
import {
  isIndex,
  MEDIA,
  parsePlatform,
  platformMatches,
  sha256Digest,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
} from '../oci/media.js';
import { RegistryClient } from '../registry/client.js';
import { resolveCredentials } from '../registry/credentials.js';
import { parseReference } from '../registry/reference.js';

/** A base image for the daemonless builder, one platform of it. */
export interface BaseImage {
  /**
   * The base's name as its labels and annotations carry it: the reference for a registry's; for a
   * file, the name the file gives the image (a `docker save` RepoTag, a layout's image name), never
   * its path, so that the same base read from two folders builds the same image.
   */
  name: string;
  /** How it was given: a registry reference, oci:<dir>[:<tag>] or docker-archive:<file>, for messages and for fetching again. */
  source: string;
  /** The manifest's digest where there is one (what the base.digest label names). */
  manifestDigest: string | null;
  configDigest: string;
  config: ImageConfig;
  layers: Descriptor[];
  /** Puts a layer of the base into `store` (download or copy), for outputs that carry every blob. */
  fetchLayer(store: BlobStore, layer: Descriptor): Promise<void>;
  /** Where the base's blobs live in a registry: the push mounts them from there when it is the same registry. */
  origin?: { registry: string; repository: string };
}

interface ManifestSource {
  manifest(reference: string): Promise<{ bytes: Buffer; mediaType: string; digest: string } | null>;
  blob(digest: string): Promise<Buffer>;
}

function parseJson<T>(bytes: Buffer, what: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch {
    throw inputError(`${what} is not valid JSON`);
  }
}

/** The manifest for `platform` (an index resolved), its config, checked to be a Linux image for that architecture. */
async function pick(
  name: string,
  source: ManifestSource,
  reference: string,
  platform: string,
): Promise<{ manifestDigest: string; configDigest: string; config: ImageConfig; layers: Descriptor[] }> {
  const wanted = parsePlatform(platform);
  let found = await source.manifest(reference);
  if (!found)
    throw environmentError(
      `base image ${name} does not exist`,
      'check image.base or --base (registry, repository and tag), or pass a local copy: --base oci:<dir> or docker-archive:<file.tar>',
    );
  if (isIndex(found.mediaType)) {
    const index = parseJson<ImageIndex>(found.bytes, `the index of base image ${name}`);
    const entry = index.manifests.find((m) => platformMatches(m.platform, wanted));
    if (!entry) {
      const offered = index.manifests
        .map((m) => (m.platform ? `${m.platform.os}/${m.platform.architecture}${m.platform.variant ? `/${m.platform.variant}` : ''}` : '?'))
        .filter((p) => !p.startsWith('unknown'));
      throw inputError(
        `base image ${name} has no ${platform} image (it has ${offered.join(', ') || 'none'})`,
        'pick a base built for that platform, or build for one it has (--platform)',
      );
    }
    found = await source.manifest(entry.digest);
    if (!found) throw environmentError(`base image ${name}: its index names ${entry.digest}, which is missing`);
  }
  const manifest = parseJson<ImageManifest>(found.bytes, `the manifest of base image ${name}`);
  if (!manifest.config?.digest || !Array.isArray(manifest.layers))
    throw inputError(`base image ${name}: not an image manifest (${found.mediaType || 'no media type'})`);
  const configBytes = await source.blob(manifest.config.digest);
  if (sha256Digest(configBytes) !== manifest.config.digest)
    throw environmentError(
      `base image ${name}: its config does not match its digest ${manifest.config.digest}`,
      'the registry or the layout is damaged; fetch the base again',
    );
  const config = parseJson<ImageConfig>(configBytes, `the config of base image ${name}`);
  checkPlatform(name, config, platform);
  return { manifestDigest: found.digest, configDigest: manifest.config.digest, config, layers: manifest.layers };
}

function checkPlatform(name: string, config: ImageConfig, platform: string): void {
  const wanted = parsePlatform(platform);
  const actual = `${config.os}/${config.architecture}`;
  if (config.os !== wanted.os || config.architecture !== wanted.architecture) {
    throw inputError(
      `base image ${name} is a ${actual} image, not ${platform}`,
      config.os !== 'linux'
        ? 'mlops images run on Linux: pick a Linux base (image.base or --base)'
        : 'pick a base for that platform, or pass --platform to match it',
    );
  }
  if (!config.rootfs || !Array.isArray(config.rootfs.diff_ids)) throw inputError(`base image ${name}: its config has no rootfs.diff_ids`);
}

async function fromRegistry(reference: string, platform: string, env: NodeJS.ProcessEnv): Promise<BaseImage> {
  const ref = parseReference(reference);
  const client = new RegistryClient(ref.registry, await resolveCredentials(ref.registry, env));
  const source: ManifestSource = {
    manifest: (r) => client.rawManifest(ref.repository, r),
    blob: async (digest) => Buffer.from(await (await client.blob(ref.repository, digest)).arrayBuffer()),
  };
  const picked = await pick(reference, source, ref.digest ?? ref.tag ?? 'latest', platform);
  return {
    name: reference,
    source: reference,
    ...picked,
    origin: { registry: ref.registry, repository: ref.repository },
    async fetchLayer(store, layer) {
      if (await store.has(layer.digest)) return;
      const res = await client.blob(ref.repository, layer.digest);
      await store.write(Readable.fromWeb(res.body! as never), layer.digest);
    },
  };
}

async function fromLayout(spec: string, platform: string): Promise<BaseImage> {
  const { dir, ref: wantedRef } = layoutSpec(spec);
  const layout = new BlobStore(dir);
  const indexBytes = await readFile(path.join(dir, 'index.json')).catch(() => {
    throw environmentError(
      `base image ${spec}: ${path.join(dir, 'index.json')} does not exist`,
      'point oci: at an OCI image layout folder (it holds oci-layout, index.json and blobs/)',
    );
  });
  const index = parseJson<ImageIndex>(indexBytes, path.join(dir, 'index.json'));
  const entries = index.manifests ?? [];
  const chosen = wantedRef
    ? entries.find(
        (m) =>
          m.digest === wantedRef ||
          m.annotations?.['org.opencontainers.image.ref.name'] === wantedRef ||
          m.annotations?.['io.containerd.image.name']?.endsWith(`:${wantedRef}`),
      )
    : entries.length === 1
      ? entries[0]
      : undefined;
  if (!chosen) {
    const held = entries.map((m) => m.annotations?.['org.opencontainers.image.ref.name'] ?? m.digest);
    const hint = held.length > 0 ? `it holds ${held.join(', ')}: name one, oci:<dir>:<name>` : 'the layout holds no image';
    if (wantedRef) throw environmentError(`base image ${spec} does not exist: the layout has no image named ${wantedRef}`, hint);
    throw inputError(`base image ${spec}: the layout holds ${entries.length} images`, hint);
  }
  const source: ManifestSource = {
    manifest: async (r) => {
      const digest = r === 'root' ? chosen.digest : r;
      // Named by the layout's own index, so a missing blob is a damaged layout, not a missing image.
      if (!(await layout.has(digest))) throw new Error(`its index names ${digest}, which is not in blobs/`);
      const bytes = await layout.read(digest);
      const declared = (digest === chosen.digest ? chosen.mediaType : undefined) || parseJson<{ mediaType?: string }>(bytes, digest).mediaType;
      return { bytes, mediaType: declared ?? MEDIA.manifest, digest };
    },
    blob: (digest) => layout.read(digest),
  };
  const picked = await pick(spec, source, 'root', platform);
  // A full reference names the image anywhere; a bare tag ("20") names it only in this folder, so the manifest's digest stands beside it.
  const named = chosen.annotations?.['io.containerd.image.name'] ?? chosen.annotations?.['org.opencontainers.image.ref.name'];
  const name = named && /[/:]/.test(named) ? named : `oci-layout${named ? `:${named}` : ''}@${picked.manifestDigest}`;
  return { name, source: spec, ...picked, fetchLayer: (store, layer) => layout.copyTo(store, layer.digest) };
}

/**
 * docker-archive:<file.tar>: what `docker save` writes. Its manifest.json names the config and each
 * layer; layers stored uncompressed are compressed into the store as mlops compresses its own.
 */
async function fromArchive(spec: string, platform: string, store: BlobStore): Promise<BaseImage> {
  const file = path.resolve(spec.slice('docker-archive:'.length));
  await stat(file).catch(() => {
    throw environmentError(`base image ${spec}: ${file} does not exist`, 'write it with `docker save -o <file.tar> <image>` where an engine is');
  });
  const members = new Map<string, Buffer>();
  // First pass: the small documents. Layers are read in their own passes below.
  await readArchive(file, async (name, stream) => {
    if (name === 'manifest.json' || name.endsWith('.json') || name === 'index.json') members.set(name, await collect(stream));
    else stream.resume();
  });
  const manifestJson = members.get('manifest.json');
  if (!manifestJson) throw inputError(`base image ${spec}: no manifest.json in the archive`, 'write it with `docker save`');
  const [entry] = parseJson<{ Config: string; Layers: string[]; RepoTags?: string[] | null }[]>(manifestJson, `${spec} manifest.json`);
  if (!entry?.Config || !entry.Layers) throw inputError(`base image ${spec}: manifest.json names no image`);
  let configBytes = members.get(entry.Config);
  if (!configBytes) {
    await readArchive(file, async (name, stream) => (name === entry.Config ? void (configBytes = await collect(stream)) : void stream.resume()));
  }
  if (!configBytes) throw inputError(`base image ${spec}: the config ${entry.Config} is missing from the archive`);
  const config = parseJson<ImageConfig>(configBytes, `${spec} ${entry.Config}`);
  checkPlatform(spec, config, platform);
  const layers: Descriptor[] = [];
  for (const [i, layer] of entry.Layers.entries()) {
    const descriptor = await storeLayer(store, () => {
      const out = new Readable({ read() {} });
      readArchive(file, async (name, stream) => {
        if (name !== layer) return void stream.resume();
        // Docker's containerd image store saves layers as they were pulled, compressed; the classic store as plain tars.
        for await (const chunk of uncompressed(stream)) out.push(chunk);
      }).then(
        () => out.push(null),
        (error: Error) => out.destroy(error),
      );
      return out;
    });
    if (descriptor.diffId !== config.rootfs.diff_ids[i])
      throw inputError(`base image ${spec}: layer ${layer} does not match the config's diff_ids[${i}]`, 'the archive is damaged; save it again');
    layers.push({ mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size });
  }
  const configDigest = sha256Digest(configBytes);
  await store.put(configBytes);
  return {
    name: entry.RepoTags?.[0] ?? `docker-archive@${configDigest}`,
    source: spec,
    manifestDigest: null,
    configDigest,
    config,
    layers,
    fetchLayer: async () => undefined,
  };
}

/** A layer's tar, gunzipped when it arrives gzip'd (the first two bytes say so). */
async function* uncompressed(stream: Readable): AsyncGenerator<Buffer> {
  const iterator = stream[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) return;
  const head = first.value as Buffer;
  const rest = Readable.from(
    (async function* () {
      yield head;
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value as Buffer;
    })(),
  );
  if (head[0] === 0x1f && head[1] === 0x8b) yield* rest.pipe(createGunzip());
  else yield* rest;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function readArchive(file: string, onEntry: (name: string, stream: Readable) => Promise<void>): Promise<void> {
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    // An archive cut short fails the entry being read as well as the extract: the pipeline reports it once.
    stream.on('error', () => undefined);
    onEntry(header.name.replace(/^\.\//, ''), stream as unknown as Readable).then(
      () => next(),
      (error: Error) => extract.destroy(error),
    );
  });
  await pipeline(createReadStream(file), extract);
}

/** A base given as a file (oci:<dir>[:<tag>], docker-archive:<file>) with its path made absolute from `dir`; a reference as it is. */
export function absoluteBase(spec: string, dir: string): string {
  if (spec.startsWith('docker-archive:')) return `docker-archive:${path.resolve(dir, spec.slice('docker-archive:'.length))}`;
  if (!spec.startsWith('oci:')) return spec;
  const layout = layoutSpec(spec, dir);
  return `oci:${layout.dir}${layout.ref !== undefined ? `:${layout.ref}` : ''}`;
}

/** The base for one platform, from a registry, an OCI layout or a `docker save` archive. */
export async function resolveBase(name: string, platform: string, env: NodeJS.ProcessEnv, store: BlobStore): Promise<BaseImage> {
  // A file that is not what it says (not a tar, cut short, a layout missing a blob) is the input's fault: one line, exit 2.
  const damaged = (error: unknown): never => {
    if (isMlopsError(error)) throw error;
    const why =
      (error as NodeJS.ErrnoException).code === 'ENOENT'
        ? `a file it names is missing (${path.basename((error as NodeJS.ErrnoException).path ?? '')})`
        : (error as Error).message;
    throw inputError(
      `base image ${name} cannot be read: ${why}`,
      name.startsWith('oci:') ? 'copy the layout again (skopeo copy ... oci:<dir>:<tag>)' : 'save it again: docker save -o <file.tar> <image>',
      error,
    );
  };
  if (name.startsWith('oci:')) return fromLayout(name, platform).catch(damaged);
  if (name.startsWith('docker-archive:')) return fromArchive(name, platform, store).catch(damaged);
  return fromRegistry(name, platform, env).catch((error: unknown) => {
    if (isMlopsError(error) && error.exitCode === ExitCode.environment && !error.message.startsWith('base image')) {
      throw environmentError(
        `base image ${name}: ${error.message}`,
        'let this runner reach that registry, set image.base (or --base) to one it reaches, or pass a local copy: --base oci:<dir> or docker-archive:<file.tar>',
        undefined,
        error,
      );
    }
    throw error;
  });
}
