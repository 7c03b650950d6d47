/**
 * Request bodies, held in memory only as they arrive: a client's Content-Length
 * reserves nothing, and all bodies still arriving share one budget of bytes.
 */
import type http from 'node:http';
import { BadRequest } from '../protocol/request.js';
import { HEADER_LENGTH } from '../protocol/rest.js';
import type { RequestMemory } from './memory-budget.js';

export interface BodyLimits {
  /** Largest body one request may send (server.maxBodyBytes). */
  maxBodyBytes: number;
  /** Bytes all unfinished bodies may hold together (server.maxPendingBodyBytes). */
  budget: BodyBudget;
  /** server.memoryBudget at run time: each whole body reserves memory for its request until it is answered. */
  memory?: RequestMemory;
}

interface Reader {
  stop: (error: BadRequest) => void;
  /** Bytes received so far. */
  received: () => number;
  /** Whose body it is: an authenticated identity or a client address (fair shares are per client). */
  client: string;
  /** At shutdown: the bytes it had when last looked at, and since when (no clock read a chunk). */
  seen?: { bytes: number; at: number };
  /** Bytes received at each of the last sweeps (one a second), oldest first: the minimum rate's sliding window (from the first sweep). */
  marks?: number[];
}

/** A body still arriving when the server shuts down: no work has started for it, so it is not waited for. */
export class ShuttingDown extends BadRequest {
  constructor() {
    super('the server is shutting down; send the request again (to another replica)', 503);
  }
}

/** A body arriving slower than server.minBodyRate: dropped, so it stops holding its share of the budget. */
export class SlowBody extends BadRequest {
  constructor(received: number, seconds: number, minRate: number) {
    super(
      `the request body arrived too slowly (${received} bytes in the last ${seconds} s; server.minBodyRate is ${minRate} bytes a second): send the body without pauses, or lower server.minBodyRate`,
      408,
    );
  }
}

/** A body dropped to make room for a client holding less than its share of the budget. */
export class OverShare extends BadRequest {
  constructor(held: number, share: number) {
    super(
      `this client's bodies held ${held} bytes, over its share (${Math.floor(share)} bytes) of server.maxPendingBodyBytes while others waited; send fewer large bodies at once`,
      503,
    );
  }
}

/** How long the minimum rate is averaged over. */
export const BODY_RATE_WINDOW_MS = 10_000;
const SWEEP_MS = 1000;

/**
 * The bytes held by bodies still arriving (REST bodies and gRPC messages alike), against a cap,
 * shared fairly between clients; and those bodies, to stop them at shutdown or when they stall.
 *
 * Under the cap anyone takes what arrives. At the cap, a client holding less than its fair share
 * (the cap over the clients holding bytes) still takes: the bodies of the client holding the most
 * are dropped (503) until it fits. Before, the budget was first come first served, and nine
 * stalled uploads from one client made every other client's request 503 for 86 s (issue 34).
 */
export class BodyBudget {
  private held = 0;
  private readonly readers = new Set<Reader>();
  private sweeper: NodeJS.Timeout | undefined;

  /** `minRate`: bytes a second a body must average over BODY_RATE_WINDOW_MS; 0: no minimum. */
  constructor(
    readonly capBytes: number,
    readonly minRate = 0,
  ) {}

  /** Bytes held now. */
  get pending(): number {
    return this.held;
  }

  /**
   * Bytes `client`'s bodies hold now. Counted from the bodies, only when the budget is full: keeping a
   * sum per client cost every small request two map updates (measured in npm run bench, smallRequests).
   */
  heldBy(client: string): number {
    let held = 0;
    for (const reader of this.readers) if (reader.client === client) held += reader.received();
    return held;
  }

  /** Takes `bytes` for `client` if they fit (making room from clients over their share if need be); false when they do not (nothing is taken). */
  take(bytes: number, client = ''): boolean {
    if (this.held + bytes > this.capBytes && !this.makeRoom(bytes, client)) return false;
    this.held += bytes;
    return true;
  }

  give(bytes: number): void {
    this.held -= bytes;
  }

  /** The cap over the clients holding bytes, `client` counted. */
  private shareFor(client: string): number {
    const clients = new Set<string>([client]);
    for (const reader of this.readers) if (reader.received() > 0) clients.add(reader.client);
    return this.capBytes / clients.size;
  }

