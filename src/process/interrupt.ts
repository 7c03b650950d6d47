/**
 * Cleanups that must run even on Ctrl-C or SIGTERM (e.g. removing a container
 * the command started). On a signal they run, then the signal is raised again
 * so the process ends as it would have.
 */
const cleanups = new Set<() => Promise<unknown>>();
let installed = false;
let interrupted: NodeJS.Signals | undefined;

/** The signal that interrupted a command, if one did; errors after it are its echo. */
export function interruptedBy(): NodeJS.Signals | undefined {
  return interrupted;
}

function onSignal(signal: NodeJS.Signals): void {
  interrupted = signal;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  installed = false;
  const pending = [...cleanups].map((cleanup) => cleanup().catch(() => undefined));
  cleanups.clear();
  void Promise.all(pending).finally(() => process.kill(process.pid, signal));
}

/** Registers a cleanup; the returned function unregisters it. */
export function cleanupOnInterrupt(cleanup: () => Promise<unknown>): () => void {
  cleanups.add(cleanup);
  if (!installed) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    installed = true;
  }
  return () => {
    cleanups.delete(cleanup);
    if (cleanups.size === 0 && installed) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      installed = false;
    }
  };
}
