import type { Bucket, Storage } from '@google-cloud/storage';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { firstLine, networkFailure, type Failure, type Vendor } from './failures.js';
import { objectUri, type ObjectStore } from './object-store.js';
import { DEFAULT_PART_SIZE, storeOver, type StoreOptions } from './store.js';

/** A resumable upload's chunks are multiples of 256 KiB (all but the last). */
const CHUNK_UNIT = 256 * 1024;

const ROLES = {
  read: 'roles/storage.objectViewer',
  write: 'roles/storage.objectCreator',
  list: 'roles/storage.objectViewer',
  'look up': 'roles/storage.objectViewer',
  remove: 'roles/storage.objectUser',
};

const GOOGLE: Vendor = {
  name: 'Google Cloud',
  listCommand: (location) => `gcloud storage ls ${objectUri(location, location.key.slice(0, location.key.lastIndexOf('/') + 1))}`,
  credentialsHint:
    'the Google Cloud SDK reads GOOGLE_APPLICATION_CREDENTIALS, then `gcloud auth application-default login`, then the metadata server (docs/storage.md "Credentials")',
  permissionHint: (operation) => `the account \`gcloud auth list\` shows needs ${ROLES[operation]} (or a role with its permissions) on the bucket`,
  endpointHint: 'check the network; STORAGE_EMULATOR_HOST, when set, must name a running GCS stand-in (docs/storage.md "Local stand-ins")',
};

/** The HTTP status: the SDK's ApiError keeps it in `code`, gaxios' errors (resumable uploads) in `status` or `response`. */
const statusOf = (error: Error): number | undefined => {
  const { code, status, response } = error as { code?: unknown; status?: unknown; response?: { status?: unknown } };
  for (const value of [code, status, response?.status]) if (typeof value === 'number') return value;
  return undefined;
};
/** What GCS said: the message, and for gaxios' errors the answer's body, where GCS names a missing bucket. */
const saidBy = (error: Error): string => {
  const data = (error as { response?: { data?: unknown } }).response?.data;
  return `${error.message} ${typeof data === 'string' ? data : JSON.stringify(data ?? '')}`;
};

export function gcsFailure(error: unknown): Failure | undefined {
  const network = networkFailure(error);
  if (network) return { kind: 'unreachable', detail: network };
  if (!(error instanceof Error)) return undefined;
  const status = statusOf(error);
  const detail = firstLine(error);
  if (/could not load the default credentials|unable to detect a project id/i.test(error.message)) return { kind: 'no-credentials', detail };
  if (status === 404) return /bucket does not exist/i.test(saidBy(error)) ? { kind: 'no-bucket' } : { kind: 'no-object' };
  if (status === 416) return { kind: 'bad-range' };
  if (status === 401 || status === 403) return { kind: 'denied', detail: `${status}: ${detail}` };
  if (status !== undefined) return { kind: 'service', detail: `${status}: ${detail}` };
  return undefined;
}

/**
 * gs:// through @google-cloud/storage and Application Default Credentials. Writes are resumable uploads
 * sent in chunks of partSize: memory holds one chunk, a failed chunk is retried from the last byte GCS
 * committed rather than from the start, and an object of any size fits (a multipart upload is one request
 * that must start over when it fails).
 */
export function gcsStore(env: NodeJS.ProcessEnv = process.env, options: StoreOptions = {}): ObjectStore {
  const chunkSize = Math.ceil((options.partSize ?? DEFAULT_PART_SIZE) / CHUNK_UNIT) * CHUNK_UNIT;
  let client: Promise<Storage> | undefined;
  const storage = () => (client ??= createClient(env, options));
  const bucketOf = async (name: string) => (await storage()).bucket(name);
  /** A 404 for an object: when its bucket is missing too, say so (a bucket mlops may not read says nothing, and the object is missing). */
  const missing = async (bucket: Bucket): Promise<null> => {
    const [exists] = await bucket.exists().catch(() => [true]);
    if (!exists) throw Object.assign(new Error(`The specified bucket does not exist: ${bucket.name}`), { code: 404 });
    return null;
  };

  return storeOver({
    scheme: 'gs',
    vendor: GOOGLE,
    classify: gcsFailure,
    async list({ bucket, key }) {
      const found: { key: string; size: number }[] = [];
      const from = await bucketOf(bucket);
      let pageToken: string | undefined;
      do {
        const [files, next] = await from.getFiles({ prefix: key, autoPaginate: false, maxResults: options.pageSize, pageToken });
        for (const file of files) found.push({ key: file.name, size: Number(file.metadata.size ?? 0) });
        pageToken = (next as { pageToken?: string } | null)?.pageToken;
      } while (pageToken);
      return found;
    },
    async size({ bucket, key }) {
      const from = await bucketOf(bucket);
      try {
        const [metadata] = await from.file(key).getMetadata();
        return Number(metadata.size ?? 0);
      } catch (error) {
        if (gcsFailure(error)?.kind !== 'no-object') throw error;
        return missing(from);
      }
    },
    async open({ bucket, key }, range) {
      // The SDK's end is inclusive, ours exclusive.
      const span = range ? { start: range.start, end: range.end - 1 } : {};
      return (await bucketOf(bucket)).file(key).createReadStream(span);
    },
    async write({ bucket, key }, body, contentType) {
      const file = (await bucketOf(bucket)).file(key);
      const source = Buffer.isBuffer(body) ? Readable.from([body]) : body;
      await pipeline(source, file.createWriteStream({ resumable: true, chunkSize, contentType }));
    },
    async remove({ bucket, key }) {
      const from = await bucketOf(bucket);
      try {
        await from.file(key).delete();
      } catch (error) {
        if (gcsFailure(error)?.kind !== 'no-object') throw error;
        await missing(from);
      }
    },
  });
}

async function createClient(env: NodeJS.ProcessEnv, options: StoreOptions): Promise<Storage> {
  const { Storage } = await import('@google-cloud/storage');
  // The SDK reads STORAGE_EMULATOR_HOST from process.env itself; passed on as apiEndpoint, it is read from `env` too.
  // Either way the SDK sends no credentials to such an endpoint.
  const apiEndpoint = env.STORAGE_EMULATOR_HOST || undefined;
  // maxRetries 0 reads as "unset" in the SDK: one attempt is autoRetry off.
  const attempts = options.maxAttempts;
  const retryOptions = attempts === undefined ? undefined : attempts <= 1 ? { autoRetry: false } : { maxRetries: attempts - 1 };
  return new Storage({ apiEndpoint, retryOptions });
}
