import net from 'node:net';
import tls from 'node:tls';
import type { Failure, Send } from './load.js';

/**
 * The load generator's HTTP/1.1 client: keep-alive sockets and requests
 * prebuilt as one buffer each (headers and body), reading only the status
 * line and Content-Length of each answer. A general client (undici) spent
 * 30% more CPU a request here, and on a shared machine the client's CPU is
 * taken from the server it measures (benchmark/crosscheck.js compares the two
 * with autocannon).
 */
export function httpSender(
  url: string,
  bodies: { body: Uint8Array; headers: Record<string, string> }[],
  connections: number,
  secure: { ca?: Uint8Array; cert?: Uint8Array; key?: Uint8Array } = {},
): { send: Send; close: () => Promise<void> } {
  const target = new URL(url);
  const host = target.hostname.replace(/^\[|\]$/g, '');
  // https: the same client over node:tls, keep-alive, so a handshake is paid once a connection.
  const useTls = target.protocol === 'https:';
  const port = Number(target.port || (useTls ? 443 : 80));
  // Buffers that crossed to this worker thread arrive as plain Uint8Arrays.
  const pem = (bytes?: Uint8Array) => (bytes ? Buffer.from(bytes) : undefined);
  const tlsOptions = { ca: pem(secure.ca), cert: pem(secure.cert), key: pem(secure.key) };
  const connect = () =>
    useTls ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, ...tlsOptions }) : net.connect({ host, port, noDelay: true });
  const requests = bodies.map(({ body, headers }) => {
    const extra = Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('');
    return Buffer.concat([
      Buffer.from(`POST ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\n${extra}Content-Length: ${body.byteLength}\r\n\r\n`),
      body,
    ]);
  });
  const idle: Connection[] = [];
  const all = new Set<Connection>();
  const waiting: ((c: Connection) => void)[] = [];

  const release = (connection: Connection) => {
    const next = waiting.shift();
    if (next) next(connection);
    else idle.push(connection);
  };
  const acquire = (): Promise<Connection> => {
    // The server may have closed an idle keep-alive connection meanwhile.
    for (let connection = idle.pop(); connection; connection = idle.pop()) {
      if (connection.usable) return Promise.resolve(connection);
    }
    if (all.size < Math.max(1, connections)) {
      const fresh = new Connection(connect(), () => all.delete(fresh));
      all.add(fresh);
      return Promise.resolve(fresh);
    }
    return new Promise((resolve) => waiting.push(resolve));
  };

  const send: Send = async (i) => {
    const connection = await acquire();
    const outcome = await connection.request(requests[i % requests.length]);
    if (connection.usable) release(connection);
    else {
      all.delete(connection);
      // Someone may be waiting for a connection: let them open a new one.
      const next = waiting.shift();
      if (next) void acquire().then(next);
    }
    return outcome;
  };
  return {
    send,
    close: async () => {
      for (const c of all) c.destroy();
      all.clear();
    },
  };
}

class Connection {
  usable = true;
  private readonly socket: net.Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private pending: ((outcome: Failure | null) => void) | undefined;
  private status = 0;
  private bodyLeft = -1;

  constructor(socket: net.Socket, onGone: () => void) {
    this.socket = socket;
    socket.setNoDelay(true);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    const fail = (error?: NodeJS.ErrnoException) => {
      this.usable = false;
      onGone();
      const kind = error?.code === 'ECONNREFUSED' ? 'econnrefused' : 'connection_reset';
      this.finish({ kind, message: error?.message ?? 'the server closed the connection' });
    };
    this.socket.on('error', fail);
    this.socket.on('close', () => fail());
  }

  request(bytes: Buffer): Promise<Failure | null> {
    return new Promise((resolve) => {
      this.pending = resolve;
      this.status = 0;
      this.bodyLeft = -1;
      this.socket.write(bytes);
    });
  }

  destroy(): void {
    this.usable = false;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    if (this.bodyLeft < 0) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = this.buffer.toString('latin1', 0, end);
      this.status = Number(head.slice(9, 12));
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (!length) {
        // Only length-delimited answers are expected from inference servers.
        this.usable = false;
        this.socket.destroy();
        this.finish({ kind: 'unsupported_response', message: 'the answer has no Content-Length' });
        return;
      }
      if (/\r\nconnection:\s*close/i.test(head)) this.usable = false;
      this.bodyLeft = Number(length[1]);
      this.buffer = this.buffer.subarray(end + 4);
    }
    if (this.buffer.length >= this.bodyLeft) {
      // Only a failed answer's body is read: it says why.
      const failure = this.status === 200 ? null : { kind: `http_${this.status}`, message: errorText(this.buffer.subarray(0, Math.min(this.bodyLeft, 2048))) };
      this.buffer = this.buffer.subarray(this.bodyLeft);
      this.finish(failure);
    }
  }

  private finish(outcome: Failure | null): void {
    const resolve = this.pending;
    this.pending = undefined;
    this.bodyLeft = -1;
    resolve?.(outcome);
  }
}

/** The `error` of an OIP error body, or the body as text. */
function errorText(body: Buffer): string {
  const text = body.toString('utf8');
  try {
    const parsed = JSON.parse(text) as { error?: unknown };
    if (typeof parsed?.error === 'string') return parsed.error;
  } catch {
    // Not JSON: the text itself says why.
  }
  return text;
}
