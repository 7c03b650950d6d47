/** The round trip every store passes against its stand-in, and the bytes it writes. */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { expect } from 'vitest';
import { isMlopsError, type MlopsError } from '../../src/errors.js';
import type { ObjectStore } from '../../src/storage/object-store.js';

export const MiB = 1024 * 1024;
/** The part size the tests give the stores: 5 MiB, S3's smallest. */
export const PART = 5 * MiB;
export const BIG = 12 * MiB;

/** Byte i of the test object: varies within and across parts, so a misplaced range shows. */
const byteAt = (i: number) => (i * 31 + (i >>> 13)) & 0xff;

export function pattern(start: number, end: number): Buffer {
  const out = Buffer.alloc(end - start);
  for (let i = start; i < end; i++) out[i - start] = byteAt(i);
  return out;
}

/** `size` bytes of the pattern as a stream of 1 MiB chunks, made as they are read. */
export function patternStream(size: number): Readable {
  return Readable.from(
    (function* () {
      for (let at = 0; at < size; at += MiB) yield pattern(at, Math.min(at + MiB, size));
    })(),
  );
}

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

export async function collect(stream: Readable): Promise<Buffer> {
  return Buffer.concat((await stream.toArray()) as Buffer[]);
}

/** The MlopsError a promise rejects with; fails the test on anything else. */
export async function failure(promise: Promise<unknown>): Promise<MlopsError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isMlopsError(error)) throw new Error(`expected an MlopsError, got ${error instanceof Error ? error.stack : String(error)}`);
  expect(error.message.split('\n')).toHaveLength(1);
  expect(error.hint).toBeTruthy();
  return error;
}

/**
 * Under `base` (a prefix URI ending in /): a streamed write of BIG bytes in several parts, its size, a
 * listing (sorted, a sibling prefix left out), full and ranged reads (one across a part boundary), a
 * missing object's size and read, and remove (twice: the second finds nothing and is no error).
 */
export async function roundTrip(store: ObjectStore, base: string): Promise<void> {
  const big = `${base}big.bin`;
  await store.write(big, patternStream(BIG), 'application/octet-stream');
  expect(await store.size(big)).toBe(BIG);

  for (const [name, text] of [
    ['rows/b.csv', 'id\n2\n'],
    ['rows/a.csv', 'id\n1\n'],
    ['rows/c/d.csv', 'id\n3\n4\n'],
    ['rows-other.csv', 'not listed\n'],
  ])
    await store.write(`${base}${name}`, Buffer.from(text), 'text/csv');
  expect(await store.list(`${base}rows/`)).toEqual([
    { uri: `${base}rows/a.csv`, size: 5 },
    { uri: `${base}rows/b.csv`, size: 5 },
    { uri: `${base}rows/c/d.csv`, size: 7 },
  ]);
  expect(await store.list(`${base}rows/a.csv`)).toEqual([{ uri: `${base}rows/a.csv`, size: 5 }]);
  expect((await collect(store.read(`${base}rows/c/d.csv`))).toString()).toBe('id\n3\n4\n');

  expect(sha256(await collect(store.read(big)))).toBe(sha256(pattern(0, BIG)));
  const across = { start: PART - 3, end: PART + 7 };
  expect(await collect(store.read(big, across))).toEqual(pattern(across.start, across.end));
  expect(await collect(store.read(big, { start: BIG - 10, end: BIG }))).toEqual(pattern(BIG - 10, BIG));
  expect(await collect(store.read(big, { start: 100, end: 100 }))).toHaveLength(0);

  const missing = `${base}no-such-object.csv`;
  expect(await store.size(missing)).toBeNull();
  const unread = await failure(collect(store.read(missing)));
  expect(unread.exitCode).toBe(2);
  expect(unread.message).toBe(`cannot read ${missing}: no such object`);

  await store.remove(big);
  expect(await store.size(big)).toBeNull();
  await store.remove(big);
  expect((await store.list(base)).map((o) => o.uri)).not.toContain(big);
}

/** Every operation on a URI whose bucket (or container) is missing: exit 2, the operation, the URI and `reason` named. */
export async function expectMissing(store: () => ObjectStore, uri: string, reason: string): Promise<void> {
  for (const [operation, attempt] of [
    ['look up', () => store().size(uri)],
    ['list', () => store().list(uri)],
    ['read', () => collect(store().read(uri))],
    ['write', () => store().write(uri, Buffer.from('x'))],
    ['remove', () => store().remove(uri)],
  ] as const) {
    const error = await failure(attempt());
    expect(error.exitCode, operation).toBe(2);
    expect(error.message, operation).toBe(`cannot ${operation} ${uri}: ${reason}`);
  }
}
