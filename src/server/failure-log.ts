import { boundErrorText } from '../protocol/request.js';

/**
 * Logs each distinct inference failure once. A model that fails on every request would otherwise
 * write a stack trace a request (thousands a second under load); every failure is still counted in
 * mlops_http_requests_total by status code.
 */
export function failureLogger(log: (line: string) => void, limit = 100): (where: string, error: unknown) => void {
  const seen = new Set<string>();
  let full = false;
  return (where, error) => {
    const message = boundErrorText((error as Error)?.message ?? String(error));
    if (seen.has(message) || full) return;
    if (seen.size >= limit) {
      full = true;
      log(`error: more than ${limit} distinct inference failures; further ones are counted in mlops_http_requests_total, not logged`);
      return;
    }
    seen.add(message);
    // A model's failure is its message; anything else may be a bug in mlops, and its stack says where.
    const detail = (error as Error)?.name === 'ModelRunError' ? message : ((error as Error)?.stack ?? message);
    log(`error: ${where}: ${detail} (logged once; repeats are counted in mlops_http_requests_total)`);
  };
}
