/**
 * The response cache (opt-in, server.responseCache.maxBytes), as Triton has one: a model's outputs for
 * inputs it has already answered, kept within a byte budget, least recently used first out. The key is
 * the model, its version, the decoded inputs (names, datatypes, shapes and a SHA-256 of their bytes) and
 * the outputs asked for; only successful runs are kept, never errors or explanations, and a request can
 * ask not to be served from it (Cache-Control: no-cache or no-store; gRPC metadata the same). Each
 * answer is still encoded for its own request (its id), and shadows still get every request.
 */
import { createHash } from 'node:crypto';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Tensor, Tensors } from '../model/session.js';
import type { TensorData } from '../model/datatypes.js';
import type { InferenceEngine } from './engine.js';

interface Entry {
  result: Tensors;
  bytes: number;
}

/** A request's own say: `Cache-Control: no-cache` or `no-store` is never answered from the cache. */
export function cacheRefused(cacheControl: unknown): boolean {
  return typeof cacheControl === 'string' && /\bno-(?:cache|store)\b/i.test(cacheControl);
}

export class ResponseCache {
  private readonly entries = new Map<string, Entry>();
  private held = 0;
  private readonly lookups: Counter<'result'>;
  private readonly hits: { inc(): void };
  private readonly misses: { inc(): void };
  private readonly heldGauge: Gauge;

  constructor(
    readonly maxBytes: number,
    registry: Registry,
  ) {
    this.lookups = new Counter({
      name: 'mlops_response_cache_lookups_total',
      help: 'Requests looked up in the response cache, by result (hit, miss)',
      labelNames: ['result'],
      registers: [registry],
    });
    this.hits = this.lookups.labels({ result: 'hit' });
    this.misses = this.lookups.labels({ result: 'miss' });
    this.heldGauge = new Gauge({ name: 'mlops_response_cache_bytes', help: 'Bytes of outputs the response cache holds', registers: [registry] });
  }

  get size(): number {
    return this.entries.size;
  }

  /** The key of a request: the model version, the inputs (hashed), the outputs asked for (undefined: all). */
  key(model: string, version: string, inputs: Tensors, outputs: string[] | undefined): string {
    const hash = createHash('sha256');
    const shapes: string[] = [];
    for (const name of Object.keys(inputs).sort()) {
      const { data, dims } = inputs[name];
      shapes.push(`${name}:${data.constructor.name}:${dims.join('x')}`);
      hash.update(bytesOf(data));
    }
    return `${model}\0${version}\0${shapes.join(',')}\0${outputs?.join(',') ?? '*'}\0${hash.digest('base64')}`;
  }

  /** The outputs kept for `key`, now the most recently used; undefined on a miss. */
  get(key: string): Tensors | undefined {
    const entry = this.entries.get(key);
    if (!entry) {
      this.misses.inc();
      return undefined;
    }
    this.hits.inc();
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.result;
  }

  /** Keeps a copy of `result` (a batch's outputs may be views of one buffer), making room from the least recently used. */
  set(key: string, result: Tensors): void {
    let bytes = key.length;
    const copy: Tensors = {};
    for (const [name, tensor] of Object.entries(result)) {
      copy[name] = copyOf(tensor);
      bytes += Array.isArray(copy[name].data) ? (copy[name].data as unknown[]).length * 16 : (copy[name].data as ArrayBufferView).byteLength;
    }
    if (bytes > this.maxBytes) return;
    const old = this.entries.get(key);
    if (old) {
      this.entries.delete(key);
      this.held -= old.bytes;
    }
    while (this.held + bytes > this.maxBytes) {
      const [oldest, entry] = this.entries.entries().next().value as [string, Entry];
      this.entries.delete(oldest);
      this.held -= entry.bytes;
    }
    this.entries.set(key, { result: copy, bytes });
    this.held += bytes;
    this.heldGauge.set(this.held);
  }

  /** Forgets every entry of a model (its files were loaded again, or it was unloaded). */
  forget(model: string): void {
    for (const [key, entry] of this.entries) {
      if (key.startsWith(`${model}\0`)) {
        this.entries.delete(key);
        this.held -= entry.bytes;
      }
    }
    this.heldGauge.set(this.held);
  }
}

function bytesOf(data: TensorData): Uint8Array {
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  // Strings (BYTES): their text, each with its length, so ["ab", "c"] and ["a", "bc"] differ.
  return Buffer.from((data as unknown[]).map((s) => `${String(s).length}:${String(s)}`).join(''));
}

function copyOf(tensor: Tensor): Tensor {
  return { data: tensor.data.slice(), dims: tensor.dims };
}

/**
 * A decoded request's outputs: from the cache when it holds them (counted in the live profile as a run
 * would be), else from the engine, kept for next time. The key is made before the run: batching may hand
 * the inputs' buffers to a worker. `refused`: the request asked not to be served from the cache.
 */
export async function inferCached(
  cache: ResponseCache | undefined,
  refused: boolean,
  engine: InferenceEngine,
  request: { inputs: Tensors; rows: number; outputs?: string[] },
  deadline: number,
): Promise<Tensors> {
  if (!cache || refused) return engine.infer(request.inputs, request.rows, deadline);
  const key = cache.key(engine.model.name, engine.model.version, request.inputs, request.outputs);
  const cached = cache.get(key);
  if (cached) {
    engine.countCached(request.inputs, cached);
    return cached;
  }
  const result = await engine.infer(request.inputs, request.rows, deadline);
  cache.set(key, result);
  return result;
}
