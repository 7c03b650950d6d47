import type { Readable } from 'node:stream';
import { inputError } from '../errors.js';

/**
 * Object storage as `mlops batch` reads and writes it: s3://bucket/key, gs://bucket/key and
 * az://account/container/key, each through its vendor's own SDK and default credential chain.
 * Local paths never come here (see isObjectUri).
 */

export type ObjectScheme = 's3' | 'gs' | 'az';

export interface ObjectLocation {
  scheme: ObjectScheme;
  /** s3 and gs: the bucket; az: the storage account. */
  bucket: string;
  /** az only: the container. */
  container?: string;
  /** The key, without a leading slash; '' for a bucket's root. */
  key: string;
}

export interface StoredObject {
  /** The object's full URI, as given back to read(). */
  uri: string;
  size: number;
}

export interface ObjectStore {
  /** The objects whose key starts with the URI's key, sorted by key: a prefix lists a "folder", a full key lists one object. */
  list(uri: string): Promise<StoredObject[]>;
  /** The object's size in bytes, or null when there is no such object. */
  size(uri: string): Promise<number | null>;
  /** Streams the object, or bytes [start, end) of it (ranged GETs), without holding it in memory. */
  read(uri: string, range?: { start: number; end: number }): Readable;
  /** Writes the object from a stream in parts (multipart / block upload): memory stays bounded whatever its size. */
  write(uri: string, body: Readable | Buffer, contentType?: string): Promise<void>;
  /** Removes the object; no error when it is absent. */
  remove(uri: string): Promise<void>;
}

export function isObjectUri(value: string): boolean {
  return /^(s3|gs|az):\/\//i.test(value);
}

const FORMS = 's3://bucket/key, gs://bucket/key or az://account/container/key';
/** Bucket names as S3 and GCS allow them (GCS's dotted names run to 222 characters); az:// accounts and containers as Azure does. */
const BUCKET = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;
const ACCOUNT = /^[a-z0-9]{3,24}$/;
const CONTAINER = /^(?:[a-z0-9](?:-?[a-z0-9]){2,62}|\$root)$/;

/**
 * Splits an object URI into its parts. The key is taken as written, not percent-decoded (as `aws s3` and
 * `gcloud storage` take it): s3://bucket/a b.csv names the key "a b.csv".
 */
export function parseObjectUri(uri: string): ObjectLocation {
  const match = /^(s3|gs|az):\/\/([^/]*)(?:\/(.*))?$/is.exec(uri);
  const bad = (why: string) => inputError(`${uri}: not an object URI (${why})`, `write it as ${FORMS}`);
  if (!match) throw bad(isObjectUri(uri) ? 'no bucket' : 'expected s3://, gs:// or az://');
  const scheme = match[1].toLowerCase() as ObjectScheme;
  const [, , bucket, rest = ''] = match;
  if (scheme === 'az') {
    if (!ACCOUNT.test(bucket)) throw bad(`"${bucket}" is not a storage account's name: 3 to 24 lowercase letters and digits`);
    const slash = rest.indexOf('/');
    const container = slash < 0 ? rest : rest.slice(0, slash);
    if (!CONTAINER.test(container)) throw bad(container ? `"${container}" is not a container's name` : 'no container');
    return { scheme, bucket, container, key: keyOf(slash < 0 ? '' : rest.slice(slash + 1), bad) };
  }
  if (!BUCKET.test(bucket)) throw bad(bucket ? `"${bucket}" is not a bucket's name: lowercase letters, digits, dots, hyphens and underscores` : 'no bucket');
  return { scheme, bucket, key: keyOf(rest, bad) };
}

function keyOf(key: string, bad: (why: string) => Error): string {
  if (key.startsWith('/')) throw bad('the key starts with "/"');
  return key;
}

/** The URI of an object in the same bucket (and container) as `location`: what list() gives back. */
export function objectUri(location: ObjectLocation, key: string = location.key): string {
  const container = location.container === undefined ? '' : `/${location.container}`;
  return `${location.scheme}://${location.bucket}${container}/${key}`;
}
