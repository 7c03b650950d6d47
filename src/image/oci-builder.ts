import { createReadStream } from 'node:fs';
import path from 'node:path';
import type { BlobStore } from '../oci/blob-store.js';
import { storeManifest, storeTop, type StoredImage } from '../oci/image.js';
import { packEntries, storeLayer, treeEntries, type LayerDescriptor } from '../oci/layer.js';
import { MEDIA, parsePlatform, type Descriptor, type ImageConfig } from '../oci/media.js';
import type { BaseImage } from './base-image.js';
import { IMAGE_RUNTIME } from '../contract/image.js';
import type { ImageRecipe } from './context.js';

const SECOND = 1e9;

/** Docker's gzip layer type is the OCI one by another name: the same bytes, listed as OCI in an OCI manifest. */
function asOciLayer(layer: Descriptor): Descriptor {
  const mediaType = layer.mediaType === MEDIA.dockerLayerGzip ? MEDIA.layerGzip : layer.mediaType;
  return { mediaType, digest: layer.digest, size: layer.size };
}

/** The base's environment with the recipe's set over it, each name once, in the order Docker's ENV gives. */
function mergeEnv(base: string[], set: [string, string][]): string[] {
  const names = new Set(set.map(([k]) => k));
  return [...base.filter((e) => !names.has(e.slice(0, e.indexOf('=')))), ...set.map(([k, v]) => `${k}=${v}`)];
}

/** The config the Dockerfile's instructions would give, from the recipe and the base's config. */
export function imageConfig(base: BaseImage, recipe: ImageRecipe, layers: LayerDescriptor[], created: string): ImageConfig {
  const from = base.config.config ?? {};
  const platform = parsePlatform(recipe.platform);
  const h = IMAGE_RUNTIME.healthcheck;
  const ports = Object.fromEntries(recipe.exposedPorts.map((p) => [`${p}/tcp`, {}]));
  // ENTRYPOINT clears the base's CMD, as Docker does; every other field of the base's config is kept.
  const { Cmd: _cmd, ...inherited } = from;
  return {
    created,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant && platform.architecture !== 'amd64' ? { variant: platform.variant } : {}),
    config: {
      ...inherited,
      User: IMAGE_RUNTIME.user,
      ExposedPorts: { ...(from.ExposedPorts ?? {}), ...ports },
      Env: mergeEnv(from.Env ?? [], recipe.env),
      Entrypoint: [...IMAGE_RUNTIME.entrypoint],
      WorkingDir: IMAGE_RUNTIME.workdir,
      Labels: { ...(from.Labels ?? {}), ...recipe.labels },
      StopSignal: IMAGE_RUNTIME.stopSignal,
      Healthcheck: {
        Test: ['CMD', ...h.command],
        Interval: h.intervalSeconds * SECOND,
        Timeout: h.timeoutSeconds * SECOND,
        StartPeriod: h.startPeriodSeconds * SECOND,
        Retries: h.retries,
      },
    },
    rootfs: { type: 'layers', diff_ids: [...base.config.rootfs.diff_ids, ...layers.map((l) => l.diffId)] },
    history: [...(base.config.history ?? []), ...recipe.layers.map((l) => ({ created, created_by: `mlops build: ${l.comment}`, comment: 'mlops' }))],
  };
}

export interface PlatformBuild {
  contextDir: string;
  recipe: ImageRecipe;
  base: BaseImage;
}

/**
 * Writes the image without a daemon: each recipe layer as a tar made in-process (sorted, root-owned,
 * fixed times), gzip'd by fflate, into the blob store; then each platform's config and manifest, and
 * an index over them when there are several. Layers that equal inputs made before come from the store.
 */
export async function writeOciImage(
  store: BlobStore,
  builds: PlatformBuild[],
  created: string,
  options: { reuse?: boolean; onProgress?: (line: string) => void } = {},
): Promise<StoredImage> {
  const platforms: StoredImage['platforms'] = [];
  for (const build of builds) {
    const layers: LayerDescriptor[] = [];
    for (const layer of build.recipe.layers) {
      options.onProgress?.(`${build.recipe.platform}: ${layer.comment}`);
      const source = path.join(build.contextDir, layer.source);
      if (layer.kind === 'folder') {
        const entries = await treeEntries(source, layer.target.replace(/^\//, ''));
        layers.push(await storeLayer(store, () => packEntries(entries), options.reuse));
      } else {
        layers.push(await storeLayer(store, () => createReadStream(source), options.reuse));
      }
    }
    const config = imageConfig(build.base, build.recipe, layers, created);
    const annotations = {
      'org.opencontainers.image.base.name': build.base.name,
      ...(build.base.manifestDigest ? { 'org.opencontainers.image.base.digest': build.base.manifestDigest } : {}),
    };
    const all = [...build.base.layers.map(asOciLayer), ...layers.map(({ diffId: _d, ...d }) => d)];
    const { descriptor, manifest } = await storeManifest(store, config, all, annotations);
    platforms.push({ descriptor, manifest, config });
  }
  const top = await storeTop(
    store,
    platforms.map((p) => p.descriptor),
  );
  return { top, platforms };
}
