import { allocate, type TensorData } from '../model/datatypes.js';
import { UNNAMED_DIM } from '../model/inspect.js';
import type { ServableTensor, Tensors } from '../model/session.js';
import { DeadlineExceeded } from '../protocol/request.js';

export interface BatcherOptions {
  /** Runs at once: 1 on the main thread, the pool's size with worker threads. */
  concurrency: () => number;
  /** false: one request per run, dispatched at once (models that cannot batch). */
  batching: boolean;
  maxBatchSize: number;
  /** How long the first queued request may wait for others; 0 adds no wait. */
  maxWaitMs: number;
  /** Called once per model run, for metrics. */
  onRun?: (rows: number, seconds: number) => void;
  onQueued?: (seconds: number) => void;
  /** A request whose deadline passed before its run started. */
  onExpired?: () => void;
}

interface Pending {
  feeds: Tensors;
  rows: number;
  /** Requests batch together only when every non-batch dimension matches. */
  key: string;
  enqueuedAt: number;
  /** performance.now() by which it must be answered; Infinity: none. */
  deadline: number;
  resolve: (result: Tensors) => void;
  reject: (error: unknown) => void;
}

/** Runs a batch of `rows` rows; `deadline`: the latest of its requests'. */
type Run = (feeds: Tensors, rows: number, deadline: number) => Promise<Tensors>;

/** True when every input and output has a dynamic first dimension, so rows can be stacked and split. */
export function canBatch(inputs: ServableTensor[], outputs: ServableTensor[]): boolean {
  const dynamicFirst = (t: ServableTensor) => t.dims.length > 0 && typeof t.dims[0] === 'string' && t.dims[0] !== UNNAMED_DIM;
  if (!inputs.every(dynamicFirst) || !outputs.every(dynamicFirst)) return false;
  // The same name on every input and output ("batch") is the sign that it is the batch axis. An unnamed
  // first dimension may be time or sequence, where stacking two requests would mix their state.
  const symbol = inputs[0].dims[0];
  return [...inputs, ...outputs].every((t) => t.dims[0] === symbol);
}

/**
 * The queue in front of the model. With batching, requests that arrive
 * together are stacked along the first dimension, run as one batch, and split
 * back; without, they run one at a time, so that queue time and inference time
 * are measured apart either way. Up to `concurrency()` runs go at once (one a
 * worker thread).
 *
 * Dispatch waits one setImmediate: every request whose bytes were read in the
 * same poll phase joins the batch, at the cost of one loop turn, not a timer.
 * Requests read while every run slot is busy form the next batch.
 */
export class Batcher {
  private readonly queue: Pending[] = [];
  private running = 0;
  private dispatchScheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private splittable = true;

  constructor(
    private readonly run: Run,
    private readonly inputs: ServableTensor[],
    private readonly options: BatcherOptions,
  ) {}

  infer(feeds: Tensors, rows: number, deadline = Infinity): Promise<Tensors> {
    return new Promise((resolve, reject) => {
      const key = this.inputs.map((s) => feeds[s.name].dims.slice(1).join('x')).join('|');
      this.queue.push({ feeds, rows, key, enqueuedAt: performance.now(), deadline, resolve, reject });
      this.schedule();
    });
  }

  /** Requests still waiting or running; shutdown waits for this to reach zero. */
  get pending(): number {
    return this.queue.length + this.running;
  }

  private schedule(): void {
    if (this.running >= this.options.concurrency() || this.queue.length === 0) return;
    // Nothing to gather: a request that cannot be batched runs as soon as the model is free.
    if (!this.options.batching) return this.dispatch(false);
    const { maxWaitMs, maxBatchSize } = this.options;
    if (maxWaitMs > 0) {
      const queuedRows = this.queue.reduce((n, p) => n + p.rows, 0);
      const waited = performance.now() - this.queue[0].enqueuedAt;
      if (queuedRows < maxBatchSize && waited < maxWaitMs) {
        this.timer ??= setTimeout(() => {
          this.timer = undefined;
          this.dispatch(true);
        }, maxWaitMs - waited);
        return;
      }
    }
    if (this.dispatchScheduled) return;
    this.dispatchScheduled = true;
    setImmediate(() => {
      this.dispatchScheduled = false;
      this.dispatch(false);
    });
  }