  /** Drops the bodies of whoever holds the most (over their share) until `bytes` fit for `client`; false when `client` is over its own share. */
  private makeRoom(bytes: number, client: string): boolean {
    const share = this.shareFor(client);
    if (this.heldBy(client) + bytes > share) return false;
    while (this.held + bytes > this.capBytes) {
      const byClient = new Map<string, number>();
      for (const reader of this.readers) if (reader.client !== client) byClient.set(reader.client, (byClient.get(reader.client) ?? 0) + reader.received());
      let hog: string | undefined;
      for (const [other, held] of byClient) if (held > share && (hog === undefined || held > byClient.get(hog)!)) hog = other;
      if (hog === undefined) return false;
      // Its largest body first: the fewest requests dropped for the room.
      let largest: Reader | undefined;
      for (const reader of this.readers) if (reader.client === hog && (!largest || reader.received() > largest.received())) largest = reader;
      if (!largest) return false;
      largest.stop(new OverShare(byClient.get(hog)!, share));
    }
    return true;
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

  /** Registers a body being read for `client`; returns what forgets it. */
  track(stop: (error: BadRequest) => void, received: () => number, client = ''): () => void {
    const reader: Reader = { stop, received, client };
    this.readers.add(reader);
    if (this.minRate > 0 && !this.sweeper) {
      this.sweeper = setInterval(() => this.dropSlowReaders(), SWEEP_MS);
      this.sweeper.unref();
    }
    // The sweeper stops itself once no body is being read: starting and clearing a timer for each small
    // request cost about 1 µs of the hot path.
    return () => this.readers.delete(reader);
  }

  /** Drops every body that received fewer than minRate x the window's seconds over the last window (a sliding one, a mark a second). */
  private dropSlowReaders(): void {
    if (this.readers.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      return;
    }
    const span = BODY_RATE_WINDOW_MS / SWEEP_MS;
    const seconds = BODY_RATE_WINDOW_MS / 1000;
    for (const reader of this.readers) {
      const bytes = reader.received();
      reader.marks ??= [];
      reader.marks.push(bytes);
      if (reader.marks.length <= span) continue;
      reader.marks.shift();
      const arrived = bytes - reader.marks[0];
      if (arrived < this.minRate * seconds) reader.stop(new SlowBody(arrived, seconds, this.minRate));
    }
  }

  /** A body of `declared` bytes from `client` could be taken now (for an `Expect: 100-continue` answer). */
  fits(declared: number, client = ''): boolean {
    return this.held + declared <= this.capBytes || this.heldBy(client) + declared <= this.shareFor(client);
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

const CLIENT = Symbol('client');
const INVITATION = Symbol('100-continue');
const RESERVED = Symbol('reserved');
type Tagged = http.IncomingMessage & { [CLIENT]?: string; [INVITATION]?: () => void; [RESERVED]?: () => void };

/** Gives back the memory the request's body reserved (server.memoryBudget), once it is answered. */
export function releaseRequest(req: http.IncomingMessage): void {
  (req as Tagged)[RESERVED]?.();
}

/**
 * Says whose request this is, for its share of the budget: `t:` and the token when tokens are on, else the
 * client's address as it is (the key gRPC calls use too, so one client's REST and gRPC bodies share a share).
 */
export function setClient(req: http.IncomingMessage, client: string): void {
  (req as Tagged)[CLIENT] = client;
}

function clientOf(req: http.IncomingMessage): string {
  return (req as Tagged)[CLIENT] ?? req.socket.remoteAddress ?? '';
}

/**
 * An `Expect: 100-continue` request: the invitation to send the body is given by readBody, once
 * the request has passed every check a request without it passes (route, token, limits).
 */
export function awaitContinue(req: http.IncomingMessage, invite: () => void): void {
  (req as Tagged)[INVITATION] = invite;
}

/** True while the client of an `Expect: 100-continue` request has not been invited to send its body (so it has sent none). */
export function uninvited(req: http.IncomingMessage): boolean {
  return (req as Tagged)[INVITATION] !== undefined;
}

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
  new BadRequest(
    `the server is receiving ${limits.budget.pending} bytes of other request bodies, its limit (server.maxPendingBodyBytes ${limits.budget.capBytes}); retry shortly`,
    503,
  );

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
  const client = clientOf(req);
  const declared = declaredLength(req);
  if (declared !== undefined && declared > maxBodyBytes) return Promise.reject(tooLarge(req, `${declared} bytes`, maxBodyBytes));
  const invite = (req as Tagged)[INVITATION];
  if (invite) {
    if (declared !== undefined && !budget.fits(declared, client)) return Promise.reject(overBudget(limits));
    delete (req as Tagged)[INVITATION];
    invite();
  }
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
    const untrack = budget.track(fail, () => size, client);
    const room = (needed: number, current: number) => shift + Math.max(needed, Math.min(2 * current, declared ?? Infinity));
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      const next = size + chunk.length;
      if (next > maxBodyBytes) return fail(tooLarge(req, 'over the limit', maxBodyBytes));
      if (!budget.take(chunk.length, client)) return fail(overBudget(limits));
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
      if (limits.memory) {
        try {
          (req as Tagged)[RESERVED] = limits.memory.reserve(size);
        } catch (error) {
          // What reserve throws: a BadRequest (503) that the pipeline answers.
          const refused = error as Error;
          return reject(refused);
        }
      }
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
