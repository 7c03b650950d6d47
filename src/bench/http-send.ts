import { Pool } from 'undici';
import type { Send } from './load.js';

/**
 * A sender that POSTs prepared bodies in turn over keep-alive connections.
 * It uses undici's dispatch with a bare handler rather than request(): no
 * response stream per request, so the client spends less CPU than the server
 * it measures (they share the machine).
 */
export function httpSender(url: string, bodies: Buffer[], connections: number): { send: Send; close: () => Promise<void> } {
  const target = new URL(url);
  const pool = new Pool(target.origin, { connections, pipelining: 1 });
  const headers = { 'content-type': 'application/json' };
  const send: Send = (i) =>
    new Promise((resolve) => {
      let status = 0;
      pool.dispatch(
        { path: target.pathname, method: 'POST', headers, body: bodies[i % bodies.length] },
        {
          onConnect: () => undefined,
          onHeaders: (statusCode: number) => {
            status = statusCode;
            return true;
          },
          onData: () => true,
          onComplete: () => resolve(status === 200 ? null : `http_${status}`),
          onError: (error: Error) => {
            const code = (error as NodeJS.ErrnoException).code;
            resolve(code === 'UND_ERR_SOCKET' ? 'connection_reset' : (code ?? 'network').toLowerCase());
          },
        },
      );
    });
  return { send, close: () => pool.close() };
}
