/**
 * `mlops batch` with its input and output on object storage, through each vendor's SDK against the local
 * stand-ins on 127.0.0.1 (s3rver and azurite behind a recording proxy, the GCS JSON API stand-in): the same
 * bytes as a run on local files, read by ranges, joined, and the parts removed; a missing bucket; shards run
 * apart and joined. Workers run from dist/ (npm run build).
 */
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatherBatch, runBatch, type RunBatchOptions } from '../../src/batch/run-batch.js';
import { objectStoreFor, type ObjectStore } from '../../src/storage/index.js';
import { fixture, runCli } from '../helpers.js';
import { startGcsStandIn } from '../storage/gcs-stand-in.js';
import { collect, failure, sha256 } from '../storage/round-trip.js';
import { AZURITE_ACCOUNT, azuriteConnectionString, recordingProxy, startAzurite, startS3rver } from '../storage/stand-ins.js';
import { batchRun, writeDataset } from './datasets.js';

const MODEL = fixture('breast_cancer', 'model.onnx');
const ROWS = 5_000;

/** One store's stand-in, as the tests see it. */
interface Stand {
  env: NodeJS.ProcessEnv;
  /** The URI of `key` in the stand-in's bucket (container). */
  uri: (key: string) => string;
  /** The same key in a bucket (container) that does not exist. */
  missing: (key: string) => string;
  /** The byte ranges of every GET of the object's bytes the stand-in saw ('' for an unranged one). */
  reads: (key: string) => string[];
  /** When the stand-in has seen a GET: a mark to take the ones after it. */
  seen: () => number;
  close(): Promise<void>;
}

const NAMES = ['s3', 'az', 'gs'] as const;
type Name = (typeof NAMES)[number];
const stands = {} as Record<Name, Stand>;
let dir: string;
let scratch: string;
let savedTmp: string | undefined;
/** The input CSV's header line, with its newline. */
let headerBytes: number;
const reference: { csv?: Buffer; parquet?: Buffer } = {};

async function startS3(): Promise<Stand> {
  const s3rver = await startS3rver(['data']);
  const proxy = await recordingProxy(s3rver.url);
  const env = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_S3: proxy.url };
  return {
    env,
    uri: (key) => `s3://data/${key}`,
    missing: (key) => `s3://no-such-bucket/${key}`,
    seen: () => proxy.requests.length,
    reads: (key) => proxy.requests.filter((r) => r.method === 'GET' && r.url.split('?')[0] === `/data/${key}`).map((r) => String(r.headers.range ?? '')),
    close: async () => {
      await proxy.close();
      await s3rver.close();
    },
  };
}

async function startAz(): Promise<Stand> {
  const azurite = await startAzurite();
  const proxy = await recordingProxy(azurite.url);
  const { BlobServiceClient } = await import('@azure/storage-blob');
  await BlobServiceClient.fromConnectionString(azuriteConnectionString(azurite.url)).getContainerClient('data').create();
  return {
    env: { AZURE_STORAGE_CONNECTION_STRING: azuriteConnectionString(proxy.url) },
    uri: (key) => `az://${AZURITE_ACCOUNT}/data/${key}`,
    missing: (key) => `az://${AZURITE_ACCOUNT}/no-such-container/${key}`,
    seen: () => proxy.requests.length,
    reads: (key) =>
      proxy.requests
        .filter((r) => r.method === 'GET' && r.url.split('?')[0] === `/${AZURITE_ACCOUNT}/data/${key}`)
        .map((r) => String(r.headers['x-ms-range'] ?? r.headers.range ?? '')),
    close: async () => {
      await proxy.close();
      await azurite.close();
    },
  };
}

async function startGs(): Promise<Stand> {
  const gcs = await startGcsStandIn(['data']);
  return {
    env: { STORAGE_EMULATOR_HOST: gcs.url },
    uri: (key) => `gs://data/${key}`,
    missing: (key) => `gs://no-such-bucket/${key}`,
    seen: () => gcs.requests.length,
    reads: (key) =>
      gcs.requests
        .filter((r) => r.method === 'GET' && r.path === `/b/data/o/${encodeURIComponent(key)}` && r.query.get('alt') === 'media')
        .map((r) => String(r.headers.range ?? '')),
    close: () => gcs.close(),
  };
}

const options = (input: string, output: string, env: NodeJS.ProcessEnv, more: Partial<RunBatchOptions> = {}): RunBatchOptions =>
  batchRun(dir, input, output, { env, model: { path: MODEL }, batchSize: 128, shardCount: 4, ...more });