  private dispatch(fromTimer: boolean): void {
    if (this.running >= this.options.concurrency() || this.queue.length === 0) return;
    if (!fromTimer && this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const batch = this.take();
    if (batch.length === 0) return;
    this.running++;
    void this.execute(batch).finally(() => {
      this.running--;
      this.schedule();
    });
    // More run slots free (worker threads): start the next batch too.
    if (this.queue.length > 0) this.schedule();
  }

  private take(): Pending[] {
    // Requests whose deadline passed while they waited are answered now, never run.
    const now = performance.now();
    while (this.queue.length > 0 && this.queue[0].deadline <= now) {
      this.options.onExpired?.();
      this.queue.shift()!.reject(new DeadlineExceeded('inference did not start before the deadline: the model was busy'));
    }
    if (this.queue.length === 0) return [];
    const first = this.queue.shift()!;
    const batch = [first];
    let rows = first.rows;
    if (!this.splittable || !this.options.batching) return batch;
    for (let i = 0; i < this.queue.length && rows < this.options.maxBatchSize;) {
      const next = this.queue[i];
      if (next.key === first.key && rows + next.rows <= this.options.maxBatchSize && next.deadline > now) {
        batch.push(next);
        rows += next.rows;
        this.queue.splice(i, 1);
      } else i++;
    }
    return batch;
  }

  private async execute(batch: Pending[]): Promise<void> {
    const started = performance.now();
    for (const p of batch) this.options.onQueued?.((started - p.enqueuedAt) / 1000);
    const rows = batch.reduce((n, p) => n + p.rows, 0);
    let deadline = batch[0].deadline;
    for (const p of batch) if (p.deadline > deadline) deadline = p.deadline;
    try {
      if (batch.length === 1) {
        const result = await this.run(batch[0].feeds, rows, deadline);
        this.options.onRun?.(rows, (performance.now() - started) / 1000);
        batch[0].resolve(result);
        return;
      }
      const result = await this.run(stack(this.inputs, batch), rows, deadline);
      this.options.onRun?.(rows, (performance.now() - started) / 1000);
      const split = unstack(result, batch, rows);
      if (split) {
        batch.forEach((p, i) => p.resolve(split[i]));
        return;
      }
      // An output's first dimension was not the batch after all: stop batching this model.
      this.splittable = false;
      for (const p of batch) p.resolve(await this.run(p.feeds, p.rows, p.deadline));
    } catch (error) {
      for (const p of batch) p.reject(error);
    }
  }
}

function stack(inputs: ServableTensor[], batch: Pending[]): Tensors {
  const feeds: Tensors = {};
  for (const spec of inputs) {
    const parts = batch.map((p) => p.feeds[spec.name]);
    const dims = [parts.reduce((n, t) => n + t.dims[0], 0), ...parts[0].dims.slice(1)];
    if (spec.datatype === 'BYTES') {
      feeds[spec.name] = { data: parts.flatMap((t) => t.data as string[]), dims };
      continue;
    }
    const length = parts.reduce((n, t) => n + t.data.length, 0);
    const data = allocate(spec.datatype, length) as Exclude<TensorData, string[]>;
    let offset = 0;
    for (const t of parts) {
      (data as Float32Array).set(t.data as Float32Array, offset);
      offset += t.data.length;
    }
    feeds[spec.name] = { data, dims };
  }
  return feeds;
}

function unstack(result: Tensors, batch: Pending[], rows: number): Tensors[] | null {
  const outs: Tensors[] = batch.map(() => ({}));
  for (const [name, tensor] of Object.entries(result)) {
    if (tensor.dims[0] !== rows) return null;
    const rowSize = rows === 0 ? 0 : tensor.data.length / rows;
    let row = 0;
    batch.forEach((p, i) => {
      const start = row * rowSize;
      const end = (row + p.rows) * rowSize;
      outs[i][name] = { data: tensor.data.slice(start, end), dims: [p.rows, ...tensor.dims.slice(1)] };
      row += p.rows;
    });
  }
  return outs;
}
