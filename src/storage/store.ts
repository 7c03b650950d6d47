import { Readable } from 'node:stream';
import { inputError } from '../errors.js';
import { storageError, type Failure, type Operation, type Vendor } from './failures.js';
import { objectUri, parseObjectUri, type ObjectLocation, type ObjectScheme, type ObjectStore, type StoredObject } from './object-store.js';
import { bodyFailure, checkRange, lazyReadable, type ByteRange } from './streams.js';

/** Tuning every store takes; the defaults suit batch jobs, tests make them small. */
export interface StoreOptions {
  /** Bytes per uploaded part (S3 part, Azure block, GCS resumable chunk): what a write holds in memory per part. */
  partSize?: number;
  /** Objects per list request. */
  pageSize?: number;
  /** Attempts per request, the first included, before a failure is reported (the SDKs' own retry policies). */
  maxAttempts?: number;
}

export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
/** Parts in flight at once: a write holds at most this many parts in memory. */
export const PARTS_IN_FLIGHT = 4;

/** One vendor's SDK calls on parsed locations; storeOver adds URI parsing, range checks, sorting and the errors the user sees. */
export interface StoreDriver {
  scheme: ObjectScheme;
  vendor: Vendor;
  /** Reads an SDK error; undefined when it is none of the known failures (a bug: it is thrown as it is). */
  classify(error: unknown): Failure | undefined;
  list(location: ObjectLocation): Promise<{ key: string; size: number }[]>;
  size(location: ObjectLocation): Promise<number | null>;
  /** The object's bytes, or bytes [start, end) of it, with end > start. */
  open(location: ObjectLocation, range?: ByteRange): Promise<AsyncIterable<Uint8Array>>;
  write(location: ObjectLocation, body: Readable | Buffer, contentType: string | undefined): Promise<void>;
  /** Removes the object; absent is no error. */
  remove(location: ObjectLocation): Promise<void>;
}

export function storeOver(driver: StoreDriver): ObjectStore {
  const locate = (uri: string): ObjectLocation => {
    const location = parseObjectUri(uri);
    if (location.scheme !== driver.scheme)
      throw inputError(`${uri}: this store reads ${driver.scheme}:// URIs`, 'open a store for the URI with objectStoreFor(uri)');
    return location;
  };
  const failure = (uri: string, location: ObjectLocation, operation: Operation) => (error: unknown) => {
    const known = driver.classify(error);
    return known ? storageError(uri, location, operation, driver.vendor, known, error) : error;
  };
  const run = async <T>(uri: string, operation: Operation, call: (location: ObjectLocation) => Promise<T>): Promise<T> => {
    const location = locate(uri);
    try {
      return await call(location);
    } catch (error) {
      throw failure(uri, location, operation)(error);
    }
  };

  return {
    list: (uri) =>
      run(uri, 'list', async (location) => {
        const found = await driver.list(location);
        return found
          .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
          .map(({ key, size }): StoredObject => ({ uri: objectUri(location, key), size }));
      }),
    size: (uri) => run(uri, 'look up', (location) => driver.size(location)),
    read(uri, range) {
      const location = locate(uri);
      checkRange(uri, range);
      if (range && range.end === range.start) return Readable.from([]);
      const mapped = failure(uri, location, 'read');
      return lazyReadable(
        () => driver.open(location, range),
        (error) => {
          const shown = mapped(error);
          return shown instanceof Error ? shown : new Error(String(shown));
        },
      );
    },
    async write(uri, body, contentType) {
      const bodyError = bodyFailure(body);
      try {
        await run(uri, 'write', (location) => driver.write(location, body, contentType));
      } catch (error) {
        // The producer's own failure (a row the scorer rejected) is reported as it was, not as the store's.
        throw bodyError() ?? error;
      }
    },
    remove: (uri) => run(uri, 'remove', (location) => driver.remove(location)),
  };
}
