import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { MlopsError, type ExitCode } from '../errors.js';
import type { WorkerHello, WorkerJob, WorkerReply, WorkerSetup } from './worker-protocol.js';

/**
 * The worker script: beside the bundled server in an image (inference-worker.mjs),
 * beside this module in dist/server/, or in dist/ when this module runs from src/ (tests).
 */
function workerScript(): URL {
  const candidates = ['./inference-worker.mjs', './inference-worker.js', '../../dist/server/inference-worker.js'].map((p) => new URL(p, import.meta.url));
  const found = candidates.find((u) => existsSync(fileURLToPath(u)));
  if (!found) throw new MlopsError(`the inference worker script is missing (looked for ${candidates.map((u) => fileURLToPath(u)).join(', ')})`, { exitCode: 70, hint: 'run npm run build' });
  return found;
}

interface Queued {
  job: WorkerJob;
  transfer: ArrayBuffer[];
  resolve: (reply: WorkerReply) => void;
  reject: (error: Error) => void;
}

interface Slot {
  worker: Worker;
  busy: Queued | undefined;
}

/**
 * Worker threads, each with its own ONNX Runtime session, taking one job at a
 * time from one queue. A worker that dies fails its job and is replaced.
 */
export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Queued[] = [];
  private closed = false;

  private constructor(
    private readonly setup: WorkerSetup,
    private readonly log: (line: string) => void,
  ) {}

  static async start(size: number, setup: WorkerSetup, log: (line: string) => void): Promise<WorkerPool> {
    const pool = new WorkerPool(setup, log);
    try {
      await Promise.all(Array.from({ length: size }, () => pool.spawn()));
    } catch (error) {
      await pool.close();
      throw error;
    }
    return pool;
  }

  get size(): number {
    return this.slots.length;
  }

  /** Jobs queued or running. */
  get pending(): number {
    return this.queue.length + this.slots.filter((s) => s.busy).length;
  }

  run(job: WorkerJob, transfer: ArrayBuffer[] = []): Promise<WorkerReply> {
    if (this.closed) return Promise.reject(new Error('the inference workers are shut down'));
    return new Promise((resolve, reject) => {
      this.queue.push({ job, transfer, resolve, reject });
      this.next();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const q of this.queue.splice(0)) q.reject(new Error('the inference workers are shut down'));
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()));
  }

  private next(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.busy) continue;
      const item = this.queue.shift()!;
      slot.busy = item;
      slot.worker.postMessage(item.job, item.transfer);
    }
  }

  private spawn(): Promise<void> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(workerScript(), { workerData: this.setup });
      const slot: Slot = { worker, busy: undefined };
      let started = false;
      worker.on('message', (message: WorkerHello | WorkerReply) => {
        if (!started) {
          started = true;
          const hello = message as WorkerHello;
          if (hello.ready) {
            this.slots.push(slot);
            resolve();
            this.next();
          } else reject(new MlopsError(hello.message, { exitCode: hello.exitCode as ExitCode, hint: hello.hint }));
          return;
        }
        const done = slot.busy;
        slot.busy = undefined;
        done?.resolve(message as WorkerReply);
        this.next();
      });
      worker.on('error', (error) => {
        if (!started) {
          started = true;
          reject(error);
        }
        this.log(`inference worker failed: ${error.message}`);
      });
      worker.on('exit', (code) => {
        const index = this.slots.indexOf(slot);
        if (index === -1) {
          // Never became ready: start() reports it; replacing it would fail the same way.
          if (!started) reject(new Error(`the inference worker exited with code ${code} before it was ready`));
          started = true;
          return;
        }
        this.slots.splice(index, 1);
        slot.busy?.reject(new Error(`the inference worker exited (code ${code}) during this request`));
        slot.busy = undefined;
        if (!this.closed) {
          this.log(`inference worker exited (code ${code}); starting another`);
          this.spawn().catch((error: Error) => this.log(`could not replace the inference worker: ${error.message}`));
        }
      });
    });
  }
}
