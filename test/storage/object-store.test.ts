/** URIs, the failures each SDK's errors map to, and what the stores do before any request. */
import { readdirSync, readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ExitCode, inputError, isMlopsError } from '../../src/errors.js';
import { azureFailure } from '../../src/storage/azure-blob.js';
import { gcsFailure } from '../../src/storage/gcs.js';
import { objectStoreFor, objectUri, parseObjectUri } from '../../src/storage/index.js';
import { s3Failure } from '../../src/storage/s3.js';
import { collect, failure } from './round-trip.js';

describe('parseObjectUri', () => {
  it('splits s3://, gs:// and az:// URIs, keys taken as written', () => {
    expect(parseObjectUri('s3://my-bucket/data/part-0.csv')).toEqual({ scheme: 's3', bucket: 'my-bucket', key: 'data/part-0.csv' });
    expect(parseObjectUri('gs://my.bucket_1/a b?c#d')).toEqual({ scheme: 'gs', bucket: 'my.bucket_1', key: 'a b?c#d' });
    expect(parseObjectUri('S3://bucket')).toEqual({ scheme: 's3', bucket: 'bucket', key: '' });
    expect(parseObjectUri('s3://bucket/')).toEqual({ scheme: 's3', bucket: 'bucket', key: '' });
    expect(parseObjectUri('az://acct1/container-1/dir/x.parquet')).toEqual({ scheme: 'az', bucket: 'acct1', container: 'container-1', key: 'dir/x.parquet' });
    expect(parseObjectUri('az://acct1/container-1')).toEqual({ scheme: 'az', bucket: 'acct1', container: 'container-1', key: '' });
  });

  it('gives back the URI of a key beside it', () => {
    expect(objectUri(parseObjectUri('az://acct1/c01/dir/'), 'dir/x.csv')).toBe('az://acct1/c01/dir/x.csv');
    expect(objectUri(parseObjectUri('gs://bucket/x'))).toBe('gs://bucket/x');
  });

  it.each([
    ['s3://', 'no bucket'],
    ['s3:///key', 'no bucket'],
    ['s3://Upper/key', 'is not a bucket'],
    ['gs://b/key', 'is not a bucket'],
    ['s3://bucket//key', 'the key starts with "/"'],
    ['az://acct1', 'no container'],
    ['az://acct1/Bad_Container/x', 'is not a container'],
    ['az://not-an-account/c01/x', 'is not a storage account'],
    ['http://bucket/key', 'expected s3://, gs:// or az://'],
  ])('rejects %s, naming it, exit 2', (uri, why) => {
    let thrown: unknown;
    try {
      parseObjectUri(uri);
    } catch (error) {
      thrown = error;
    }
    expect(isMlopsError(thrown)).toBe(true);
    const error = thrown as ReturnType<typeof inputError>;
    expect(error.exitCode).toBe(ExitCode.badInput);
    expect(error.message).toContain(uri);
    expect(error.message).toContain(why);
    expect(error.hint).toContain('s3://bucket/key, gs://bucket/key or az://account/container/key');
  });

  it('throws for a malformed URI when a store is asked for one', () => {
    expect(() => objectStoreFor('s3:/bucket/key')).toThrow(/not an object URI/);
  });
});

