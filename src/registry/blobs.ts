import { Readable } from 'node:stream';
import { environmentError, isMlopsError } from '../errors.js';
import type { RegistryClient } from './client.js';

/** A blob to send: its digest and size known, its bytes read as often as an attempt needs them. */
export interface BlobSource {
  digest: string;
  size: number;
  open(): Readable;
  /** Makes the bytes available (a base layer fetched into the cache) when an upload turns out to be needed. */
  prepare?(): Promise<void>;
}

export type BlobOutcome = 'present' | 'mounted' | 'uploaded';

export interface PushBlobOptions {
  /** Repositories of the same registry that hold the blob: asked to lend it (a cross-repository mount) before uploading. */
  mountFrom?: string[];
  /** Tries in all when the connection drops or the registry answers 5xx. */
  attempts?: number;
  backoffMs?: number;
  onRetry?: (why: string) => void;
  /** An upload that sends nothing for this long is dropped and tried again (default 30 s; see uploadStallMs). */
  stallMs?: number;
}

/** A stalled upload: no byte taken by the connection for `stallMs`, or no answer long after the last. */
function stallGuard(stallMs: number) {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const arm = (ms: number, why: string) => {
    clearTimeout(timer);
    timer = setTimeout(() => controller.abort(new Error(why)), ms);
    timer.unref();
  };
  return {
    signal: controller.signal,
    watch(source: Readable): Readable {
      arm(stallMs, `the upload stalled for ${stallMs / 1000} s`);
      source.on('data', () => arm(stallMs, `the upload stalled for ${stallMs / 1000} s`));
      // The registry checks the digest of what arrived before it answers: a few seconds for the largest layers, well under four stalls.
      source.on('end', () => arm(stallMs * 4, 'the registry did not answer after the upload'));
      return source;
    },
    done: () => clearTimeout(timer),
  };
}

const pushScope = (repository: string, from?: string) => `repository:${repository}:pull,push${from ? ` repository:${from}:pull` : ''}`;

/** An upload location as a path the client can send to (registries answer with either). */
function uploadTarget(client: RegistryClient, location: string, digest: string): string {
  const url = new URL(location, `http://${client.registry}`);
  url.searchParams.set('digest', digest);
  return /^https?:/.test(location) ? url.toString() : `${url.pathname}${url.search}`;
}

class Transient extends Error {}

/** MLOPS_REGISTRY_STALL_SECONDS (default 30): how long an upload may send nothing before it is tried again. */
export function uploadStallMs(env: NodeJS.ProcessEnv): number {
  const seconds = Number(env.MLOPS_REGISTRY_STALL_SECONDS);
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 30_000;
}

async function attempt(client: RegistryClient, repository: string, blob: BlobSource, mountFrom: string[], stallMs: number): Promise<BlobOutcome> {
  const head = await client.request(`/v2/${repository}/blobs/${blob.digest}`, { method: 'HEAD', scope: pushScope(repository) });
  if (head.ok) return 'present';
  if (head.status >= 500) throw new Transient(`HEAD answered HTTP ${head.status}`);
  let location: string | null = null;
  for (const from of mountFrom.filter((r) => r !== repository)) {
    const mount = await client.request(`/v2/${repository}/blobs/uploads/?mount=${encodeURIComponent(blob.digest)}&from=${encodeURIComponent(from)}`, {
      method: 'POST',
      scope: pushScope(repository, from),
    });
    await mount.body?.cancel();
    if (mount.status === 201) return 'mounted';
    // 202: the registry would not mount and opened an upload instead; use it.
    if (mount.status === 202 && mount.headers.get('location')) {
      location = mount.headers.get('location');
      break;
    }
  }
  if (!location) {
    const start = await client.request(`/v2/${repository}/blobs/uploads/`, { method: 'POST', scope: pushScope(repository) });
    await start.body?.cancel();
    if (start.status >= 500) throw new Transient(`starting the upload answered HTTP ${start.status}`);
    location = start.headers.get('location');
    if (start.status !== 202 || !location)
      throw environmentError(`registry ${client.registry}: starting a blob upload to ${repository} failed (HTTP ${start.status})`);
  }
  await blob.prepare?.();
  let put: Response;
  const guard = stallGuard(stallMs);
  try {
    put = await client.request(uploadTarget(client, location, blob.digest), {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
      body: () => guard.watch(blob.open()),
      scope: pushScope(repository),
      signal: guard.signal,
    });
  } catch (error) {
    // The connection dropped or stalled mid-blob: the upload is started again whole (a registry keeps no partial blob under its digest).
    const why = guard.signal.aborted ? (guard.signal.reason as Error).message : isMlopsError(error) ? error.message : (error as Error).message;
    throw new Transient(why);
  } finally {
    guard.done();
  }
  const text = put.status === 201 ? '' : await put.text().catch(() => '');
  await put.body?.cancel().catch(() => undefined);
  if (put.status >= 500) throw new Transient(`the upload answered HTTP ${put.status}`);
  if (put.status !== 201)
    throw environmentError(
      `registry ${client.registry}: uploading blob ${blob.digest} to ${repository} failed (HTTP ${put.status}) ${text.slice(0, 200)}`.trim(),
    );
  return 'uploaded';
}

/**
 * Sends a blob unless the registry has it: HEAD first, then a mount from a repository that has it,
 * then a monolithic upload streamed from its source. A dropped connection or a 5xx is tried again
 * with backoff; the registry checks the digest of what arrived, so a retried blob is right or refused.
 */
export async function pushBlob(client: RegistryClient, repository: string, blob: BlobSource, options: PushBlobOptions = {}): Promise<BlobOutcome> {
  const attempts = options.attempts ?? 4;
  let backoff = options.backoffMs ?? 500;
  for (let n = 1; ; n++) {
    try {
      return await attempt(client, repository, blob, options.mountFrom ?? [], options.stallMs ?? 30_000);
    } catch (error) {
      const transient = error instanceof Transient || (isMlopsError(error) && /cannot reach registry/.test(error.message));
      if (!transient || n >= attempts) {
        if (transient)
          throw environmentError(
            `registry ${client.registry}: uploading blob ${blob.digest} to ${repository} failed after ${n} attempts: ${error.message}`,
            'check the registry and the network; run the command again to resume (blobs already sent are skipped)',
          );
        throw error;
      }
      options.onRetry?.(`blob ${blob.digest.slice(7, 19)}: ${error.message}; retrying in ${backoff / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff *= 2;
    }
  }
}

/** A blob held in memory (an SBOM, a signature, a config). */
export function bufferSource(bytes: Buffer, digest: string): BlobSource {
  return { digest, size: bytes.length, open: () => Readable.from([bytes]) };
}

/** Stores a manifest or index under a tag or its digest. */
export async function putManifest(client: RegistryClient, repository: string, reference: string, body: Buffer, mediaType: string): Promise<Response> {
  const res = await client.request(`/v2/${repository}/manifests/${reference}`, {
    method: 'PUT',
    headers: { 'content-type': mediaType },
    body,
    scope: pushScope(repository),
  });
  if (res.status !== 201) {
    const text = await res.text().catch(() => '');
    throw environmentError(`registry ${client.registry}: storing manifest ${repository}:${reference} failed (HTTP ${res.status}) ${text.slice(0, 200)}`.trim());
  }
  await res.body?.cancel();
  return res;
}
