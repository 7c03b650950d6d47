import type { BlobStore } from '../oci/blob-store.js';
import { blobsOf, type StoredImage } from '../oci/image.js';
import type { Descriptor } from '../oci/media.js';
import { pushBlob, putManifest, type BlobOutcome } from './blobs.js';
import type { RegistryClient } from './client.js';

export interface PushStoredOptions {
  /** Repositories of this registry that may hold the blobs already (the base's): mounted rather than sent. */
  mountFrom?: string[];
  /** Fetches a blob the store lacks (a base layer still in its registry) into the store. */
  fetchMissing?: (blob: Descriptor) => Promise<void>;
  onProgress?: (line: string) => void;
  attempts?: number;
  backoffMs?: number;
  stallMs?: number;
}

export interface PushStoredResult {
  digest: string;
  /** How many blobs were sent, found present, or mounted; and the bytes sent. */
  uploaded: number;
  present: number;
  mounted: number;
  bytesSent: number;
}

/** At most this many blobs in flight at once: enough to hide latency, few enough not to starve one layer. */
const PARALLEL = 3;

/**
 * Pushes an image held in a blob store (built without a daemon) to a registry: every blob it names
 * (skipped when present, mounted where the registry lends it), then the manifests, then each tag.
 */
export async function pushStoredImage(
  client: RegistryClient,
  repository: string,
  store: BlobStore,
  image: StoredImage,
  tags: string[],
  options: PushStoredOptions = {},
): Promise<PushStoredResult> {
  const result: PushStoredResult = { digest: image.top.digest, uploaded: 0, present: 0, mounted: 0, bytesSent: 0 };
  const manifests = new Set([image.top.digest, ...image.platforms.map((p) => p.descriptor.digest)]);
  const blobs = blobsOf(image).filter((b) => !manifests.has(b.digest));
  const queue = [...blobs];
  const count = (outcome: BlobOutcome, blob: Descriptor) => {
    if (outcome === 'uploaded') {
      result.uploaded++;
      result.bytesSent += blob.size;
    } else result[outcome]++;
    options.onProgress?.(`blob ${blob.digest.slice(7, 19)} (${(blob.size / 1e6).toFixed(1)} MB): ${outcome}`);
  };
  await Promise.all(
    Array.from({ length: Math.min(PARALLEL, queue.length) }, async () => {
      for (let blob = queue.shift(); blob; blob = queue.shift()) {
        const held = await store.has(blob.digest);
        const outcome = await pushBlob(
          client,
          repository,
          {
            digest: blob.digest,
            size: blob.size,
            open: () => store.open(blob.digest),
            prepare: held
              ? undefined
              : async () => {
                  if (!options.fetchMissing) throw new Error(`blob ${blob.digest} is in neither the cache nor the registry`);
                  await options.fetchMissing(blob);
                },
          },
          { mountFrom: options.mountFrom, attempts: options.attempts, backoffMs: options.backoffMs, stallMs: options.stallMs, onRetry: options.onProgress },
        );
        count(outcome, blob);
      }
    }),
  );
  // Each platform's manifest before the index that names it; the top under its digest, then each tag.
  for (const p of image.platforms) {
    if (p.descriptor.digest !== image.top.digest)
      await putManifest(client, repository, p.descriptor.digest, await store.read(p.descriptor.digest), p.descriptor.mediaType);
  }
  const top = await store.read(image.top.digest);
  for (const tag of tags) await putManifest(client, repository, tag, top, image.top.mediaType);
  return result;
}
