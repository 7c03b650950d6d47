import http from 'node:http';
import https from 'node:https';
import { authHeaders, tlsConnectOptions, type ClientSecurity } from '../protocol/client-security.js';

/** One GET: its status and body, or null when nothing answered within timeoutMs. https:// with the CA and client certificate given. */
export function getText(url: string, timeoutMs = 1000, security?: ClientSecurity): Promise<{ status: number; body: string } | null> {
  return new Promise((resolve) => {
    const options = { timeout: timeoutMs, agent: false as const, headers: authHeaders(security), ...tlsConnectOptions(security) };
    const req = (url.startsWith('https:') ? https : http).get(url, options, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

/** One GET, true on 200; never hangs longer than timeoutMs. */
export async function probe(url: string, timeoutMs = 1000, security?: ClientSecurity): Promise<boolean> {
  return (await getText(url, timeoutMs, security))?.status === 200;
}

/**
 * Polls a readiness URL until it answers 200. Uses node:http with a timeout
 * per attempt: a port published by docker-proxy accepts connections before the
 * container listens, and a fetch to it can hang with no timer holding the
 * process open.
 */
export async function waitForReady(
  url: string,
  options: { timeoutMs: number; intervalMs?: number; stillWorth?: () => Promise<boolean>; security?: ClientSecurity },
): Promise<{ ready: boolean; ms: number }> {
  const started = performance.now();
  while (performance.now() - started < options.timeoutMs) {
    if (await probe(url, 1000, options.security)) return { ready: true, ms: performance.now() - started };
    if (options.stillWorth && !(await options.stillWorth())) break;
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 10));
  }
  return { ready: false, ms: performance.now() - started };
}
