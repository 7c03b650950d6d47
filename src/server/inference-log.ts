/**
 * The server's inference log: a sample of requests, a JSON line per row (see
 * monitor/inference-records.ts), sent to stdout, a file or an HTTP collector
 * in batches. Memory is bounded: when the sink is slow or down, rows are
 * dropped and counted, and inference never waits for the log.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, createWriteStream, openSync, write, type WriteStream } from 'node:fs';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config } from '../config/defaults.js';
import { inputError } from '../errors.js';
import { CLOUDEVENT_TYPE, type RecordModel } from '../monitor/inference-records.js';

/** sample: the share of requests logged (0: off); sink: "stdout", "file:/path" or an http(s):// URL; inputs: log them too. */
export type InferenceLogSettings = Config['server']['inferenceLog'];

export type InferenceLogSink = { kind: 'stdout' } | { kind: 'file'; path: string } | { kind: 'http'; url: string };

export function parseSink(text: string, where: string): InferenceLogSink {
  if (text === 'stdout') return { kind: 'stdout' };
  if (text.startsWith('file:')) {
    const file = text.startsWith('file://') ? new URL(text).pathname : text.slice('file:'.length);
    if (!file.startsWith('/')) throw inputError(`${where}: ${text}: the file sink needs an absolute path`, 'write it as file:/var/log/mlops/inference.jsonl');
    return { kind: 'file', path: file };
  }
  if (/^https?:\/\//.test(text)) {
    try {
      return { kind: 'http', url: new URL(text).toString() };
    } catch {
      // falls through to the error below
    }
  }
  throw inputError(`${where}: ${JSON.stringify(text)} is not a sink`, 'use "stdout", "file:/absolute/path.jsonl" or an http(s):// collector URL');
}

/** How much the log holds and sends at once; tests shrink them. */
export interface InferenceLogLimits {
  /** Rows waiting for the sink, in bytes of JSON; beyond it new rows are dropped. */
  maxQueueBytes: number;
  /** The most one write or POST carries. */
  batchBytes: number;
  /** Rows wait at most this long before they are sent. */
  flushMs: number;
  /** A POST that takes longer has failed. */
  timeoutMs: number;
  /** After a failed send, the first wait before the next; it doubles up to maxBackoffMs. */
  backoffMs: number;
  maxBackoffMs: number;
}

export const INFERENCE_LOG_LIMITS: InferenceLogLimits = {
  maxQueueBytes: 16 * 2 ** 20,
  batchBytes: 2 ** 20,
  flushMs: 1000,
  timeoutMs: 5000,
  backoffMs: 1000,
  maxBackoffMs: 30_000,
};

type Send = (lines: string[]) => Promise<void>;

export class InferenceLog {
  readonly sample: number;
  readonly inputs: boolean;
  readonly sink: InferenceLogSink;
  private queue: string[] = [];
  private queuedBytes = 0;
  private queuedRows: number[] = [];
  private sending = false;
  private timer: NodeJS.Timeout | undefined;
  private retryAt = 0;
  private failures = 0;
  private droppedSinceFailure = 0;
  private readonly send: Send;
  private readonly close_: () => Promise<void>;
  private readonly logged: Counter;
  private readonly dropped: Counter<'reason'>;