const storeOf = (stand: Stand, uri: string) => objectStoreFor(uri, stand.env);
/** An object's bytes, or null when it is absent. */
async function objectBytes(stand: Stand, uri: string): Promise<Buffer | null> {
  if ((await storeOf(stand, uri).size(uri)) === null) return null;
  return collect(storeOf(stand, uri).read(uri));
}
const keysUnder = async (stand: Stand, prefix: string) => (await storeOf(stand, stand.uri(prefix)).list(stand.uri(prefix))).map((o) => o.uri);
const upload = (stand: Stand, file: string, key: string) => storeOf(stand, stand.uri(key)).write(stand.uri(key), createReadStream(path.join(dir, file)));
/** What the runs left in the temporary folder (staging folders of remote outputs must go). */
const leftovers = async () => (await readdir(scratch)).filter((name) => name.startsWith('mlops-'));

/** The ranges (bytes=a-b, end inclusive) that follow one another from `from` to the object's end: the shards' reads. */
function shardTiles(ranges: string[], from: number, size: number): string[] {
  const spans = ranges
    .map((r) => /^bytes=(\d+)-(\d+)$/.exec(r))
    .filter(Boolean)
    .map((m) => [Number(m![1]), Number(m![2])] as const);
  const tiles: string[] = [];
  for (let at = from; at < size;) {
    const next = spans.find(([start]) => start === at);
    if (!next) return [...tiles, `nothing from ${at}`];
    tiles.push(`bytes=${next[0]}-${next[1]}`);
    at = next[1] + 1;
  }
  return tiles;
}

/**
 * The store a run with another shard running beside it sees: that shard's record not yet there. Two
 * shards of a Job that run at once each find the other unfinished when they start, so neither joins.
 */
function hidingRecords(stand: Stand, hidden: RegExp): (uri: string) => ObjectStore {
  return (uri) => {
    const store = storeOf(stand, uri);
    return {
      list: (u) => store.list(u).then((objects) => objects.filter((o) => !hidden.test(o.uri))),
      size: (u) => (hidden.test(u) ? Promise.resolve(null) : store.size(u)),
      read: (u, range) => store.read(u, range),
      write: (u, body, type) => store.write(u, body, type),
      remove: (u) => store.remove(u),
    };
  };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'mlops-batch-stores-'));
  // The runs' own temporary folders go here, where the tests can see what is left.
  scratch = path.join(dir, 'tmp');
  await mkdir(scratch);
  await writeDataset(path.join(dir, 'in.csv'), ROWS, 'csv');
  await writeDataset(path.join(dir, 'in.parquet'), ROWS, 'parquet', 500);
  headerBytes = (await readFile(path.join(dir, 'in.csv'))).indexOf(10) + 1;
  const [s3, az, gs] = await Promise.all([startS3(), startAz(), startGs()]);
  Object.assign(stands, { s3, az, gs });
  savedTmp = process.env.TMPDIR;
  process.env.TMPDIR = scratch;
  for (const stand of [s3, az, gs]) await upload(stand, 'in.csv', 'in/rows.csv');
  await upload(s3, 'in.parquet', 'in/rows.parquet');
  for (const format of ['csv', 'parquet'] as const) {
    const local = await runBatch(options(`in.${format}`, `reference.${format}`, {}));
    expect(local).toMatchObject({ complete: true, passed: true, records: ROWS });
    reference[format] = await readFile(path.join(dir, `reference.${format}`));
  }
});

