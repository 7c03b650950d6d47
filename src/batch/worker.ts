/**
 * A batch worker thread: one ONNX Runtime session of one thread, scoring the shards the main thread
 * hands it, one at a time. Errors go back as data (message, hint, exit code), as MlopsError carries them.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isMlopsError } from '../errors.js';
import { loadModel } from '../model/session.js';
import { createPreprocessor, type ProcessingPlan } from '../processing/plan.js';
import { objectStoreFor } from '../storage/index.js';
import { byteReader } from './input.js';
import type { BatchPlan } from './plan.js';
import type { ReadSettings } from './read.js';
import { scoreShard, type Scorer, type ShardFiles, type ShardResult } from './score.js';
import type { OutputLayout } from './write.js';

export interface WorkerSetup {
  modelPath: string;
  processing?: ProcessingPlan;
  layout: OutputLayout;
  read: Omit<ReadSettings, 'reader'>;
  batchSize: number;
  fixedBatch: boolean;
  plan: BatchPlan;
  env: NodeJS.ProcessEnv;
}

export type WorkerJob = { shard: number; files: ShardFiles; take: number };
export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'rows'; count: number }
  | { type: 'done'; result: ShardResult }
  | { type: 'failed'; message: string; hint?: string; exitCode: number; stack?: string };

const setup = workerData as WorkerSetup;
const port = parentPort!;
const fail = (error: unknown) => {
  const message: WorkerMessage = isMlopsError(error)
    ? { type: 'failed', message: error.message, hint: error.hint, exitCode: error.exitCode }
    : { type: 'failed', message: String((error as Error)?.message ?? error), exitCode: 70, stack: (error as Error)?.stack };
  port.postMessage(message);
};

try {
  const model = await loadModel({ path: setup.modelPath, intraOpThreads: 1 });
  const scorer: Scorer = {
    model,
    plan: setup.processing,
    preprocessor: setup.processing ? createPreprocessor(setup.processing) : undefined,
    layout: setup.layout,
    read: { ...setup.read, reader: byteReader((uri) => objectStoreFor(uri, setup.env)) },
    batchSize: setup.batchSize,
    fixedBatch: setup.fixedBatch,
  };
  port.on('message', (job: WorkerJob) => {
    let pending = 0;
    const onRows = (count: number) => {
      pending += count;
      if (pending >= 1024) {
        port.postMessage({ type: 'rows', count: pending } satisfies WorkerMessage);
        pending = 0;
      }
    };
    scoreShard(scorer, setup.plan, setup.plan.shards[job.shard], job.files, job.take, onRows).then((result) => {
      if (pending > 0) port.postMessage({ type: 'rows', count: pending } satisfies WorkerMessage);
      port.postMessage({ type: 'done', result } satisfies WorkerMessage);
    }, fail);
  });
  port.postMessage({ type: 'ready' } satisfies WorkerMessage);
} catch (error) {
  fail(error);
}
