import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { MlopsError, type ExitCode } from '../errors.js';
import { BadRequest, DeadlineExceeded } from '../protocol/request.js';
import type { WorkerHello, WorkerJob, WorkerReply, WorkerSetup } from './worker-protocol.js';

/**
 * The worker script: beside the bundled server in an image (inference-worker.mjs),
 * beside this module in dist/server/, or in dist/ when this module runs from src/ (tests).
 */
function workerScript(): URL {
  const candidates = ['./inference-worker.mjs', './inference-worker.js', '../../dist/server/inference-worker.js'].map((p) => new URL(p, import.meta.url));
  const found = candidates.find((u) => existsSync(fileURLToPath(u)));
  if (!found)
    throw new MlopsError(`the inference worker script is missing (looked for ${candidates.map((u) => fileURLToPath(u)).join(', ')})`, {
      exitCode: 70,
      hint: 'run npm run build',
    });
  return found;
}

/** Runs past their deadline the pool lets go on (each with its thread and session) per worker, before it stops replacing workers. */
export const ABANDONED_PER_WORKER = 4;

interface Queued {
  job: WorkerJob;
  transfer: ArrayBuffer[];
  resolve: (reply: WorkerReply) => void;
  reject: (error: Error) => void;
  /** performance.now() by which the job must be answered; Infinity: none. */
  deadline: number;
  timer?: NodeJS.Timeout;
}

interface Slot {
  worker: Worker;
  busy: Queued | undefined;
}

export interface PoolEvents {
  /** A job's deadline passed while it waited ('queued') or ran ('running': its worker was abandoned). */
  onDeadline?: (stage: 'queued' | 'running') => void;
  /** A worker was replaced: it overstayed a deadline, or it died. */
  onReplaced?: (reason: 'deadline' | 'exited') => void;
}

/**
 * Worker threads, each with its own ONNX Runtime session, taking one job at a
 * time from one queue. A worker that dies fails its job and is replaced; so is one
 * whose job outlives its deadline.
 */
