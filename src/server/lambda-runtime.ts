/**
 * AWS Lambda's Runtime API, spoken by the image when AWS_LAMBDA_RUNTIME_API is set: each event from a
 * Function URL or API Gateway (HTTP API payload 2.0, REST API 1.0) becomes an HTTP request to the
 * server on loopback, so every route (OIP v2, /invocations, health) answers exactly as over HTTP, and
 * the answer goes back in the event format. Hand-written: the Runtime API is three HTTP calls, and
 * AWS's runtime interface client would add a native build to every image for them.
 */
import { Agent, request as httpRequest } from 'node:http';

const API = '2018-06-01/runtime';
/** Lambda refuses a synchronous response over 6 MB (6,291,556 bytes); answered here as an HTTP error instead. */
export const MAX_RESPONSE_BYTES = 6 * 1024 * 1024;
/** Content types whose bodies travel as text; anything else is base64, as the event format asks. */
const TEXTUAL = /^(application\/(json|.*\+json|x-www-form-urlencoded)|text\/)/i;

export interface HttpEvent {
  method: string;
  /** Path with the query string. */
  path: string;
  headers: Record<string, string>;
  body: Buffer;
}

export interface LambdaHttpResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
  isBase64Encoded: boolean;
  cookies?: string[];
}

/** A Function URL or HTTP API event (payload 2.0), or a REST API event (1.0), as one HTTP request; null for any other event. */
export function eventToRequest(event: unknown): HttpEvent | null {
  if (!event || typeof event !== 'object') return null;
  const e = event as Record<string, unknown>;
  const rawBody = typeof e.body === 'string' ? e.body : '';
  const body = e.isBase64Encoded === true ? Buffer.from(rawBody, 'base64') : Buffer.from(rawBody, 'utf8');
  const headers = Object.fromEntries(
    Object.entries((e.headers ?? {}) as Record<string, unknown>)
      .filter(([, v]) => typeof v === 'string')
      .map(([k, v]) => [k.toLowerCase(), v as string]),
  );
  if (e.version === '2.0' && typeof e.rawPath === 'string') {
    const method = ((e.requestContext as { http?: { method?: string } } | undefined)?.http?.method ?? 'GET').toUpperCase();
    if (Array.isArray(e.cookies) && e.cookies.length > 0) headers.cookie = (e.cookies as string[]).join('; ');
    return { method, path: `${e.rawPath}${typeof e.rawQueryString === 'string' && e.rawQueryString ? `?${e.rawQueryString}` : ''}`, headers, body };
  }
  if (typeof e.httpMethod === 'string' && typeof e.path === 'string') {
    const query = new URLSearchParams();
    for (const [k, values] of Object.entries((e.multiValueQueryStringParameters ?? {}) as Record<string, string[]>))
      for (const v of values ?? []) query.append(k, v);
    if ([...query].length === 0) for (const [k, v] of Object.entries((e.queryStringParameters ?? {}) as Record<string, string>)) query.append(k, v);
    const search = query.toString();
    return { method: e.httpMethod.toUpperCase(), path: `${e.path}${search ? `?${search}` : ''}`, headers, body };
  }
  return null;
}

/** The server's answer in the event format: text as text, anything else base64. */
export function toLambdaResponse(statusCode: number, headers: Record<string, string | string[] | undefined>, body: Buffer): LambdaHttpResponse {
  const flat: Record<string, string> = {};
  let cookies: string[] | undefined;
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || ['connection', 'keep-alive', 'transfer-encoding', 'date'].includes(k)) continue;
    if (k === 'set-cookie') cookies = Array.isArray(v) ? v : [v];
    else flat[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  const textual = body.length === 0 || TEXTUAL.test(flat['content-type'] ?? '');
  return {
    statusCode,
    headers: flat,
    body: textual ? body.toString('utf8') : body.toString('base64'),
    isBase64Encoded: !textual,
    ...(cookies ? { cookies } : {}),
  };
}

/** An HTTP answer for an answer Lambda itself would refuse (over 6 MB): the client learns why. */
function tooLarge(bytes: number): LambdaHttpResponse {
  const error = `the answer is ${bytes} bytes, over AWS Lambda's ${MAX_RESPONSE_BYTES}-byte response limit: ask for fewer rows per request, or binary tensors (Content-Type application/octet-stream)`;
  return { statusCode: 413, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error }), isBase64Encoded: false };
}