  constructor(
    settings: InferenceLogSettings,
    model: RecordModel,
    registry: Registry,
    private readonly log: (line: string) => void,
    private readonly limits: InferenceLogLimits = INFERENCE_LOG_LIMITS,
  ) {
    this.sample = settings.sample;
    this.inputs = settings.inputs;
    this.sink = parseSink(settings.sink, 'server.inferenceLog.sink');
    ({ send: this.send, close: this.close_ } = openSink(this.sink, model, limits));
    this.logged = new Counter({ name: 'mlops_inference_log_rows_total', help: 'Rows the inference log handed to its sink.', registers: [registry] });
    this.dropped = new Counter({
      name: 'mlops_inference_log_dropped_total',
      help: 'Rows the inference log dropped: queue-full (the sink fell behind), sink-error (a write or POST failed).',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.dropped.inc({ reason: 'queue-full' }, 0);
    this.dropped.inc({ reason: 'sink-error' }, 0);
    const queuedBytes = () => this.queuedBytes;
    new Gauge({
      name: 'mlops_inference_log_queue_bytes',
      help: 'Bytes of log rows waiting for the sink.',
      registers: [registry],
      collect() {
        this.set(queuedBytes());
      },
    });
  }

  /** Whether to log this request: decided once per request, so a request's rows are logged together. */
  sampled(): boolean {
    return this.sample >= 1 || Math.random() < this.sample;
  }

  /** A request's lines (see encodeInferenceRecords). Never waits, never throws. */
  add(text: string, rows: number): void {
    if (this.queuedBytes + text.length > this.limits.maxQueueBytes) {
      this.drop('queue-full', rows);
      return;
    }
    this.queue.push(text);
    this.queuedRows.push(rows);
    this.queuedBytes += text.length;
    if (this.queuedBytes >= this.limits.batchBytes) setImmediate(() => this.flush());
    else this.timer ??= setTimeout(() => this.flush(), this.limits.flushMs);
  }

  private drop(reason: 'queue-full' | 'sink-error', rows: number): void {
    this.dropped.inc({ reason }, rows);
    if (this.failures > 0) this.droppedSinceFailure += rows;
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.sending || this.queue.length === 0) return;
    const wait = this.retryAt - Date.now();
    if (wait > 0) {
      this.timer = setTimeout(() => this.flush(), wait);
      return;
    }
    let bytes = 0;
    let count = 0;
    while (count < this.queue.length && (count === 0 || bytes + this.queue[count].length <= this.limits.batchBytes)) bytes += this.queue[count++].length;
    const batch = this.queue.splice(0, count);
    const rows = this.queuedRows.splice(0, count).reduce((a, b) => a + b, 0);
    this.queuedBytes -= bytes;
    this.sending = true;
    this.send(batch)
      .then(
        () => {
          this.logged.inc(rows);
          if (this.failures > 0) this.log(`inference log: ${describeSink(this.sink)} is back; ${this.droppedSinceFailure} rows were dropped meanwhile`);
          this.failures = 0;
          this.droppedSinceFailure = 0;
          this.retryAt = 0;
        },
        (error: unknown) => {
          if (this.failures === 0) this.log(`warning: inference log: ${describeSink(this.sink)} failed (${why(error)}); dropping rows until it answers`);
          this.failures++;
          this.drop('sink-error', rows);
          this.retryAt = Date.now() + Math.min(this.limits.maxBackoffMs, this.limits.backoffMs * 2 ** (this.failures - 1));
        },
      )
      .finally(() => {
        this.sending = false;
        if (this.queue.length > 0) {
          if (this.queuedBytes >= this.limits.batchBytes || this.retryAt > Date.now()) this.flush();
          else this.timer ??= setTimeout(() => this.flush(), this.limits.flushMs);
        }
      });
  }

  /** Sends what is queued, for at most timeoutMs; what is left then is dropped and counted. */
  async close(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    this.retryAt = 0;
    while ((this.queue.length > 0 || this.sending) && Date.now() < deadline) {
      this.flush();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const left = this.queuedRows.reduce((a, b) => a + b, 0);
    if (left > 0) this.drop('sink-error', left);
    this.queue = [];
    this.queuedRows = [];
    this.queuedBytes = 0;
    await this.close_();
  }
}

/** fetch() says only "fetch failed"; the reason (ECONNREFUSED, a timeout) is in its cause. */
function why(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (error as NodeJS.ErrnoException)?.code ?? (error as Error)?.message ?? String(error);
}

export function describeSink(sink: InferenceLogSink): string {
  return sink.kind === 'stdout' ? 'stdout' : sink.kind === 'file' ? `file ${sink.path}` : `collector ${sink.url}`;
}

function openSink(sink: InferenceLogSink, model: RecordModel, limits: InferenceLogLimits): { send: Send; close: () => Promise<void> } {
  if (sink.kind === 'http') return httpSink(sink.url, model, limits);
  let stream: WriteStream;
  if (sink.kind === 'file') {
    // Opened now so that a path the server cannot write stops it at start, naming the file.
    let fd: number;
    try {
      fd = openSync(sink.path, 'a');
    } catch (error) {
      throw inputError(
        `server.inferenceLog.sink: cannot open ${sink.path} for appending: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
        'give a writable path (in Kubernetes, under /tmp or a mounted volume)',
      );
    }
    stream = createWriteStream('', { fd, autoClose: false });
    stream.on('close', () => closeSync(fd));
  } else {
    // fd 1 through the thread pool: process.stdout writes to a pipe synchronously on Linux, which would stall the event loop.
    return { send: (lines) => writeAll(1, lines.join('')), close: async () => undefined };
  }
  stream.on('error', () => undefined);
  return {
    send: (lines) => new Promise((resolve, reject) => stream.write(lines.join(''), (error) => (error ? reject(error) : resolve()))),
    close: () => new Promise((resolve) => (sink.kind === 'file' ? stream.end(resolve) : resolve())),
  };
}

/**
 * Writes all of `text` to `fd`, waiting while a non-blocking pipe is full (EAGAIN). Docker hands a
 * container's stdout over as such a pipe, and a burst of records fills its 64 KiB faster than the
 * log driver reads: a write stream fails there, and the sink dropped every row after it.
 */
function writeAll(fd: number, text: string): Promise<void> {
  const bytes = Buffer.from(text);
  return new Promise((resolve, reject) => {
    let offset = 0;
    const step = (): void =>
      write(fd, bytes, offset, bytes.length - offset, null, (error, written) => {
        if (error) return void (error.code === 'EAGAIN' ? setTimeout(step, 5) : reject(error));
        offset += written;
        if (offset < bytes.length) step();
        else resolve();
      });
    step();
  });
}

/**
 * CloudEvents 1.0 in the JSON batch format (application/cloudevents-batch+json):
 * one structured event per row, its `data` the row's record. KServe's logger
 * sends one binary-mode event per request instead; a batch per POST keeps a
 * busy server to a few POSTs a second.
 */
/** The model and version at the head of a record line (see encodeInferenceRecords). */
const RECORD_SOURCE = /"model":("(?:[^"\\]|\\.)*"),"version":("(?:[^"\\]|\\.)*")/;

function httpSink(url: string, model: RecordModel, limits: InferenceLogLimits): { send: Send; close: () => Promise<void> } {
  // Each record's own model and version (a server may hold several); the server's first when a line says none.
  const fallback = JSON.stringify(`/mlops/models/${model.name}/versions/${model.version}`);
  const sourceOf = (line: string) => {
    const named = RECORD_SOURCE.exec(line);
    return named ? JSON.stringify(`/mlops/models/${JSON.parse(named[1])}/versions/${JSON.parse(named[2])}`) : fallback;
  };
  const boot = randomUUID();
  let sequence = 0;
  return {
    async send(lines) {
      const events: string[] = [];
      for (const text of lines) {
        for (const line of text.split('\n')) {
          if (line)
            events.push(
              `{"specversion":"1.0","id":"${boot}-${sequence++}","source":${sourceOf(line)},"type":"${CLOUDEVENT_TYPE}","datacontenttype":"application/json","data":${line}}`,
            );
        }
      }
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/cloudevents-batch+json' },
        body: `[${events.join(',')}]`,
        signal: AbortSignal.timeout(limits.timeoutMs),
      });
      await response.arrayBuffer().catch(() => undefined);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
    },
    close: async () => undefined,
  };
}
