/** What the REST and gRPC servers share about the server as a whole. */
export interface ServingState {
  /** Ready for inference: false before listening and while draining. */
  ready: boolean;
  /** Shutting down: readiness off, connections close as their requests finish. */
  draining: boolean;
  /** Requests being handled, over both protocols. */
  inFlight: number;
}

/**
 * A graceful close that is forced after `timeoutMs`: `close` calls `done` once
 * everything in flight has finished; `force` cuts what is left.
 */
export function closeWithin(timeoutMs: number, close: (done: () => void) => void, force: () => void): Promise<{ forced: boolean }> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      force();
      resolve({ forced: true });
    }, timeoutMs);
    timer.unref();
    close(() => {
      clearTimeout(timer);
      resolve({ forced: false });
    });
  });
}