describe("the SDKs' errors", () => {
  const named = (name: string, message: string, fields: Record<string, unknown> = {}) => Object.assign(new Error(message), { name }, fields);
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });

  it('read as missing credentials (exit 2), not as an unreachable metadata endpoint', () => {
    expect(s3Failure(named('CredentialsProviderError', 'Could not load credentials from any providers'))?.kind).toBe('no-credentials');
    expect(gcsFailure(new Error('Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication'))?.kind).toBe(
      'no-credentials',
    );
    const chain = named('AggregateAuthenticationError', 'ChainedTokenCredential authentication failed.', { errors: [refused] });
    expect(azureFailure(chain, false)?.kind).toBe('no-credentials');
    expect(azureFailure(named('CredentialUnavailableError', 'EnvironmentCredential is unavailable'), false)?.kind).toBe('no-credentials');
  });

  it('read a refused connection, however wrapped, as unreachable (exit 3)', () => {
    expect(s3Failure(refused)).toEqual({ kind: 'unreachable', detail: 'ECONNREFUSED' });
    expect(gcsFailure(Object.assign(new Error('request to http://127.0.0.1:9 failed'), { cause: refused }))?.kind).toBe('unreachable');
    expect(azureFailure(Object.assign(new AggregateError([refused], 'connect failed')), true)?.kind).toBe('unreachable');
  });

  it('read an Azure account whose host does not resolve as no such account (exit 2)', () => {
    const dns = Object.assign(new Error('getaddrinfo ENOTFOUND nosuchacct.blob.core.windows.net'), { code: 'ENOTFOUND' });
    expect(azureFailure(dns, false)).toMatchObject({ kind: 'misconfigured' });
    expect(azureFailure(dns, true)).toMatchObject({ kind: 'unreachable' });
  });

  it('read refusals and service failures by status', () => {
    expect(s3Failure(named('AccessDenied', 'Access Denied', { $metadata: { httpStatusCode: 403 } }))?.kind).toBe('denied');
    expect(s3Failure(named('SlowDown', 'Please reduce your request rate.', { $metadata: { httpStatusCode: 503 } }))?.kind).toBe('service');
    expect(s3Failure(named('Error', 'Region is missing'))?.kind).toBe('misconfigured');
    expect(gcsFailure(Object.assign(new Error('denied'), { code: 403 }))?.kind).toBe('denied');
    expect(azureFailure(named('RestError', 'no', { statusCode: 403, code: 'AuthorizationPermissionMismatch' }), false)?.kind).toBe('denied');
    // Not an SDK's error: a bug, thrown as it is.
    expect(s3Failure(new TypeError('x is undefined'))).toBeUndefined();
  });
});

describe('before any request', () => {
  // Keys in the env: the SDK's chain is never consulted (no instance metadata lookups).
  const store = objectStoreFor('s3://data/', {
    AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9',
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'k',
    AWS_SECRET_ACCESS_KEY: 's',
  });

  it('refuses a range that is not one, and answers an empty range with no bytes', async () => {
    expect(() => store.read('s3://data/x', { start: 5, end: 2 })).toThrow(/bytes \[5, 2\) is not a range/);
    expect(() => store.read('s3://data/x', { start: -1, end: 2 })).toThrow(/is not a range/);
    expect(await collect(store.read('s3://data/x', { start: 3, end: 3 }))).toHaveLength(0);
  });

  it("refuses another scheme's URI", async () => {
    const error = await failure(store.size('gs://data/x'));
    expect(error.message).toBe('gs://data/x: this store reads s3:// URIs');
  });

  it("reports a failing body's own error, not a storage failure", async () => {
    const mine = inputError('row 3: not a number');
    const body = new Readable({ read: () => body.destroy(mine) });
    await expect(store.write('s3://data/x', body)).rejects.toBe(mine);
  });

  it('loads no SDK until a store is used: src/storage imports them as types only, outside dynamic import()', () => {
    const dir = new URL('../../src/storage/', import.meta.url);
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const source = readFileSync(new URL(file, dir), 'utf8');
      expect(source, file).not.toMatch(/^import (?!type )[^;]*from '@(aws-sdk|google-cloud|azure)\//m);
    }
  });
});

describe('objectStoreFor', () => {
  it('gives back the same store for the same environment, scheme and options, so that a store per read costs one SDK client', () => {
    const env = { AWS_REGION: 'us-east-1' };
    expect(objectStoreFor('s3://aaa/x', env)).toBe(objectStoreFor('s3://bbb/y', env));
    expect(objectStoreFor('s3://aaa/x', env)).not.toBe(objectStoreFor('gs://aaa/x', env));
    expect(objectStoreFor('s3://aaa/x', env)).not.toBe(objectStoreFor('s3://aaa/x', { ...env }));
    expect(objectStoreFor('s3://aaa/x', env, { partSize: 1 })).not.toBe(objectStoreFor('s3://aaa/x', env));
  });
});
