/**
 * Bearer tokens for the server, over REST and gRPC alike. Tokens are held as their SHA-256
 * digests only (a token file may hold them that way too, `sha256:<hex>`), compared in constant
 * time, never logged. The token file is re-read when it changes, as a mounted Kubernetes Secret
 * changes in place; a new file that is not valid keeps the tokens in use and says why.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { BlockList, isIP } from 'node:net';
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
      if (!/^[0-9a-f]{64}$/i.test(hex))
        throw inputError(
          `${file} line ${i + 1}: a sha256: line needs 64 hex digits`,
          'write `sha256:` and the hex digest of the token, e.g. printf %s "$TOKEN" | sha256sum',
        );
      digests.push(Buffer.from(hex, 'hex'));
      return;
    }
    if (/\s/.test(line)) throw inputError(`${file} line ${i + 1}: a token may not contain spaces`, 'one token a line');
    if (line.length < 16)
      throw inputError(
        `${file} line ${i + 1}: a token of ${line.length} characters is too short to guess-proof (at least 16)`,
        'make one with: openssl rand -hex 32',
      );
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
    throw inputError(
      `cannot read the token file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      'check server.auth.tokenFile (MLOPS_AUTH_TOKEN_FILE) and that the file is mounted',
    );
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

/**
 * The server's gate: the tokens, failures counted per source address and per presented credential,
 * and the count of failures by reason. A valid token is always accepted, whatever others did from
 * the same address: behind a NAT, an ingress or a sidecar every client shares one address, and a
 * lock-out by address alone let one attacker lock everyone out (issue 34). Only failing requests
 * are slowed, then refused with 429 for a while.
 */
export class AccessControl {
  readonly failures = new FailureTracker();
  /** Wrong tokens by their digest: one credential tried from many addresses is locked out too. */
  readonly credentialFailures = new FailureTracker();

  constructor(
    readonly tokens: TokenSet,
    readonly options: Pick<AuthOptions, 'metrics'>,
    readonly proxies: TrustedProxies,
    private readonly counted: (reason: AuthFailure) => void,
  ) {}

  /** Judges one request's token (undefined: none sent) from a client address. */
  verify(token: string | undefined, address: string): AccessVerdict {
    if (token !== undefined && this.tokens.accepts(token)) return { ok: true };
    const credential = token === undefined ? undefined : digest(token).toString('base64');
    const locked = Math.max(this.failures.lockedFor(address), credential ? this.credentialFailures.lockedFor(credential) : 0);
    if (locked > 0) {
      this.counted('locked');
      return { ok: false, reason: 'locked', retryAfterSeconds: locked, delayMs: 0 };
    }
    const reason: AuthFailure = token === undefined ? 'missing' : 'invalid';
    this.counted(reason);
    const delayMs = Math.max(this.failures.fail(address), credential ? this.credentialFailures.fail(credential) : 0);
    return {
      ok: false,
      reason,
      retryAfterSeconds: Math.max(this.failures.lockedFor(address), credential ? this.credentialFailures.lockedFor(credential) : 0),
      delayMs,
    };
  }

  /** An HTTP request's bearer token, from its client's address, judged. */
  verifyHttp(req: IncomingMessage): AccessVerdict {
    return this.verify(bearerToken(req.headers.authorization), this.proxies.clientOf(req.socket.remoteAddress, req.headers));
  }

  close(): void {
    this.tokens.close();
  }
}

/**
 * The client's address: the socket's, unless the socket is a proxy listed in server.trustedProxies;
 * then the address that proxy saw, from `X-Forwarded-For` (or the header named in
 * server.auth.clientAddressHeader) or `Forwarded: for=`, read from the right and skipping proxies
 * that are themselves trusted. A header from anyone else is ignored: it is the client's to forge.
 */
export class TrustedProxies {
  private readonly list = new BlockList();
  readonly count: number;

  private readonly header: string;

  constructor(entries: string[], header = '') {
    this.header = header.toLowerCase() || 'x-forwarded-for';
    for (const entry of entries) addProxy(this.list, entry);
    this.count = entries.length;
  }

  trusts(address: string | undefined): boolean {
    if (this.count === 0 || !address) return false;
    const plain = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
    const family = isIP(plain);
    return family !== 0 && this.list.check(plain, family === 4 ? 'ipv4' : 'ipv6');
  }

  clientOf(socketAddress: string | undefined, headers: Record<string, string | string[] | undefined>): string {
    if (!this.trusts(socketAddress)) return socketAddress ?? 'unknown';
    const hops = forwardedHops(headers[this.header], headers.forwarded);
    for (let i = hops.length - 1; i >= 0; i--) if (!this.trusts(hops[i])) return hops[i].slice(0, 64);
    return hops[0]?.slice(0, 64) ?? socketAddress ?? 'unknown';
  }
}

function addProxy(list: BlockList, entry: string): void {
  const [address, bits] = entry.trim().split('/');
  const family = isIP(address);
  if (family === 0)
    throw inputError(
      `server.trustedProxies: '${entry}' is not an IP address or CIDR range`,
      'list proxy addresses or CIDR ranges, like "127.0.0.1" or "fd00::/8"',
    );
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (bits === undefined) list.addAddress(address, type);
  else {
    const prefix = Number(bits);
    if (!/^\d+$/.test(bits) || prefix > (family === 4 ? 32 : 128))
      throw inputError(
        `server.trustedProxies: '${entry}' has a bad prefix length`,
        'write a CIDR range like "fd00::/8" (a prefix of at most 32 bits for IPv4, 128 for IPv6)',
      );
    list.addSubnet(address, prefix, type);
  }
}

/** The addresses an X-Forwarded-For (or Forwarded) header lists, client first. */
function forwardedHops(xff: string | string[] | undefined, forwarded: string | string[] | undefined): string[] {
  if (xff)
    return (Array.isArray(xff) ? xff.join(',') : xff)
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  if (!forwarded) return [];
  const hops: string[] = [];
  for (const element of (Array.isArray(forwarded) ? forwarded.join(',') : forwarded).split(',')) {
    const match = /(?:^|;)\s*for=("?)\[?([^\]";]+)\]?(?::\d+)?\1/i.exec(element);
    if (match) hops.push(match[2].trim());
  }
  return hops;
}

/** What a refused client is told: nothing about which tokens exist. */
export const AUTH_MESSAGES: Record<AuthFailure, string> = {
  missing: 'this server requires a bearer token (Authorization: Bearer <token>)',
  invalid: 'the bearer token was not accepted',
  locked: 'too many failed attempts from this address or with this token; try again later',
};

/** What a refused request is answered: 429 with Retry-After while its address is locked out, else 401 with the Bearer challenge (gRPC maps both). */
export function accessRefusal(verdict: Extract<AccessVerdict, { ok: false }>): { error: BadRequest; headers: Record<string, string> } {
  const locked = verdict.retryAfterSeconds > 0;
  return {
    error: new BadRequest(AUTH_MESSAGES[verdict.reason], locked ? 429 : 401),
    headers: locked ? { 'retry-after': String(verdict.retryAfterSeconds) } : { 'www-authenticate': 'Bearer realm="mlops"' },
  };
}
