/** A stand-in of AWS Lambda's Runtime API, and the events AWS sends, for the tests of the image's Lambda mode. */
import http from 'node:http';

export interface Posted {
  id: string;
  kind: 'response' | 'error';
  body: Record<string, unknown>;
  errorType?: string;
}

/** Serves /invocation/next from a queue (non-JSON events as raw strings) and records what the function posts back. */
export function runtimeApi(events: (object | string)[], firstEventAfterMs = 0) {
  const posted: Posted[] = [];
  let next = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const m = /^\/2018-06-01\/runtime\/invocation\/([^/]+)\/(response|error)$/.exec(req.url ?? '');
      if (req.url === '/2018-06-01/runtime/invocation/next') {
        // No event left: the call waits, as Lambda's does between invocations.
        if (next >= events.length) return;
        const event = events[next++];
        if (next === 1 && firstEventAfterMs > 0) {
          setTimeout(() => {
            res.writeHead(200, {
              'lambda-runtime-aws-request-id': 'req-1',
              'lambda-runtime-deadline-ms': String(Date.now() + 30_000),
              'content-type': 'application/json',
            });
            res.end(typeof event === 'string' ? event : JSON.stringify(event));
          }, firstEventAfterMs);
          return;
        }
        res.writeHead(200, {
          'lambda-runtime-aws-request-id': `req-${next}`,
          'lambda-runtime-deadline-ms': String(Date.now() + 30_000),
          'content-type': 'application/json',
        });
        return void res.end(typeof event === 'string' ? event : JSON.stringify(event));
      }
      if (m) {
        posted.push({
          id: m[1],
          kind: m[2] as Posted['kind'],
          body: JSON.parse(Buffer.concat(chunks).toString()),
          errorType: req.headers['lambda-runtime-function-error-type'] as string | undefined,
        });
        return void res.writeHead(202).end('{"status":"OK"}');
      }
      res.writeHead(404).end();
    });
  });
  return { server, posted, done: () => next >= events.length };
}

/** A Function URL event as AWS sends it (payload format 2.0). */
export function functionUrlEvent(method: string, rawPath: string, headers: Record<string, string>, body: Buffer | null, base64: boolean, rawQueryString = '') {
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    headers: { host: 'abcdefgh.lambda-url.eu-west-1.on.aws', 'x-forwarded-proto': 'https', 'user-agent': 'curl/8.5.0', ...headers },
    requestContext: {
      accountId: 'anonymous',
      apiId: 'abcdefgh',
      domainName: 'abcdefgh.lambda-url.eu-west-1.on.aws',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '198.51.100.7', userAgent: 'curl/8.5.0' },
      requestId: 'c4f1e3b0-0000-4000-8000-000000000001',
      routeKey: '$default',
      stage: '$default',
      time: '01/Dec/2026:10:00:00 +0000',
      timeEpoch: 1796119200000,
    },
    ...(body ? { body: base64 ? body.toString('base64') : body.toString('utf8') } : {}),
    isBase64Encoded: base64,
  };
}
