import { stat } from 'node:fs/promises';
import path from 'node:path';
import { inputError } from '../errors.js';
import { BadRequest } from '../protocol/request.js';
import type { ModelInfo } from '../model/inspect.js';

const UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  K: 1e3,
  KB: 1e3,
  M: 1e6,
  MB: 1e6,
  G: 1e9,
  GB: 1e9,
  T: 1e12,
  TB: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/** "512Mi", "2Gi", "1.5G", "1048576": bytes. `name` says where the text came from, for the error. */
export function parseByteSize(text: string, name: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i|[KMGT]B?|B)?\s*$/.exec(text);
  if (!match) throw inputError(`${name} ${JSON.stringify(text)}: expected a size like 512Mi, 2Gi or 1G`);
  return Math.round(Number(match[1]) * UNITS[match[2] ?? '']);
}

export const formatBytes = (bytes: number) =>
  bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${(bytes / 2 ** 10).toFixed(1)} KiB`;

/** The model's weights on disk: the .onnx file and any external data beside it. */
export async function weightBytes(info: Pick<ModelInfo, 'path' | 'sizeBytes' | 'externalData'>): Promise<number> {
  let total = info.sizeBytes;
  for (const file of info.externalData) total += (await stat(path.join(path.dirname(info.path), file))).size;
  return total;
}

/**
 * Refuses a start (exit 2) when the sessions the server would load cannot fit the budget: a session
 * holds at least the weights, and there is one per worker plus the main thread's when small batches
 * run there (the worst case is counted, as the placement is decided only after the workers start).
 * A server of several models (or versions) claims for each in turn; the sum is what must fit.
 */
export class MemoryLedger {
  private readonly claims: { label: string; bytes: number }[] = [];
  constructor(
    private readonly budget: number,
    private readonly budgetText: string,
  ) {}

  /** What the budget leaves beside the sessions claimed: for requests (bodies, decoded tensors, outputs). */
  get room(): number {
    return this.budget - this.claims.reduce((n, c) => n + c.bytes, 0);
  }

  static from(text: string): MemoryLedger | undefined {
    return text ? new MemoryLedger(parseByteSize(text, 'server.memoryBudget'), text) : undefined;
  }

  /** Counts one model version's sessions; throws, naming every claim, when the total would not fit. Returns what gives the claim back. */
  claim(options: { weights: number; workers: number; modelName: string; version?: string }): () => void {
    const sessions = options.workers > 0 ? options.workers + 1 : 1;
    const needed = sessions * options.weights;
    const label = `model '${options.modelName}'${options.version !== undefined ? ` version ${options.version}` : ''}`;
    const held = this.claims.reduce((n, c) => n + c.bytes, 0);
    if (this.budget > 0 && held + needed > this.budget) {
      const own = `${label} has ${formatBytes(options.weights)} of weights, and ${sessions} ONNX Runtime session(s) (${options.workers} worker(s)${options.workers > 0 ? ' and the main thread' : ''}) need at least ${formatBytes(needed)}`;
      const others =
        this.claims.length > 0 ? `, on top of ${formatBytes(held)} for ${this.claims.map((c) => `${c.label} (${formatBytes(c.bytes)})`).join(', ')}` : '';
      throw inputError(
        `server.memoryBudget ${this.budgetText}: ${own}${others}`,
        `lower server.workers (MLOPS_WORKERS${this.claims.length > 0 ? ", or a model's own workers" : ''}), raise server.memoryBudget (MLOPS_MEMORY_BUDGET), or make the model smaller (mlops optimize --quantize dynamic)`,
      );
    }
    const claim = { label, bytes: needed };
    this.claims.push(claim);
    return () => {
      const at = this.claims.indexOf(claim);
      if (at >= 0) this.claims.splice(at, 1);
    };
  }
}

/**
 * A request is held in memory about this many times its body's size while it is decoded, run and
 * answered: the body, the decoded tensors, the outputs and the encoded answer. An estimate, on the
 * safe side for the models served here (a JSON number of 2 bytes decodes to 4 or 8).
 */
export const REQUEST_MEMORY_FACTOR = 4;

/**
 * server.memoryBudget at run time: what the sessions leave (the room) holds the bodies still arriving
 * and every request in hand, estimated at REQUEST_MEMORY_FACTOR times its body. A request that would
 * not fit gets 503 with Retry-After (413 when it could never fit), never an out-of-memory kill. Before,
 * the budget was checked only at start, and large concurrent bodies reached 700 MB over a 64 MiB one.
 */
export class RequestMemory {
  private used = 0;

  constructor(
    private readonly room: () => number,
    private readonly arriving: () => number,
    private readonly budgetText: string,
  ) {}

  /** Reserves memory for a request of `bodyBytes`; returns what gives it back, or throws 503 (413) when it would not fit. */
  reserve(bodyBytes: number): () => void {
    const bytes = bodyBytes * REQUEST_MEMORY_FACTOR;
    const room = this.room();
    if (bytes > room) {
      throw new BadRequest(
        `this request would need about ${formatBytes(bytes)} while it is served, more than server.memoryBudget ${this.budgetText} leaves beside the model sessions (${formatBytes(room)}): send fewer rows per request`,
        413,
      );
    }
    if (this.used + this.arriving() + bytes > room) {
      throw new BadRequest(
        `the server is holding ${formatBytes(this.used + this.arriving())} of requests, near server.memoryBudget ${this.budgetText}; retry shortly`,
        503,
      );
    }
    this.used += bytes;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.used -= bytes;
    };
  }
}
