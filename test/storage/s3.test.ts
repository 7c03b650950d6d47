/** The S3 store through the real AWS SDK against s3rver on 127.0.0.1, with a recording proxy between them. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { objectStoreFor } from '../../src/storage/index.js';
import { s3Endpoint } from '../../src/storage/s3.js';
import { closedPort, recordingProxy, startS3rver, type Running, type SeenRequest } from './stand-ins.js';
import { BIG, collect, expectMissing, failure, PART, roundTrip } from './round-trip.js';

const CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

describe('s3:// against s3rver', () => {
  let s3rver: Running;
  let proxy: Running & { requests: SeenRequest[] };
  const store = () => objectStoreFor('s3://data/', { ...CREDENTIALS, AWS_ENDPOINT_URL_S3: proxy.url }, { partSize: PART, pageSize: 2 });

  beforeAll(async () => {
    s3rver = await startS3rver(['data']);
    proxy = await recordingProxy(s3rver.url);
  });
  afterAll(async () => {
    await proxy?.close();
    await s3rver?.close();
  });

  it('writes in parts, lists sorted across pages, reads ranges, and removes', async () => {
    await roundTrip(store(), 's3://data/run-1/');
    const seen = proxy.requests.map((r) => `${r.method} ${r.url}`);
    // Path-style addressing, as a custom endpoint gets.
    expect(seen.every((line) => /^\w+ \/data(\/|\?|$)/.test(line))).toBe(true);
    // The 12 MiB object went up as a multipart upload of three 5 MiB-or-less parts.
    expect(seen.filter((line) => /^POST \/data\/run-1\/big\.bin\?uploads/.test(line))).toHaveLength(1);
    const parts = seen.filter((line) => /^PUT \/data\/run-1\/big\.bin\?.*partNumber=/.test(line));
    expect(parts.map((line) => /partNumber=(\d+)/.exec(line)![1]).sort()).toEqual(['1', '2', '3']);
    expect(seen.filter((line) => /^POST \/data\/run-1\/big\.bin\?uploadId=/.test(line))).toHaveLength(1);
    // Ranged GETs, end inclusive on the wire.
    const ranges = proxy.requests.filter((r) => r.method === 'GET' && r.url.startsWith('/data/run-1/big.bin')).map((r) => r.headers.range);
    expect(ranges).toEqual([undefined, `bytes=${PART - 3}-${PART + 6}`, `bytes=${BIG - 10}-${BIG - 1}`]);
    // Three listed objects at two a page: the listing followed a continuation token.
    expect(seen.filter((line) => /^GET \/data\/?\?.*list-type=2.*prefix=run-1%2Frows%2F/.test(line) && line.includes('continuation-token'))).toHaveLength(1);
  });

  it('names the URI and exits 2 when the bucket does not exist', async () => {
    const uri = 's3://no-such-bucket/x.csv';
    await expectMissing(store, uri, 'the bucket no-such-bucket does not exist');
  });

  it('exits 2 naming the URI when the credentials are refused', async () => {
    // s3rver knows one key ID (it does not check SigV4 signatures themselves).
    const refused = objectStoreFor('s3://data/', { ...CREDENTIALS, AWS_ACCESS_KEY_ID: 'AKIDUNKNOWN', AWS_ENDPOINT_URL_S3: s3rver.url });
    const error = await failure(refused.size('s3://data/run-1/rows/a.csv'));
    expect(error.exitCode).toBe(2);
    expect(error.message).toMatch(/^cannot look up s3:\/\/data\/run-1\/rows\/a\.csv: access denied \(/);
  });

  it('exits 3 naming the URI when the endpoint is not listening', async () => {
    const endpoint = `http://127.0.0.1:${await closedPort()}`;
    const offline = objectStoreFor('s3://data/', { ...CREDENTIALS, AWS_ENDPOINT_URL_S3: endpoint }, { maxAttempts: 1 });
    const error = await failure(offline.size('s3://data/a.csv'));
    expect(error.exitCode).toBe(3);
    expect(error.message).toBe('cannot look up s3://data/a.csv: the endpoint cannot be reached (ECONNREFUSED)');
    const unread = await failure(collect(offline.read('s3://data/a.csv')));
    expect(unread.exitCode).toBe(3);
  });

  it('takes its endpoint as the AWS SDK does', () => {
    expect(s3Endpoint({ AWS_ENDPOINT_URL: 'http://127.0.0.1:1', AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:2' })).toBe('http://127.0.0.1:2');
    expect(s3Endpoint({ AWS_ENDPOINT_URL: 'http://127.0.0.1:1' })).toBe('http://127.0.0.1:1');
    expect(s3Endpoint({ AWS_ENDPOINT_URL: 'http://127.0.0.1:1', AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'true' })).toBeUndefined();
    expect(s3Endpoint({})).toBeUndefined();
  });
});
