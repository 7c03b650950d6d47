import { azureBlobStore } from './azure-blob.js';
import { gcsStore } from './gcs.js';
import { parseObjectUri, type ObjectScheme, type ObjectStore } from './object-store.js';
import { s3Store } from './s3.js';
import type { StoreOptions } from './store.js';

export { isObjectUri, objectUri, parseObjectUri } from './object-store.js';
export type { ObjectLocation, ObjectScheme, ObjectStore, StoredObject } from './object-store.js';
export type { StoreOptions } from './store.js';

const STORES: Record<ObjectScheme, (env: NodeJS.ProcessEnv, options: StoreOptions) => ObjectStore> = {
  s3: s3Store,
  gs: gcsStore,
  az: azureBlobStore,
};

/** Stores already made, per environment: a store holds its SDK client, whose credentials are resolved once. */
const made = new WeakMap<NodeJS.ProcessEnv, Map<string, ObjectStore>>();

/**
 * The store for a URI's scheme; it serves every URI of that scheme (any bucket, any account). Each loads its
 * vendor's SDK on its first call, so opening a store costs nothing, and a call with the same `env` object and
 * options gives back the same store (one SDK client, credentials resolved once), so calling this per read is
 * cheap. A malformed URI throws inputError (exit 2). `env` is where the store reads its endpoint and key
 * settings (docs/storage.md "Local stand-ins"); the SDKs' credential chains read process.env as well.
 */
export function objectStoreFor(uri: string, env: NodeJS.ProcessEnv = process.env, options: StoreOptions = {}): ObjectStore {
  const scheme = parseObjectUri(uri).scheme;
  const stores = made.get(env) ?? new Map<string, ObjectStore>();
  made.set(env, stores);
  const key = `${scheme} ${JSON.stringify(options)}`;
  let store = stores.get(key);
  if (!store) stores.set(key, (store = STORES[scheme](env, options)));
  return store;
}
