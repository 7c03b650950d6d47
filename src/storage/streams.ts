import { Readable } from 'node:stream';
import { inputError } from '../errors.js';

export type ByteRange = { start: number; end: number };

/**
 * A stream of an object whose download starts on the first read: read() answers at once, and a failure to
 * open or to go on (a missing object, a dropped connection) is emitted as `failure(error)`, never as the
 * SDK's own error. Backpressure is the consumer's: the download is pulled chunk by chunk, and destroying the
 * stream ends the download.
 */
export function lazyReadable(open: () => Promise<AsyncIterable<Uint8Array>>, failure: (error: unknown) => Error): Readable {
  async function* chunks(): AsyncGenerator<Uint8Array> {
    try {
      for await (const chunk of await open()) yield chunk;
    } catch (error) {
      throw failure(error);
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}

/** Checks a range [start, end) as read() takes it: integers, 0 <= start <= end. */
export function checkRange(uri: string, range: ByteRange | undefined): void {
  if (!range) return;
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start)
    throw inputError(`cannot read ${uri}: bytes [${start}, ${end}) is not a range`, 'give integers with 0 <= start <= end (end exclusive)');
}

/**
 * Watches a body for its own failure, so that a write reports the producer's error (a row the scorer
 * rejected) as it was, not as a storage failure.
 */
export function bodyFailure(body: Readable | Buffer): () => unknown {
  let failed: unknown;
  if (!Buffer.isBuffer(body)) body.on('error', (error) => (failed = error));
  return () => failed;
}
