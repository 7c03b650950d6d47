/**
 * Request bodies, held in memory only as they arrive: a client's Content-Length
 * reserves nothing, and all bodies still arriving share one budget of bytes.
 */
import type http from 'node:http';
import { BadRequest } from '../protocol/request.js';
import { HEADER_LENGTH } from '../protocol/rest.js';

export interface BodyLimits {
  /** Largest body one request may send (server.maxBodyBytes). */
  maxBodyBytes: number;
  /** Bytes all unfinished bodies may hold together (server.maxPendingBodyBytes). */
  budget: BodyBudget;
}

interface Reader {
  stop: (error: BadRequest) => void;
  /** performance.now() of its last chunk (or its start). */
  lastData: number;
}

/** A body still arriving when the server shuts down: no work has started for it, so it is not waited for. */
export class ShuttingDown extends BadRequest {
  constructor() {
    super('the server is shutting down; send the request again (to another replica)', 503);
  }
}

/** The bytes held by bodies still arriving, against a cap; and those bodies, to stop them at shutdown. */
export class BodyBudget {
  private held = 0;
  private readonly readers = new Set<Reader>();

  constructor(readonly capBytes: number) {}

  /** Bytes held now. */
  get pending(): number {
    return this.held;
  }

  /** Takes `bytes` if they fit under the cap; false when they do not (nothing is taken). */
  take(bytes: number): boolean {
    if (this.held + bytes > this.capBytes) return false;
    this.held += bytes;
    return true;
  }

  give(bytes: number): void {
    this.held -= bytes;
  }

  /**
   * At shutdown: fails with ShuttingDown every body still arriving that has sent nothing for
   * `idleMs`, now and until none is left; bodies that keep arriving finish. Without this a
   * shutdown waited the whole server.shutdownTimeoutMs for clients that declared a body and never
   * sent it (issue 22).
   */
  stopIdleReaders(idleMs: number): void {
    const sweep = () => {
      const now = performance.now();
      for (const reader of this.readers) if (now - reader.lastData >= idleMs) reader.stop(new ShuttingDown());
      if (this.readers.size === 0) clearInterval(timer);
    };
    const timer = setInterval(sweep, Math.max(10, idleMs / 4));
    timer.unref();
    sweep();
  }

  /** @internal for readBody: returns what marks a chunk's arrival, and what forgets the reader. */
  track(stop: (error: BadRequest) => void): { arrived: () => void; untrack: () => void } {
    const reader: Reader = { stop, lastData: performance.now() };
    this.readers.add(reader);
    return { arrived: () => (reader.lastData = performance.now()), untrack: () => this.readers.delete(reader) };
  }

  /** A body of `declared` bytes could be taken now (for an `Expect: 100-continue` answer). */
  fits(declared: number): boolean {
    return this.held + declared <= this.capBytes;
  }
}

/**
 * Bodies this large end up in one buffer of their own, which can move to a
 * worker thread, placed so that the binary data after a JSON header of
 * `alignAfter` bytes starts 8-byte aligned: typed arrays then view the tensor
 * bytes where they are instead of copying them.
 */
const OWN_BUFFER_BYTES = 16 * 1024;
/** The buffers of bodies that are theirs alone (see OWN_BUFFER_BYTES). */
export const OWNED = new WeakSet<ArrayBufferLike>();

/** The declared Content-Length, when it is one. */
export function declaredLength(req: http.IncomingMessage): number | undefined {
  const value = req.headers['content-length'];
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}

/** 413 for a body over the per-request limit, with a hint that fits what the client already does. */
export function tooLarge(req: http.IncomingMessage, size: string, limit: number): BadRequest {
  const binary = req.headers[HEADER_LENGTH] !== undefined || /octet-stream|binary/.test(req.headers['content-type'] ?? '');
  const hint = binary
    ? 'send fewer rows per request, or raise server.maxBodyBytes (MLOPS_MAX_BODY_BYTES)'
    : 'send large tensors as binary data (Inference-Header-Content-Length) or over gRPC, which carry them in a third of the bytes, or raise server.maxBodyBytes';
  return new BadRequest(`request body is ${size}; the limit is ${limit} bytes (server.maxBodyBytes): ${hint}`, 413);
}

/** 503 when the bodies already arriving hold the whole budget: the client should retry shortly. */
export const overBudget = (limits: BodyLimits) =>
  new BadRequest(`the server is receiving ${limits.budget.pending} bytes of other request bodies, its limit (server.maxPendingBodyBytes ${limits.budget.capBytes}); retry shortly`, 503);

/**
 * Reads a body chunk by chunk, each counted against the budget as it arrives, and joins them
 * once at the end. Before, a buffer of the declared Content-Length was allocated up front:
 * 1,000 connections that declared 16 MiB and sent nothing took the virtual size from 4.7 to
 * 16.7 GB (issue 22).
 */
export function readBody(req: http.IncomingMessage, limits: BodyLimits, alignAfter = 0): Promise<Buffer> {
  const { maxBodyBytes, budget } = limits;
  const declared = declaredLength(req);
  if (declared !== undefined && declared > maxBodyBytes) return Promise.reject(tooLarge(req, `${declared} bytes`, maxBodyBytes));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const fail = (error: BadRequest) => {
      if (done) return;
      done = true;
      untrack();
      budget.give(size);
      chunks.length = 0;
      reject(error);
    };
    const { arrived, untrack } = budget.track(fail);
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      if (size + chunk.length > maxBodyBytes) return fail(tooLarge(req, 'over the limit', maxBodyBytes));
      if (!budget.take(chunk.length)) return fail(overBudget(limits));
      chunks.push(chunk);
      size += chunk.length;
      arrived();
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      untrack();
      budget.give(size);
      resolve(join(chunks, size, alignAfter));
    });
    req.on('error', (error) => fail(new BadRequest(`could not read the request body: ${error.message}`)));
    // A client that goes away mid-body releases what it held.
    req.on('close', () => fail(new BadRequest('the client closed the connection before its body ended')));
  });
}

/** The chunks as one buffer: a large body gets a buffer of its own, aligned for its binary data. */
function join(chunks: Buffer[], size: number, alignAfter: number): Buffer {
  if (size < OWN_BUFFER_BYTES) return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
  const shift = (8 - (alignAfter % 8)) % 8;
  const whole = Buffer.allocUnsafeSlow(size + shift);
  let offset = shift;
  for (const chunk of chunks) {
    chunk.copy(whole, offset);
    offset += chunk.length;
  }
  OWNED.add(whole.buffer);
  return whole.subarray(shift);
}
