import type { Readable } from 'node:stream';

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
