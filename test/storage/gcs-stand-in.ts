/**
 * A local stand-in for the part of the Google Cloud Storage JSON API that @google-cloud/storage calls for
 * the object store: object metadata, media download (with Range), list (prefix, maxResults, pageToken),
 * bucket metadata, delete, and resumable uploads (session POST, then PUTs with Content-Range). It answers
 * errors in GCS's JSON shape and records every request so that tests can assert what the SDK sent.
 * Served at the root and under /storage/v1, as STORAGE_EMULATOR_HOST and apiEndpoint each lead the SDK to call.
 */
import { CRC32C } from '@google-cloud/storage';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  /** Bytes in the request's body. */
  bodyBytes: number;
}

export interface GcsStandIn {
  url: string;
  requests: RecordedRequest[];
  buckets: Map<string, Map<string, Buffer>>;
  close(): Promise<void>;
}

const sendJson = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
};
const gcsError = (res: ServerResponse, status: number, message: string) =>
  sendJson(res, status, { error: { code: status, message, errors: [{ message, domain: 'global', reason: status === 404 ? 'notFound' : 'invalid' }] } });

const hashes = (data: Buffer) => {
  const crc32c = new CRC32C();
  crc32c.update(data);
  return { md5Hash: createHash('md5').update(data).digest('base64'), crc32c: crc32c.toString() };
};
const metadataOf = (bucket: string, name: string, data: Buffer) => ({
  kind: 'storage#object',
  id: `${bucket}/${name}/1`,
  bucket,
  name,
  size: String(data.length),
  generation: '1',
  contentType: 'application/octet-stream',
  ...hashes(data),
});

export async function startGcsStandIn(bucketNames: string[]): Promise<GcsStandIn> {
  const buckets = new Map(bucketNames.map((name) => [name, new Map<string, Buffer>()]));
  const requests: RecordedRequest[] = [];
  const sessions = new Map<string, { bucket: string; name: string; parts: Buffer[]; received: number }>();
  let nextSession = 1;

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://stand-in');
      const body = Buffer.concat(chunks);
      const path = url.pathname.replace(/^\/storage\/v1(?=\/b\/)/, '');
      requests.push({ method: req.method ?? '', path, query: url.searchParams, headers: req.headers, bodyBytes: body.length });
      try {
        route(req.method ?? '', path, url.searchParams, req.headers, body, res);
      } catch (error) {
        gcsError(res, 500, String(error));
      }
    });
  });

  function route(method: string, path: string, query: URLSearchParams, headers: IncomingMessage['headers'], body: Buffer, res: ServerResponse) {
    const upload = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(path);
    if (upload) return resumable(method, decodeURIComponent(upload[1]), query, headers, body, res);
    const match = /^\/b\/([^/]+)(?:\/o(?:\/(.+))?)?$/.exec(path);
    if (!match) return gcsError(res, 400, `the stand-in does not serve ${method} ${path}`);
    const bucketName = decodeURIComponent(match[1]);
    const bucket = buckets.get(bucketName);
    if (!bucket) return gcsError(res, 404, 'The specified bucket does not exist.');
    const objects = path.includes('/o');
    if (!objects)
      return method === 'GET' ? sendJson(res, 200, { kind: 'storage#bucket', name: bucketName, id: bucketName }) : gcsError(res, 400, 'unsupported');
    if (match[2] === undefined) return list(bucketName, bucket, query, res);
    const name = decodeURIComponent(match[2]);
    const data = bucket.get(name);
    if (!data) return gcsError(res, 404, `No such object: ${bucketName}/${name}`);
    if (method === 'DELETE') {
      bucket.delete(name);
      return res.writeHead(204).end();
    }
    if (method !== 'GET') return gcsError(res, 400, `unsupported ${method}`);
    if (query.get('alt') !== 'media') return sendJson(res, 200, metadataOf(bucketName, name, data));
    return media(data, headers.range, res);
  }

  function list(bucketName: string, bucket: Map<string, Buffer>, query: URLSearchParams, res: ServerResponse) {
    const prefix = query.get('prefix') ?? '';
    const names = [...bucket.keys()].filter((n) => n.startsWith(prefix)).sort();
    const from = Number(query.get('pageToken') ?? 0);
    const size = Number(query.get('maxResults') ?? 1000);
    const page = names.slice(from, from + size);
    const next = from + size < names.length ? String(from + size) : undefined;
    sendJson(res, 200, { kind: 'storage#objects', items: page.map((n) => metadataOf(bucketName, n, bucket.get(n)!)), nextPageToken: next });
  }

  function media(data: Buffer, range: string | undefined, res: ServerResponse) {
    const stored = { 'x-goog-stored-content-encoding': 'identity', 'content-type': 'application/octet-stream' };
    const spans = range && /^bytes=(\d+)-(\d*)$/.exec(range);
    if (!spans) {
      const { md5Hash, crc32c } = hashes(data);
      return res.writeHead(200, { ...stored, 'content-length': data.length, 'x-goog-hash': `crc32c=${crc32c},md5=${md5Hash}` }).end(data);
    }
    const start = Number(spans[1]);
    const end = Math.min(spans[2] ? Number(spans[2]) : data.length - 1, data.length - 1);
    if (start >= data.length) return gcsError(res, 416, 'Request range not satisfiable');
    const part = data.subarray(start, end + 1);
    res.writeHead(206, { ...stored, 'content-length': part.length, 'content-range': `bytes ${start}-${end}/${data.length}` }).end(part);
  }

  function resumable(method: string, bucketName: string, query: URLSearchParams, headers: IncomingMessage['headers'], body: Buffer, res: ServerResponse) {
    if (!buckets.has(bucketName)) return gcsError(res, 404, 'The specified bucket does not exist.');
    if (method === 'POST') {
      if (query.get('uploadType') !== 'resumable') return gcsError(res, 400, `the stand-in takes resumable uploads only, not ${query.get('uploadType')}`);
      const id = String(nextSession++);
      sessions.set(id, { bucket: bucketName, name: query.get('name') ?? '', parts: [], received: 0 });
      return res.writeHead(200, { location: `${baseUrl}/upload/storage/v1/b/${bucketName}/o?uploadType=resumable&upload_id=${id}` }).end();
    }
    const session = sessions.get(query.get('upload_id') ?? '');
    if (method !== 'PUT' || !session) return gcsError(res, 404, 'No such upload session');
    // An empty object's one chunk comes as `bytes 0--1/0` from the SDK (the end, inclusive, is offset + length - 1).
    const contentRange = /^bytes (?:(\d+)-(-1|\d+)|\*)\/(\d+|\*)$/.exec(String(headers['content-range'] ?? ''));
    if (!contentRange) return gcsError(res, 400, `bad Content-Range: ${headers['content-range']}`);
    if (contentRange[1] !== undefined) {
      if (Number(contentRange[1]) !== session.received) return gcsError(res, 400, `expected a chunk at ${session.received}`);
      session.parts.push(body);
      session.received += body.length;
    }
    const total = contentRange[3];
    if (total !== '*' && Number(total) === session.received) {
      const data = Buffer.concat(session.parts);
      buckets.get(session.bucket)!.set(session.name, data);
      return sendJson(res, 200, metadataOf(session.bucket, session.name, data));
    }
    const committed = session.received ? { range: `bytes=0-${session.received - 1}` } : {};
    res.writeHead(308, committed).end();
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: baseUrl,
    requests,
    buckets,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
