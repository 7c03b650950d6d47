import http from 'node:http';

/** One GET, true on 200; never hangs longer than timeoutMs. */
export function probe(url: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/**
 * Polls a readiness URL until it answers 200. Uses node:http with a timeout
 * per attempt: a port published by docker-proxy accepts connections before the
 * container listens, and a fetch to it can hang with no timer holding the
 * process open.
 */
export async function waitForReady(
  url: string,
  options: { timeoutMs: number; intervalMs?: number; stillWorth?: () => Promise<boolean> },
): Promise<{ ready: boolean; ms: number }> {
  const started = performance.now();
  while (performance.now() - started < options.timeoutMs) {
    if (await probe(url)) return { ready: true, ms: performance.now() - started };
    if (options.stillWorth && !(await options.stillWorth())) break;
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 10));
  }
  return { ready: false, ms: performance.now() - started };
}