afterAll(async () => {
  if (savedTmp === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = savedTmp;
  await Promise.all(Object.values(stands).map((stand) => stand.close()));
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.each(NAMES)('mlops batch on %s:// (a stand-in on 127.0.0.1)', (name) => {
  it('scores a CSV read by byte ranges over 4 shards into the bytes a local run writes, with manifest and rejects, and removes the parts', async () => {
    const stand = stands[name];
    const before = await leftovers();
    const size = (await storeOf(stand, stand.uri('in/rows.csv')).size(stand.uri('in/rows.csv')))!;
    const output = stand.uri('runs/csv/scores.csv');

    const report = await runBatch(options(stand.uri('in/rows.csv'), output, stand.env));
    expect(report).toMatchObject({ complete: true, passed: true, records: ROWS, scored: ROWS, rejected: 0, output, format: 'csv' });
    expect(report.shards).toMatchObject({ total: 4, ran: 4, skipped: 0, done: 4, pending: [] });

    const written = await objectBytes(stand, output);
    expect(written?.equals(reference.csv!)).toBe(true);
    expect(report.written).toEqual({ bytes: reference.csv!.length, sha256: sha256(reference.csv!) });
    const manifest = JSON.parse((await objectBytes(stand, `${output}.manifest.json`))!.toString()) as {
      written: { file: string; sha256: string };
      shards: unknown[];
      totals: { records: number };
    };
    expect(manifest.written).toMatchObject({ file: output.split('/').at(-1), sha256: sha256(reference.csv!) });
    expect(manifest.shards).toHaveLength(4);
    expect(manifest.totals.records).toBe(ROWS);
    expect(report.rejects).toBe(`${output}.rejects.jsonl`);
    expect((await objectBytes(stand, `${output}.rejects.jsonl`))?.length).toBe(0);
    // Joined, the parts and shard records are gone: the output, its manifest and its rejects are all that is left.
    expect(await keysUnder(stand, 'runs/csv/')).toEqual([output, `${output}.manifest.json`, `${output}.rejects.jsonl`]);

    // Every read of the input was a ranged GET; the shards' 4 ranges tile the rows after the header, each read once.
    const ranges = stand.reads('in/rows.csv');
    expect(
      ranges.every((r) => /^bytes=\d+-\d+$/.test(r)),
      ranges.join(' '),
    ).toBe(true);
    expect(shardTiles(ranges, headerBytes, size), ranges.join(' ')).toHaveLength(4);
    expect(await leftovers()).toEqual(before);
  });

  it('exits 2 naming the URI when the bucket does not exist, and writes nothing', async () => {
    const stand = stands[name];
    const objects = await keysUnder(stand, '');
    const input = stand.missing('in/rows.csv');
    const unread = await failure(runBatch(options(input, stand.uri('runs/missing/out.csv'), stand.env)));
    expect(unread.exitCode).toBe(2);
    expect(unread.message).toContain(input);
    expect(unread.message).toMatch(/does not exist/);

    const output = stand.missing('runs/out.csv');
    const unwritten = await failure(runBatch(options(stand.uri('in/rows.csv'), output, stand.env)));
    expect(unwritten.exitCode).toBe(2);
    expect(unwritten.message).toContain(output);
    expect(unwritten.message).toMatch(/does not exist/);

    // The CLI: exit 2 and the error as the one JSON document.
    const cli = await runCli(['--json', 'batch', '--input', stand.uri('in/rows.csv'), '--output', output, '--model', MODEL, '--workers', '1'], {
      cwd: dir,
      env: stand.env,
    });
    expect(cli.code, cli.stderr).toBe(2);
    const doc = JSON.parse(cli.stdout) as { error: { message: string; exitCode: number } };
    expect(doc.error.exitCode).toBe(2);
    expect(doc.error.message).toContain(output);

    expect(await keysUnder(stand, '')).toEqual(objects);
  });

  it('--shard 0/2, then --shard 1/2 (which finds 0 done and joins), then a run without --shard: the same bytes, nothing run twice', async () => {
    const stand = stands[name];
    const output = stand.uri('runs/cli/scores.csv');
    const cli = (...more: string[]) =>
      runCli(['--json', 'batch', '--input', stand.uri('in/rows.csv'), '--output', output, '--model', MODEL, '--workers', '2', ...more], {
        cwd: dir,
        env: stand.env,
      });

    const first = await cli('--shard', '0/2');
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ complete: false, shards: { total: 2, ran: 1, done: 1, pending: [1] }, written: null });
    expect(await objectBytes(stand, output)).toBeNull();
    expect(await keysUnder(stand, 'runs/cli/scores.csv.parts/')).toEqual([
      `${output}.parts/_shards/part-00000-of-00002.json`,
      `${output}.parts/_shards/part-00000-of-00002.rejects.jsonl`,
      `${output}.parts/part-00000-of-00002.csv`,
    ]);

    const second = await cli('--shard', '1/2');
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({ complete: true, records: ROWS, shards: { total: 2, ran: 1, skipped: 0, done: 2, pending: [] } });
    expect((await objectBytes(stand, output))?.equals(reference.csv!)).toBe(true);
    expect(await keysUnder(stand, 'runs/cli/scores.csv.parts/')).toEqual([]);

    const mark = stand.seen();
    const whole = await cli();
    expect(whole.code, whole.stderr).toBe(0);
    expect(JSON.parse(whole.stdout)).toMatchObject({ complete: true, passed: true, records: ROWS, shards: { total: 2, ran: 0, skipped: 2, done: 2 } });
    expect((await objectBytes(stand, output))?.equals(reference.csv!)).toBe(true);
    expect(await keysUnder(stand, 'runs/cli/')).toEqual([output, `${output}.manifest.json`, `${output}.rejects.jsonl`]);
    expect(stand.seen()).toBeGreaterThan(mark);
  });

  it('gatherBatch joins two shards that each ran while the other was unfinished, without the model', async () => {
    const stand = stands[name];
    const input = stand.uri('in/rows.csv');
    const output = stand.uri('runs/gather/scores.csv');
    const zero = await runBatch(options(input, output, stand.env, { shardCount: 2, only: [0] }));
    expect(zero).toMatchObject({ complete: false, shards: { pending: [1] } });
    const one = await runBatch(options(input, output, stand.env, { shardCount: 2, only: [1], storeFor: hidingRecords(stand, /_shards\/part-00000-/) }));
    expect(one).toMatchObject({ complete: false, shards: { ran: 1, pending: [0] } });
    expect(await objectBytes(stand, output)).toBeNull();
    expect(await keysUnder(stand, 'runs/gather/scores.csv.parts/')).toHaveLength(6);

    const gathered = await gatherBatch({ cwd: dir, env: stand.env, input, output, maxRejectRate: 0 });
    expect(gathered).toMatchObject({ complete: true, passed: true, records: ROWS, scored: ROWS, shards: { total: 2, ran: 0, done: 2, pending: [] } });
    expect(gathered.written).toEqual({ bytes: reference.csv!.length, sha256: sha256(reference.csv!) });
    expect((await objectBytes(stand, output))?.equals(reference.csv!)).toBe(true);
    expect(await keysUnder(stand, 'runs/gather/')).toEqual([output, `${output}.manifest.json`, `${output}.rejects.jsonl`]);

    // Gathered again: already whole, nothing to do.
    const again = await gatherBatch({ cwd: dir, env: stand.env, input, output, maxRejectRate: 0 });
    expect(again).toMatchObject({ complete: true, records: ROWS, written: gathered.written });
  });
});

describe('a Parquet input and output on s3://', () => {
  it('reads row groups by ranges over 4 shards and writes the bytes a local run writes', async () => {
    const stand = stands.s3;
    const before = await leftovers();
    const output = stand.uri('runs/parquet/scores.parquet');
    const report = await runBatch(options(stand.uri('in/rows.parquet'), output, stand.env));
    expect(report).toMatchObject({ complete: true, passed: true, records: ROWS, format: 'parquet', shards: { total: 4, ran: 4 } });
    // Each of the 4 shards had rows: the cuts fell between the file's 10 row groups.
    const manifest = JSON.parse((await objectBytes(stand, `${output}.manifest.json`))!.toString()) as { shards: { records: number }[] };
    expect(manifest.shards.map((s) => s.records).every((n) => n > 0)).toBe(true);
    expect((await objectBytes(stand, output))?.equals(reference.parquet!)).toBe(true);
    expect(await keysUnder(stand, 'runs/parquet/')).toEqual([output, `${output}.manifest.json`, `${output}.rejects.jsonl`]);
    const ranges = stand.reads('in/rows.parquet');
    expect(ranges.length).toBeGreaterThanOrEqual(4);
    expect(
      ranges.every((r) => /^bytes=\d+-\d+$/.test(r)),
      ranges.join(' '),
    ).toBe(true);
    expect(await leftovers()).toEqual(before);
  });
});

describe('the temporary folders of runs with a remote output', () => {
  // Each case below leaves its mlops-batch-* staging folder in the temporary folder today (outputPlace makes
  // it before anything can fail, and only a run that scores shards removes it).
  it('are removed whatever the run ends in: refused, already whole, or a gather', async () => {
    const stand = stands.s3;
    const input = stand.uri('in/rows.csv');
    const output = stand.uri('runs/tmp/scores.csv');
    let before = await leftovers();
    await failure(runBatch(options(input, stand.missing('runs/tmp/scores.csv'), stand.env)));
    expect.soft(await leftovers(), 'an output in a bucket that does not exist').toEqual(before);

    expect(await runBatch(options(input, output, stand.env))).toMatchObject({ complete: true });
    before = await leftovers();
    expect(await runBatch(options(input, output, stand.env))).toMatchObject({ complete: true, shards: { ran: 0 } });
    expect.soft(await leftovers(), 'a finished run run again').toEqual(before);

    before = await leftovers();
    expect(await gatherBatch({ cwd: dir, env: stand.env, input, output, maxRejectRate: 0 })).toMatchObject({ complete: true });
    expect.soft(await leftovers(), 'gatherBatch').toEqual(before);
  });
});
