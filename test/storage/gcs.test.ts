/** The GCS store through the real @google-cloud/storage against a local stand-in of the JSON API (no emulator installs here). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { objectStoreFor } from '../../src/storage/index.js';
import { startGcsStandIn, type GcsStandIn } from './gcs-stand-in.js';
import { closedPort } from './stand-ins.js';
import { BIG, collect, expectMissing, failure, PART, roundTrip } from './round-trip.js';

describe('gs:// against a stand-in of the GCS JSON API', () => {
  let gcs: GcsStandIn;
  const store = () => objectStoreFor('gs://data/', { STORAGE_EMULATOR_HOST: gcs.url }, { partSize: PART, pageSize: 2 });

  beforeAll(async () => {
    gcs = await startGcsStandIn(['data']);
  });
  afterAll(async () => {
    await gcs?.close();
  });

  it('writes in resumable chunks, lists sorted across pages, reads ranges, and removes', async () => {
    await roundTrip(store(), 'gs://data/run-1/');
    const big = 'run-1/big.bin';
    // One resumable session for the 12 MiB object, filled in three chunks of at most 5 MiB, each at the offset GCS committed.
    const session = gcs.requests.filter((r) => r.method === 'POST' && r.query.get('name') === big);
    expect(session.map((r) => r.query.get('uploadType'))).toEqual(['resumable']);
    const after = gcs.requests.slice(gcs.requests.indexOf(session[0]) + 1);
    const chunks = after
      .slice(
        0,
        after.findIndex((r) => r.method === 'POST'),
      )
      .filter((r) => r.method === 'PUT');
    expect(chunks.map((r) => r.headers['content-range'])).toEqual([
      `bytes 0-${PART - 1}/*`,
      `bytes ${PART}-${2 * PART - 1}/*`,
      `bytes ${2 * PART}-${BIG - 1}/${BIG}`,
    ]);
    // Media downloads: the full one unranged (and checked against x-goog-hash), then Range headers, end inclusive.
    const downloads = gcs.requests.filter((r) => r.path === `/b/data/o/${encodeURIComponent(big)}` && r.query.get('alt') === 'media');
    expect(downloads.map((r) => r.headers.range)).toEqual([undefined, `bytes=${PART - 3}-${PART + 6}`, `bytes=${BIG - 10}-${BIG - 1}`]);
    // Three listed objects at two a page: the second request carried the first answer's pageToken.
    const lists = gcs.requests.filter((r) => r.method === 'GET' && r.path === '/b/data/o' && r.query.get('prefix') === 'run-1/rows/');
    expect(lists.slice(0, 2).map((r) => [r.query.get('maxResults'), r.query.get('pageToken')])).toEqual([
      ['2', null],
      ['2', '2'],
    ]);
    expect(gcs.buckets.get('data')!.has(big)).toBe(false);
  });

  it('names the URI and exits 2 when the bucket does not exist', async () => {
    const uri = 'gs://no-such-bucket/x.csv';
    await expectMissing(store, uri, 'the bucket no-such-bucket does not exist');
  });

  it('exits 3 naming the URI when the endpoint is not listening', async () => {
    const offline = objectStoreFor('gs://data/', { STORAGE_EMULATOR_HOST: `http://127.0.0.1:${await closedPort()}` }, { maxAttempts: 1 });
    const error = await failure(offline.size('gs://data/a.csv'));
    expect(error.exitCode).toBe(3);
    expect(error.message).toBe('cannot look up gs://data/a.csv: the endpoint cannot be reached (ECONNREFUSED)');
    expect((await failure(collect(offline.read('gs://data/a.csv')))).exitCode).toBe(3);
  });
});
