/**
 * Local stand-ins for the object stores, started by the tests on 127.0.0.1: s3rver (S3), azurite (Azure
 * Blob), and a recording proxy in front of either, so that tests see the requests each SDK sent (the
 * multipart parts, the Range headers) as well as what came back.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Running {
  url: string;
  close(): Promise<void>;
}

/**
 * s3rver in a temp directory with `buckets` made. It runs in its own process with OpenSSL's legacy provider:
 * its ListObjectsV2 continuation tokens are DES-encrypted, which Node 17+ refuses otherwise. It accepts any
 * SigV4 signature from a known key ID (S3RVER), and answers InvalidAccessKeyId for others.
 */
export async function startS3rver(buckets: string[]): Promise<Running> {
  const directory = await mkdtemp(path.join(tmpdir(), 'mlops-s3rver-'));
  const args = ['-d', directory, '-a', '127.0.0.1', '-p', '0', '--silent', ...buckets.flatMap((name) => ['--configure-bucket', name])];
  return startChild('s3rver', args, /S3rver listening on (\S+):(\d+)/, (m) => `http://${m[1]}:${m[2]}`, directory, {
    NODE_OPTIONS: '--openssl-legacy-provider',
  });
}

/** Azurite's well-known development account and key (public, in Azurite's README). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export function azuriteConnectionString(blobUrl: string): string {
  return `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${blobUrl}/${AZURITE_ACCOUNT};`;
}

/** azurite's blob service on a port the system picks, in a temp directory, with telemetry off. */
export async function startAzurite(): Promise<Running> {
  const location = await mkdtemp(path.join(tmpdir(), 'mlops-azurite-'));
  const args = ['--blobHost', '127.0.0.1', '--blobPort', '0', '--location', location, '--skipApiVersionCheck', '--loose', '--disableTelemetry', '--silent'];
  return startChild('azurite-blob', args, /successfully listens on (http:\/\/\S+)/, (m) => m[1], location);
}

/** Runs node_modules/.bin/<bin> until close(); its URL is read from what it prints once listening. */
async function startChild(
  bin: string,
  args: string[],
  listening: RegExp,
  urlOf: (match: RegExpExecArray) => string,
  workDir: string,
  env: NodeJS.ProcessEnv = {},
): Promise<Running> {
  const child = spawn(path.join(ROOT, 'node_modules/.bin', bin), args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let output = '';
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    await rm(workDir, { recursive: true, force: true });
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const seen = (chunk: Buffer) => {
        output += chunk.toString();
        const match = listening.exec(output);
        if (match) resolve(urlOf(match));
      };
      child.stdout.on('data', seen);
      child.stderr.on('data', seen);
      child.once('exit', (code) => reject(new Error(`${bin} exited (${code}) before listening:\n${output}`)));
    });
    return { url, close: stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
}

/** A pass-through proxy to `target` that records each request; the Host header goes through as sent, so signatures hold. */
export async function recordingProxy(target: string): Promise<Running & { requests: SeenRequest[] }> {
  const { hostname, port } = new URL(target);
  const requests: SeenRequest[] = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const upstream = request({ hostname, port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', (error) => res.destroy(error));
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

/** A port nothing listens on: one the system gave out and took back. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
