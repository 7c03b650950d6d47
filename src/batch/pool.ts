/**
 * Worker threads scoring shards: each takes the next shard when it finishes one, so a slow shard
 * holds one core, not the run. A worker's error ends the run with that error (the first one).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { MlopsError, type ExitCode } from '../errors.js';
import { cleanupOnInterrupt } from '../process/interrupt.js';
import type { ShardFiles, ShardResult } from './score.js';
import type { WorkerMessage, WorkerSetup } from './worker.js';

/** Beside the bundle in an image (batch-worker.mjs), beside this module in dist/batch/, or in dist/ when this runs from src/ (tests). */
function workerScript(): URL {
  const candidates = ['./batch-worker.mjs', './worker.js', '../../dist/batch/worker.js'].map((p) => new URL(p, import.meta.url));
  const found = candidates.find((u) => existsSync(fileURLToPath(u)));
  if (!found)
    throw new MlopsError(`the batch worker script is missing (looked for ${candidates.map((u) => fileURLToPath(u)).join(', ')})`, {
      exitCode: 70,
      hint: 'run npm run build',
    });
  return found;
}

export interface PoolJob {
  shard: number;
  files: ShardFiles;
  take: number;
}

/**
 * Runs the jobs on `size` workers. `onDone` runs (in order of completion) before a worker takes its next
 * job, so a shard is published and recorded before the run moves on.
 */
export async function runOnWorkers(
  size: number,
  setup: WorkerSetup,
  jobs: PoolJob[],
  onRows: (count: number) => void,
  onDone: (result: ShardResult) => Promise<void>,
  onInterrupt?: () => void,
): Promise<void> {
  if (jobs.length === 0) return;
  const script = workerScript();
  // A capped heap makes V8 collect as it goes: uncapped, each worker's heap grew with the rows it had read
  // (1.3x the peak RSS for 1M rows as for 100k), though nothing stayed live. The cap leaves room for the
  // plan each worker holds (a folder of many images lists every file) and a batch of rows several times over.
  // The young generation at 32 MB: at 16 the scavenges cost a tenth of the rows a second; at 64 the peak grew again.
  const heapCap = Math.ceil(256 + (3 * JSON.stringify(setup.plan).length) / 2 ** 20);
  const queue = [...jobs];
  const workers: Worker[] = [];
  const stop = () => Promise.all(workers.map((w) => w.terminate()));
  // On Ctrl-C or SIGTERM the signal ends the process and its threads as it is: terminating a worker in the
  // middle of a run aborts inside ONNX Runtime's binding (exit 134). Finished shards are recorded; a
  // shard under way left only its .partial files, which the next run writes again.
  const release = cleanupOnInterrupt(async () => onInterrupt?.());
  try {
    await new Promise<void>((resolve, reject) => {
      let running = 0;
      let failed = false;
      const fail = (error: Error) => {
        if (failed) return;
        failed = true;
        reject(error);
      };
      const next = (worker: Worker) => {
        const job = queue.shift();
        if (!job) {
          running--;
          if (running === 0 && !failed) resolve();
          return;
        }
        worker.postMessage(job);
      };
      for (let i = 0; i < Math.min(size, jobs.length); i++) {
        const worker = new Worker(script, { workerData: setup, resourceLimits: { maxYoungGenerationSizeMb: 32, maxOldGenerationSizeMb: heapCap } });
        workers.push(worker);
        running++;
        worker.on('message', (message: WorkerMessage) => {
          if (message.type === 'ready') next(worker);
          else if (message.type === 'rows') onRows(message.count);
          else if (message.type === 'done') onDone(message.result).then(() => next(worker), fail);
          else
            fail(
              new MlopsError(message.stack && message.exitCode === 70 ? `${message.message}\n${message.stack}` : message.message, {
                exitCode: message.exitCode as ExitCode,
                hint: message.hint,
              }),
            );
        });
        worker.on('error', (error: Error & { code?: string }) =>
          fail(
            error.code === 'ERR_WORKER_OUT_OF_MEMORY'
              ? new MlopsError(`a batch worker ran out of memory (its heap is capped at ${heapCap} MB)`, {
                  exitCode: 70,
                  hint: 'lower --batch-size, and report it',
                })
              : error,
          ),
        );
        worker.on('exit', (code) => {
          if (code !== 0) fail(new MlopsError(`a batch worker ended with code ${code}`, { exitCode: 70 }));
        });
      }
    });
  } finally {
    release();
    await stop();
  }
}
