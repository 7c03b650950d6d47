import { BlobStore } from './blob-store.js';
import { describe, documentBytes, isIndex, MEDIA, type Descriptor, type ImageConfig, type ImageIndex, type ImageManifest } from './media.js';

/** An image (one platform) or an index (several) held in a blob store, by its top digest. */
export interface StoredImage {
  /** The manifest's or index's descriptor. */
  top: Descriptor;
  /** One entry per platform: the manifest, its parsed form and config. */
  platforms: { descriptor: Descriptor; manifest: ImageManifest; config: ImageConfig }[];
}

/** What the SBOM, the signature, versions and deploys read of a stored image: its first platform's config digest (the id Docker gives it when loaded), labels and architecture. */
export function imageFacts(image: StoredImage): { imageId: string; labels: Record<string, string>; architecture: string } {
  const [main] = image.platforms;
  return { imageId: main.manifest.config.digest, labels: main.config.config.Labels ?? {}, architecture: main.config.architecture };
}

export async function readStoredImage(store: BlobStore, top: Descriptor): Promise<StoredImage> {
  const bytes = await store.read(top.digest);
  const document = JSON.parse(bytes.toString('utf8')) as ImageManifest | ImageIndex;
  const descriptors = isIndex(top.mediaType) ? (document as ImageIndex).manifests : [top];
  const platforms = [];
  for (const descriptor of descriptors) {
    const manifest = JSON.parse((descriptor === top ? bytes : await store.read(descriptor.digest)).toString('utf8')) as ImageManifest;
    const config = JSON.parse((await store.read(manifest.config.digest)).toString('utf8')) as ImageConfig;
    platforms.push({ descriptor, manifest, config });
  }
  return { top, platforms };
}

/** Writes a config and the manifest that names it (with `layers`) into the store. */
export async function storeManifest(
  store: BlobStore,
  config: ImageConfig,
  layers: Descriptor[],
  annotations?: Record<string, string>,
): Promise<{ descriptor: Descriptor; manifest: ImageManifest }> {
  const configBytes = documentBytes(config);
  await store.put(configBytes);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: describe(MEDIA.config, configBytes),
    layers,
    ...(annotations ? { annotations } : {}),
  };
  const bytes = documentBytes(manifest);
  await store.put(bytes);
  const platform = { architecture: config.architecture, os: config.os, ...(config.variant ? { variant: config.variant } : {}) };
  return { descriptor: describe(MEDIA.manifest, bytes, { platform }), manifest };
}

/** The image's top descriptor: its manifest for one platform, an index over them for several. */
export async function storeTop(store: BlobStore, manifests: Descriptor[], annotations?: Record<string, string>): Promise<Descriptor> {
  if (manifests.length === 1) {
    const { platform: _platform, ...top } = manifests[0];
    return top;
  }
  const index: ImageIndex = { schemaVersion: 2, mediaType: MEDIA.index, manifests, ...(annotations ? { annotations } : {}) };
  const bytes = documentBytes(index);
  await store.put(bytes);
  return describe(MEDIA.index, bytes);
}

/** Every blob an image names: the top document, each manifest, config and layer. */
export function blobsOf(image: StoredImage): Descriptor[] {
  const seen = new Map<string, Descriptor>();
  const add = (d: Descriptor) => seen.set(d.digest, d);
  for (const p of image.platforms) {
    for (const layer of p.manifest.layers) add(layer);
    add(p.manifest.config);
    add(p.descriptor);
  }
  add(image.top);
  return [...seen.values()];
}

/**
 * A new image that is `image` with labels added and environment variables set, per platform: what
 * `mlops tag` stamps on a version. The layers are the same blobs; only configs and manifests are new.
 */
export async function relabelStored(store: BlobStore, image: StoredImage, labels: Record<string, string>, env: Record<string, string>): Promise<Descriptor> {
  const manifests: Descriptor[] = [];
  for (const p of image.platforms) {
    const container = p.config.config;
    const keep = (container.Env ?? []).filter((e) => !(e.slice(0, e.indexOf('=')) in env));
    const config: ImageConfig = {
      ...p.config,
      config: { ...container, Env: [...keep, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)], Labels: { ...(container.Labels ?? {}), ...labels } },
    };
    manifests.push((await storeManifest(store, config, p.manifest.layers, p.manifest.annotations)).descriptor);
  }
  return storeTop(store, manifests);
}
