/**
 * Bearer tokens for the server, over REST and gRPC alike. Tokens are held as their SHA-256
 * digests only (a token file may hold them that way too, `sha256:<hex>`), compared in constant
 * time, never logged. The token file is re-read when it changes, as a mounted Kubernetes Secret
 * changes in place; a new file that is not valid keeps the tokens in use and says why.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { inputError } from '../errors.js';
import { BadRequest } from '../protocol/request.js';

export interface AuthOptions {
  /** A file of tokens, one a line (or `sha256:<hex>`); '' for none. */
  tokenFile: string;
  /** Tokens given directly (MLOPS_AUTH_TOKENS, comma-separated). */
  tokens: string[];
  /** /metrics asks for a token too. */
  metrics: boolean;
  /** The header a trusted proxy sets to the client's address (X-Forwarded-For); '' trusts the socket only. */
  clientAddressHeader: string;
  /** How often the token file is looked at for a change. */
  reloadIntervalMs: number;
}

const digest = (token: string) => createHash('sha256').update(token).digest();

/** The digests a token file's text holds; a one-line error naming the line when it holds none or a bad one. */
export function parseTokenFile(text: string, file: string): Buffer[] {
  const digests: Buffer[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (line.startsWith('sha256:')) {
      const hex = line.slice('sha256:'.length);
      if (!/^[0-9a-f]{64}$/i.test(hex)) throw inputError(`${file} line ${i + 1}: a sha256: line needs 64 hex digits`, 'write `sha256:` and the hex digest of the token, e.g. printf %s "$TOKEN" | sha256sum');
      digests.push(Buffer.from(hex, 'hex'));
      return;
    }
    if (/\s/.test(line)) throw inputError(`${file} line ${i + 1}: a token may not contain spaces`, 'one token a line');
    if (line.length < 16) throw inputError(`${file} line ${i + 1}: a token of ${line.length} characters is too short to guess-proof (at least 16)`, 'make one with: openssl rand -hex 32');
    digests.push(digest(line));
  });
  if (digests.length === 0) throw inputError(`${file} holds no token`, 'one token (or sha256:<hex>) a line; # starts a comment');
  return digests;
}

export class TokenSet {
  private digests: Buffer[];
  /**
   * Tokens already accepted, so a client's next request skips the SHA-256 (3.8 µs a request at
   * concurrency 32 without it, 12% of the server's CPU: npm run bench, security part). Only accepted
   * tokens enter, so it holds at most the valid ones; a lookup hashes the whole string and compares
   * only on an equal hash, so its time says nothing of how near a wrong token came. Emptied on reload.
   */
  private accepted = new Set<string>();
  private readonly fromEnv: Buffer[];

  private constructor(
    private readonly options: AuthOptions,
    private readonly log: (line: string) => void,
  ) {
    this.fromEnv = options.tokens.map((t) => digest(t));
    this.digests = [...this.fromEnv, ...(options.tokenFile ? parseTokenFile(readTokenFile(options.tokenFile), options.tokenFile) : [])];
  }

  /** Tokens from the file and the environment; undefined when neither gives any (auth off). */
  static load(options: AuthOptions, log: (line: string) => void): TokenSet | undefined {
    if (!options.tokenFile && options.tokens.length === 0) return undefined;
    const set = new TokenSet(options, log);
    if (options.tokenFile) set.watch();
    return set;
  }

  get count(): number {
    return this.digests.length;
  }

  /**
   * True when `token` is one of the tokens. Every digest is compared, each in constant time, so the
   * time taken says nothing of which token nearly matched.
   */
  accepts(token: string): boolean {
    if (this.accepted.has(token)) return true;
    const presented = digest(token);
    let found = false;
    for (const d of this.digests) found = timingSafeEqual(d, presented) || found;
    if (found && this.accepted.size < 1000) this.accepted.add(token);
    return found;
  }

  close(): void {
    if (this.options.tokenFile) unwatchFile(this.options.tokenFile);
  }

  private watch(): void {
    const file = this.options.tokenFile;
    // Polling, not fs.watch: a mounted Secret changes by swapping a symlink, which inotify on the file misses.
    watchFile(file, { interval: this.options.reloadIntervalMs, persistent: false }, (now, before) => {
      if (now.mtimeMs === before.mtimeMs && now.size === before.size && now.ino === before.ino) return;
      try {
        this.digests = [...this.fromEnv, ...parseTokenFile(readTokenFile(file), file)];
        // A token taken out must stop working at once.
        this.accepted = new Set();
        this.log(`auth: ${file} changed: ${this.digests.length} token(s) accepted now`);
      } catch (error) {
        this.log(`auth: ${file} changed but is not usable, so the tokens in use stay: ${(error as Error).message}`);
      }
    });
  }
}

function readTokenFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw inputError(`cannot read the token file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, 'check server.auth.tokenFile (MLOPS_AUTH_TOKEN_FILE) and that the file is mounted');
  }
}

/** The token of an `Authorization: Bearer <token>` value; undefined when there is none. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header || header.length < 8) return undefined;
  // The usual form without a regular expression; anything else (case, spacing) through the full rule.
  if (header.startsWith('Bearer ') && header.indexOf(' ', 7) === -1) return header.slice(7);
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

export type AuthFailure = 'missing' | 'invalid' | 'locked';

/**
 * Slows, then refuses for a while, a client address that keeps failing: from `slowAfter` failures
 * within the window its answers wait, from `lockAfter` it gets 429 until `lockSeconds` have passed.
 * At most `maxAddresses` are remembered, the least recently failing forgotten first, so a flood of
 * distinct addresses costs a bounded amount of memory.
 */
export class FailureTracker {
  private readonly byAddress = new Map<string, { failures: number; first: number; lockedUntil: number }>();

  constructor(
    readonly slowAfter = 5,
    readonly lockAfter = 20,
    readonly windowMs = 60_000,
    readonly lockSeconds = 60,
    readonly maxAddresses = 10_000,
  ) {}

  get size(): number {
    return this.byAddress.size;
  }

  /** Seconds the address is still locked out for; 0 when it is not. */
  lockedFor(address: string, now = Date.now()): number {
    const entry = this.byAddress.get(address);
    return entry && entry.lockedUntil > now ? Math.ceil((entry.lockedUntil - now) / 1000) : 0;
  }

  /** Records a failure; returns how long its answer should wait (ms), 0 for at once. */
  fail(address: string, now = Date.now()): number {
    let entry = this.byAddress.get(address);
    if (!entry || now - entry.first > this.windowMs) entry = { failures: 0, first: now, lockedUntil: 0 };
    entry.failures++;
    if (entry.failures >= this.lockAfter) entry.lockedUntil = now + this.lockSeconds * 1000;
    // Re-inserted, so the Map's order is least recently failing first.
    this.byAddress.delete(address);
    this.byAddress.set(address, entry);
    if (this.byAddress.size > this.maxAddresses) this.byAddress.delete(this.byAddress.keys().next().value!);
    return entry.failures >= this.slowAfter ? Math.min(1000, 50 * (entry.failures - this.slowAfter + 1)) : 0;
  }

  /** A success forgets the address's failures. */
  succeed(address: string): void {
    if (this.byAddress.size > 0) this.byAddress.delete(address);
  }
}

export type AccessVerdict = { ok: true } | { ok: false; reason: AuthFailure; retryAfterSeconds: number; delayMs: number };

/** The server's gate: the tokens, the failures by address, and the count of failures by reason. */
export class AccessControl {
  readonly failures = new FailureTracker();

  constructor(
    readonly tokens: TokenSet,
    readonly options: Pick<AuthOptions, 'metrics' | 'clientAddressHeader'>,
    private readonly counted: (reason: AuthFailure) => void,
  ) {}

  /** Judges one request's token (undefined: none sent) from a client address. */
  verify(token: string | undefined, address: string): AccessVerdict {
    const locked = this.failures.lockedFor(address);
    if (locked > 0) {
      this.counted('locked');
      return { ok: false, reason: 'locked', retryAfterSeconds: locked, delayMs: 0 };
    }
    if (token !== undefined && this.tokens.accepts(token)) {
      this.failures.succeed(address);
      return { ok: true };
    }
    const reason: AuthFailure = token === undefined ? 'missing' : 'invalid';
    this.counted(reason);
    const delayMs = this.failures.fail(address);
    return { ok: false, reason, retryAfterSeconds: this.failures.lockedFor(address), delayMs };
  }

  /** An HTTP request's bearer token, from its client's address, judged. */
  verifyHttp(req: IncomingMessage): AccessVerdict {
    return this.verify(bearerToken(req.headers.authorization), this.clientAddress(req.socket.remoteAddress, req.headers[this.options.clientAddressHeader]));
  }

  /** The client's address: the socket's, or the last entry a trusted proxy appended to the configured header. */
  clientAddress(socketAddress: string | undefined, header: string | string[] | undefined): string {
    if (this.options.clientAddressHeader && header) {
      const value = Array.isArray(header) ? header.join(',') : header;
      const last = value.split(',').pop()?.trim();
      if (last) return last.slice(0, 64);
    }
    return socketAddress ?? 'unknown';
  }

  close(): void {
    this.tokens.close();
  }
}

/** What a refused client is told: nothing about which tokens exist. */
export const AUTH_MESSAGES: Record<AuthFailure, string> = {
  missing: 'this server requires a bearer token (Authorization: Bearer <token>)',
  invalid: 'the bearer token was not accepted',
  locked: 'too many failed attempts from this address; try again later',
};

/** What a refused request is answered: 429 with Retry-After while its address is locked out, else 401 with the Bearer challenge (gRPC maps both). */
export function accessRefusal(verdict: Extract<AccessVerdict, { ok: false }>): { error: BadRequest; headers: Record<string, string> } {
  const locked = verdict.retryAfterSeconds > 0;
  return {
    error: new BadRequest(AUTH_MESSAGES[verdict.reason], locked ? 429 : 401),
    headers: locked ? { 'retry-after': String(verdict.retryAfterSeconds) } : { 'www-authenticate': 'Bearer realm="mlops"' },
  };
}
