import { stat } from 'node:fs/promises';
import path from 'node:path';
import { inputError } from '../errors.js';
import type { ModelInfo } from '../model/inspect.js';

const UNITS: Record<string, number> = { '': 1, B: 1, K: 1e3, KB: 1e3, M: 1e6, MB: 1e6, G: 1e9, GB: 1e9, T: 1e12, TB: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };

/** "512Mi", "2Gi", "1.5G", "1048576": bytes. `name` says where the text came from, for the error. */
export function parseByteSize(text: string, name: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i|[KMGT]B?|B)?\s*$/.exec(text);
  if (!match) throw inputError(`${name} ${JSON.stringify(text)}: expected a size like 512Mi, 2Gi or 1G`);
  return Math.round(Number(match[1]) * UNITS[match[2] ?? '']);
}

export const formatBytes = (bytes: number) => (bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${(bytes / 2 ** 10).toFixed(1)} KiB`);

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
 */
export function checkMemoryBudget(options: { budget: number; budgetText: string; weights: number; workers: number; modelName: string }): void {
  const sessions = options.workers > 0 ? options.workers + 1 : 1;
  const needed = sessions * options.weights;
  if (options.budget > 0 && needed > options.budget) {
    throw inputError(
      `server.memoryBudget ${options.budgetText}: model '${options.modelName}' has ${formatBytes(options.weights)} of weights, and ${sessions} ONNX Runtime session(s) (${options.workers} worker(s)${options.workers > 0 ? ' and the main thread' : ''}) need at least ${formatBytes(needed)}`,
      'lower server.workers (MLOPS_WORKERS), raise server.memoryBudget (MLOPS_MEMORY_BUDGET), or make the model smaller (mlops optimize --quantize dynamic)',
    );
  }
}