export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Queued[] = [];
  /** Workers whose run overstayed: out of the pool, ended as soon as their run returns. */
  private readonly abandoned = new Set<Slot>();
  /** Replacements not yet started because `capacity` workers are already abandoned. */
  private owed = 0;
  private capacity = 0;
  private closed = false;

  private constructor(
    private readonly setup: WorkerSetup,
    private readonly log: (line: string) => void,
    private readonly events: PoolEvents,
  ) {}

  static async start(size: number, setup: WorkerSetup, log: (line: string) => void, events: PoolEvents = {}): Promise<WorkerPool> {
    const pool = new WorkerPool(setup, log, events);
    try {
      pool.capacity = size;
      await Promise.all(Array.from({ length: size }, () => pool.spawn()));
    } catch (error) {
      await pool.close();
      throw error;
    }
    return pool;
  }

  /** The workers the pool keeps: runs it can take at once (a worker being replaced is counted, so queued work waits for it). */
  get size(): number {
    return this.capacity;
  }

  /** Abandoned runs still using their thread (and CPU) until ONNX Runtime returns. */
  get abandonedRuns(): number {
    return this.abandoned.size;
  }

  /**
   * A worker can take work now, or will once its run ends: false while every worker is abandoned
   * and no replacement may start (readiness says so, and requests get 503 at once rather than a 504
   * after waiting out their deadline).
   */
  get accepting(): boolean {
    return this.slots.length > 0 || this.owed === 0;
  }

  /** The answer while no worker can take work: 503, so the client retries (another replica, or shortly). */
  private heldByAbandoned(): BadRequest {
    return new BadRequest(`every inference worker is held by a run past its deadline (${this.abandoned.size} still inside ONNX Runtime); retry shortly`, 503);
  }

  /** Jobs queued or running. */
  get pending(): number {
    return this.queue.length + this.slots.filter((s) => s.busy).length;
  }

  /** Runs `job` in the next free worker; past `deadline` (performance.now() time) it fails with DeadlineExceeded. */
  run(job: WorkerJob, transfer: ArrayBuffer[] = [], deadline = Infinity): Promise<WorkerReply> {
    if (this.closed) return Promise.reject(new Error('the inference workers are shut down'));
    if (!this.accepting) {
      return Promise.reject(this.heldByAbandoned());
    }
    return new Promise((resolve, reject) => {
      const item: Queued = { job, transfer, resolve, reject, deadline };
      // One timer a job, for waiting and running alike. A run cannot be interrupted (onnxruntime-node's run
      // is one synchronous native call), so at the deadline its worker is abandoned and replaced.
      if (deadline !== Infinity) item.timer = setTimeout(() => this.expire(item), Math.max(0, deadline - performance.now()));
      this.queue.push(item);
      this.next();
    });
  }

  private expire(item: Queued): void {
    const queued = this.queue.indexOf(item);
    if (queued !== -1) {
      this.queue.splice(queued, 1);
      this.events.onDeadline?.('queued');
      item.reject(new DeadlineExceeded('inference did not start before the deadline: every inference worker was busy'));
      return;
    }
    const slot = this.slots.find((s) => s.busy === item);
    if (!slot) return;
    this.slots.splice(this.slots.indexOf(slot), 1);
    slot.busy = undefined;
    this.events.onDeadline?.('running');
    item.reject(new DeadlineExceeded('inference overstayed the deadline; the run was abandoned'));
    // Not terminated now: ending a thread inside onnxruntime-node's run aborts the whole process when the
    // run returns (measured: "terminate called after throwing an instance of 'Napi::Error'", exit 134).
    // It leaves the pool, and ends when its run returns; a new worker takes its place meanwhile, unless
    // as many are abandoned as the pool has workers, which bounds the threads a stream of such requests holds.
    this.abandoned.add(slot);
    slot.worker.unref();
    // Replacements keep the pool whole while runs past their deadline end, up to a bound on the threads
    // (and sessions) they hold: with only one per worker, four long requests in a row left a pool of two
    // with none, and every other request waited out its deadline for 48 s (issue 34).
    const replacing = this.abandoned.size <= this.capacity * ABANDONED_PER_WORKER;
    this.log(
      `an inference run overstayed its deadline: its worker thread leaves the pool and ends when ONNX Runtime returns${replacing ? '; a new worker starts' : `; ${this.abandoned.size} are abandoned, so a new worker starts when one ends`}`,
    );
    if (replacing) this.replace('deadline');
    else this.owed++;
    if (!this.accepting) {
      for (const queued of this.queue.splice(0)) {
        clearTimeout(queued.timer);
        queued.reject(this.heldByAbandoned());
      }
    }
  }

  /** An abandoned worker whose run has returned: it can end safely now, and a replacement owed starts. */
  private retire(slot: Slot): void {
    if (!this.abandoned.delete(slot)) return;
    void slot.worker.terminate();
    if (this.owed > 0) {
      this.owed--;
      this.replace('deadline');
    }
  }

  private replace(reason: 'deadline' | 'exited'): void {
    if (this.closed) return;
    this.events.onReplaced?.(reason);
    this.spawn().catch((error: Error) => this.log(`could not replace the inference worker: ${error.message}`));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const q of this.queue.splice(0)) {
      clearTimeout(q.timer);
      q.reject(new Error('the inference workers are shut down'));
    }
    const slots = this.slots.splice(0);
    // A worker inside a run cannot be ended safely (see expire): it is abandoned, and ends when the run returns.
    for (const slot of slots.filter((s) => s.busy)) {
      clearTimeout(slot.busy!.timer);
      slot.busy!.reject(new Error('the inference workers are shut down'));
      slot.busy = undefined;
      this.abandoned.add(slot);
      slot.worker.unref();
    }
    await Promise.all(slots.filter((s) => !this.abandoned.has(s)).map((s) => s.worker.terminate()));
  }

  private next(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.busy) continue;
      const item = this.queue.shift()!;
      // Dispatch clears no timer: the same one guards the run.
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
        if (this.abandoned.has(slot)) return this.retire(slot);
        const done = slot.busy;
        slot.busy = undefined;
        if (done?.timer) clearTimeout(done.timer);
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
        if (this.abandoned.has(slot)) return this.retire(slot);
        const index = this.slots.indexOf(slot);
        if (index === -1) {
          // Never became ready (start() reports it; replacing it would fail the same way), or abandoned at a deadline.
          if (!started) reject(new Error(`the inference worker exited with code ${code} before it was ready`));
          started = true;
          return;
        }
        this.slots.splice(index, 1);
        if (slot.busy?.timer) clearTimeout(slot.busy.timer);
        slot.busy?.reject(new Error(`the inference worker exited (code ${code}) during this request`));
        slot.busy = undefined;
        if (!this.closed) {
          this.log(`inference worker exited (code ${code}); starting another`);
          this.replace('exited');
        }
      });
    });
  }
}