/** Node 20's global agent closes a socket idle 5 s: the Runtime API's /next waits as long as there is no event. */
const agent = new Agent({ keepAlive: true });

type Sent = { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer };

/**
 * One request, sent again once when it went out on a kept-alive socket the other side had just closed
 * (the server closes a socket idle 5 s, and a request can race that close): Node's documented remedy.
 */
function send(url: string, options: { method: string; headers?: Record<string, string>; body?: Buffer; timeoutMs?: number }): Promise<Sent> {
  return sendOnce(url, options).catch((error: Error & { reusedSocket?: boolean; code?: string }) => {
    if (error.reusedSocket && error.code === 'ECONNRESET') return sendOnce(url, options);
    throw error;
  });
}

function sendOnce(url: string, options: { method: string; headers?: Record<string, string>; body?: Buffer; timeoutMs?: number }): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { agent, method: options.method, headers: options.headers, ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (error: Error & { reusedSocket?: boolean }) => {
      error.reusedSocket = req.reusedSocket;
      reject(error);
    });
    req.end(options.body);
  });
}

export interface LambdaRuntimeOptions {
  /** host:port from AWS_LAMBDA_RUNTIME_API. */
  runtimeApi: string;
  /** The server on loopback, e.g. http://127.0.0.1:8080. */
  serverUrl: string;
  log: (line: string) => void;
  /** Stops the loop after the invocation in hand (tests); Lambda itself freezes or ends the process. */
  stopped?: () => boolean;
}

/** Tells Lambda the function could not start: it reports the error and retries the environment. */
export async function reportInitError(runtimeApi: string, error: Error): Promise<void> {
  const body = Buffer.from(JSON.stringify({ errorMessage: error.message, errorType: 'Runtime.InitError' }));
  await send(`http://${runtimeApi}/${API}/init/error`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'lambda-runtime-function-error-type': 'Runtime.InitError' },
    body,
  }).catch(() => undefined);
}

/** The Runtime API loop: next event, ask the server, post the answer (or the error); again. */
export async function runLambdaRuntime(options: LambdaRuntimeOptions): Promise<void> {
  const base = `http://${options.runtimeApi}/${API}`;
  while (!options.stopped?.()) {
    const next = await send(`${base}/invocation/next`, { method: 'GET' });
    const id = String(next.headers['lambda-runtime-aws-request-id'] ?? '');
    if (!id) throw new Error(`the Runtime API answered /invocation/next without a request id (HTTP ${next.status})`);
    const deadline = Number(next.headers['lambda-runtime-deadline-ms'] ?? 0);
    const fail = async (errorType: string, errorMessage: string) => {
      options.log(`invocation ${id}: ${errorType}: ${errorMessage}`);
      const body = Buffer.from(JSON.stringify({ errorMessage, errorType }));
      await send(`${base}/invocation/${id}/error`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'lambda-runtime-function-error-type': errorType },
        body,
      });
    };
    let event: unknown;
    try {
      event = JSON.parse(next.body.toString('utf8'));
    } catch {
      await fail('Runtime.InvalidEvent', 'the event is not JSON');
      continue;
    }
    const request = eventToRequest(event);
    if (!request) {
      await fail('Runtime.UnsupportedEvent', 'mlops answers HTTP events only: a Function URL or API Gateway (HTTP API payload 2.0, or REST API)');
      continue;
    }
    let answer: LambdaHttpResponse;
    try {
      const headers: Record<string, string> = { ...request.headers, 'content-length': String(request.body.length) };
      delete headers.host;
      const timeoutMs = deadline > 0 ? Math.max(1, deadline - Date.now() - 50) : undefined;
      const res = await send(`${options.serverUrl}${request.path}`, { method: request.method, headers, body: request.body, timeoutMs });
      answer = toLambdaResponse(res.status, res.headers, res.body);
    } catch (error) {
      await fail('Runtime.ServerUnreachable', `the model server did not answer: ${(error as Error).message}`);
      continue;
    }
    let payload = Buffer.from(JSON.stringify(answer));
    if (payload.length > MAX_RESPONSE_BYTES) payload = Buffer.from(JSON.stringify(tooLarge(payload.length)));
    await send(`${base}/invocation/${id}/response`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: payload });
  }
}
