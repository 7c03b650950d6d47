/** The Azure Blob store through the real @azure/storage-blob against azurite on 127.0.0.1, with a recording proxy between them. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { azureBlobEndpoint } from '../../src/storage/azure-blob.js';
import { objectStoreFor } from '../../src/storage/index.js';
import { AZURITE_ACCOUNT, azuriteConnectionString, closedPort, recordingProxy, startAzurite, type Running, type SeenRequest } from './stand-ins.js';
import { BIG, collect, expectMissing, failure, PART, roundTrip } from './round-trip.js';

const BASE = `az://${AZURITE_ACCOUNT}/data/run-1/`;

describe('az:// against azurite', () => {
  let azurite: Running;
  let proxy: Running & { requests: SeenRequest[] };
  const env = () => ({ AZURE_STORAGE_CONNECTION_STRING: azuriteConnectionString(proxy.url) });
  const store = () => objectStoreFor(BASE, env(), { partSize: PART, pageSize: 2 });

  beforeAll(async () => {
    azurite = await startAzurite();
    proxy = await recordingProxy(azurite.url);
    const { BlobServiceClient } = await import('@azure/storage-blob');
    await BlobServiceClient.fromConnectionString(azuriteConnectionString(azurite.url)).getContainerClient('data').create();
  });
  afterAll(async () => {
    await proxy?.close();
    await azurite?.close();
  });

  it('writes in blocks, lists sorted across pages, reads ranges, and removes', async () => {
    await roundTrip(store(), BASE);
    const big = proxy.requests.filter((r) => r.url.startsWith(`/${AZURITE_ACCOUNT}/data/run-1/big.bin`));
    // The 12 MiB object went up as three staged blocks and one block list.
    expect(big.filter((r) => r.method === 'PUT' && r.url.includes('comp=block&'))).toHaveLength(3);
    expect(big.filter((r) => r.method === 'PUT' && r.url.includes('comp=blocklist'))).toHaveLength(1);
    // Ranged GETs, end inclusive on the wire.
    const ranges = big.filter((r) => r.method === 'GET').map((r) => r.headers['x-ms-range']);
    expect(ranges).toEqual([undefined, `bytes=${PART - 3}-${PART + 6}`, `bytes=${BIG - 10}-${BIG - 1}`]);
    // Three listed objects at two a page: the listing followed a marker.
    const lists = proxy.requests.filter((r) => r.method === 'GET' && r.url.includes('comp=list') && r.url.includes('prefix=run-1%2Frows%2F'));
    expect(lists.some((r) => /[?&]marker=./.test(r.url))).toBe(true);
  });

  it('names the URI and exits 2 when the container does not exist', async () => {
    const uri = `az://${AZURITE_ACCOUNT}/no-such-container/x.csv`;
    await expectMissing(store, uri, `the container no-such-container does not exist in the account ${AZURITE_ACCOUNT}`);
  });

  it('exits 2 naming the URI when the key is refused, or the connection string is for another account', async () => {
    const wrongKey = azuriteConnectionString(azurite.url).replace(/AccountKey=[^;]+/, `AccountKey=${Buffer.from('not the key').toString('base64')}`);
    const refused = await failure(objectStoreFor(BASE, { AZURE_STORAGE_CONNECTION_STRING: wrongKey }).size(`${BASE}rows/a.csv`));
    expect(refused.exitCode).toBe(2);
    expect(refused.message).toMatch(/^cannot look up az:\/\/devstoreaccount1\/data\/run-1\/rows\/a\.csv: access denied \(403 AuthorizationFailure/);

    const other = 'az://otheraccount/data/a.csv';
    const mismatch = await failure(objectStoreFor(other, env()).size(other));
    expect(mismatch.exitCode).toBe(2);
    expect(mismatch.message).toBe(`cannot look up ${other}: AZURE_STORAGE_CONNECTION_STRING is for the account ${AZURITE_ACCOUNT}, the URI names otheraccount`);
  });

  it('exits 3 naming the URI when the endpoint is not listening', async () => {
    const offline = objectStoreFor(
      BASE,
      { AZURE_STORAGE_CONNECTION_STRING: azuriteConnectionString(`http://127.0.0.1:${await closedPort()}`) },
      { maxAttempts: 1 },
    );
    const error = await failure(offline.size(`${BASE}a.csv`));
    expect(error.exitCode).toBe(3);
    expect(error.message).toBe(`cannot look up ${BASE}a.csv: the endpoint cannot be reached (ECONNREFUSED)`);
    expect((await failure(collect(offline.read(`${BASE}a.csv`)))).exitCode).toBe(3);
  });

  it('takes the service URL from MLOPS_AZURE_BLOB_ENDPOINT, with {account} for the account', () => {
    expect(azureBlobEndpoint('acct', {})).toBe('https://acct.blob.core.windows.net');
    expect(azureBlobEndpoint('acct', { MLOPS_AZURE_BLOB_ENDPOINT: 'https://{account}.blob.core.usgovcloudapi.net' })).toBe(
      'https://acct.blob.core.usgovcloudapi.net',
    );
  });
});
