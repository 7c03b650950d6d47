/**
 * Gives memory back after a burst of large requests: once a thread has been idle for a while after
 * one, a full garbage collection frees the parsed bodies' heap, which V8 otherwise keeps until the
 * next allocation pressure (measured in npm run bench, bodyBurst). The collector is reached through
 * V8's --expose-gc set at run time: Node takes no V8 flag for a worker thread alone.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const IDLE_MS = 1000;

function collector(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return undefined;
  }
}

const gc = collector();
let timer: NodeJS.Timeout | undefined;

/** Call after work that held `bytes` of request: past a few MiB, a collection follows once the thread has been idle IDLE_MS. */
export function collectWhenIdle(bytes: number): void {
  if (!gc || bytes < 4 * 2 ** 20) {
    // Any later work postpones a pending collection: it runs only when the thread is idle.
    if (timer) timer.refresh();
    return;
  }
  if (timer) return void timer.refresh();
  timer = setTimeout(() => {
    timer = undefined;
    gc();
  }, IDLE_MS);
  timer.unref();
}
