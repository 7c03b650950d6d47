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
  /** Bytes received so far. */
  received: () => number;
  /** At shutdown: the bytes it had when last looked at, and since when (no clock read a chunk). */
  seen?: { bytes: number; at: number };
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
      for (const reader of this.readers) {
        const bytes = reader.received();
        if (!reader.seen || reader.seen.bytes !== bytes) reader.seen = { bytes, at: now };
        else if (now - reader.seen.at >= idleMs) reader.stop(new ShuttingDown());
      }
      if (this.readers.size === 0) clearInterval(timer);
    };
    const timer = setInterval(sweep, Math.max(10, idleMs / 4));
    timer.unref();
    sweep();
  }

  /** @internal for readBody: registers a body being read; returns what forgets it. */
  track(stop: (error: BadRequest) => void, received: () => number): () => void {
    const reader: Reader = { stop, received };
    this.readers.add(reader);
    return () => this.readers.delete(reader);
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
 * Reads a body as it arrives, each chunk counted against the budget. Before, a buffer of the
 * declared Content-Length was allocated up front: 1,000 connections that declared 16 MiB and
 * sent nothing took the virtual size from 4.7 to 16.7 GB (issue 22). A small body keeps its
 * chunks and joins them once; a large one is copied into a buffer that doubles as bytes arrive
 * (never past the declared length when the client is honest, so the last one is exactly the
 * body's): holding the socket's 64 KiB chunks until the end instead left 170 MiB more resident
 * after a burst of 16 bodies of 16 MiB (measured in npm run bench, bodyBurst), where the socket's
 * chunks that die young and a few large buffers go back to the system.
 */
export function readBody(req: http.IncomingMessage, limits: BodyLimits, alignAfter = 0): Promise<Buffer> {
  const { maxBodyBytes, budget } = limits;
  const declared = declaredLength(req);
  if (declared !== undefined && declared > maxBodyBytes) return Promise.reject(tooLarge(req, `${declared} bytes`, maxBodyBytes));
  // The binary data after a JSON header of `alignAfter` bytes starts 8-byte aligned in a large body's buffer.
  const shift = (8 - (alignAfter % 8)) % 8;
  return new Promise((resolve, reject) => {
    let chunks: Buffer[] = [];
    let whole: Buffer | undefined;
    let size = 0;
    let done = false;
    const fail = (error: BadRequest) => {
      if (done) return;
      done = true;
      untrack();
      budget.give(size);
      chunks = [];
      whole = undefined;
      reject(error);
    };
    const untrack = budget.track(fail, () => size);
    const room = (needed: number, current: number) => shift + Math.max(needed, Math.min(2 * current, declared ?? Infinity));
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      const next = size + chunk.length;
      if (next > maxBodyBytes) return fail(tooLarge(req, 'over the limit', maxBodyBytes));
      if (!budget.take(chunk.length)) return fail(overBudget(limits));
      if (!whole && next < OWN_BUFFER_BYTES) {
        chunks.push(chunk);
        size = next;
        return;
      }
      if (!whole || shift + next > whole.length) {
        const grown = Buffer.allocUnsafeSlow(room(next, whole ? whole.length - shift : OWN_BUFFER_BYTES));
        if (whole) whole.copy(grown, 0, 0, shift + size);
        else for (let i = 0, at = shift; i < chunks.length; at += chunks[i].length, i++) chunks[i].copy(grown, at);
        chunks = [];
        whole = grown;
      }
      chunk.copy(whole, shift + size);
      size = next;
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      untrack();
      budget.give(size);
      if (whole) {
        OWNED.add(whole.buffer);
        resolve(whole.subarray(shift, shift + size));
      } else resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
    req.on('error', (error) => {
      if (!done) fail(new BadRequest(`could not read the request body: ${error.message}`));
    });
    // A client that goes away mid-body releases what it held. 'close' follows every request: the error is
    // made only when needed (an Error captures a stack: 9% of the server's CPU when it was made each time).
    req.on('close', () => {
      if (!done) fail(new BadRequest('the client closed the connection before its body ended'));
    });
  });
}
