/**
 * The image's batch mode (MLOPS_MODE=batch): the server's entry point hands over to this, which scores
 * one shard (JOB_COMPLETION_INDEX, or MLOPS_BATCH_INDEXES for a retry) or every shard, with the same
 * reader, writer and workers as `mlops batch` on a laptop. Configured by the environment alone.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { isMlopsError } from '../errors.js';
import { PROCESSING_FILE, type ProcessingOverrides } from '../processing/plan.js';
import { batchModeFromEnv } from './image-mode.js';
import { runBatch } from './run-batch.js';

const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);

/** Runs the batch mode and ends the process: 0 done, 1 over the reject gate, else the error's exit code. */
export async function runImageBatch(env: NodeJS.ProcessEnv): Promise<never> {
  try {
    const { settings, shard } = batchModeFromEnv(env);
    const modelPath = path.resolve(env.MLOPS_MODEL_PATH || '/app/model/model.onnx');
    // The build wrote model.preprocess and model.postprocess beside the model, as the server reads them.
    const text = await readFile(path.join(path.dirname(modelPath), PROCESSING_FILE), 'utf8').catch(() => undefined);
    const overrides = text ? (JSON.parse(text) as ProcessingOverrides) : {};
    const rate = Number(env.MLOPS_BATCH_MAX_REJECT_RATE ?? 0);
    log(
      `batch: ${settings.input} -> ${settings.output}, ${shard === undefined ? (settings.shards ? `all ${settings.shards} shards` : 'every shard') : `shard ${shard} of ${settings.shards}`}`,
    );
    let shown = 0;
    const report = await runBatch({
      cwd: process.cwd(),
      env,
      model: { path: modelPath, ...overrides },
      input: settings.input,
      output: settings.output,
      format: settings.format,
      idColumn: settings.idColumn ?? 'id',
      columns: settings.columns ?? [],
      batchSize: settings.batchSize ?? 256,
      workers: settings.workers ?? 0,
      shardMegabytes: 8,
      maxRejectRate: Number.isFinite(rate) ? rate : 0,
      shardCount: settings.shards || undefined,
      ...(shard === undefined ? {} : { only: [shard] }),
      log,
      onProgress: (p) => {
        if (p.seconds - shown < 10) return;
        shown = p.seconds;
        log(`batch: ${p.records} of ${p.total} rows, shards ${p.shardsDone}/${p.shards}`);
      },
    });
    log(`batch: ${report.verdict} (${report.scored} scored, ${report.rejected} rejected, ${report.seconds.toFixed(1)} s)`);
    process.stdout.write(JSON.stringify(report) + '\n');
    process.exit(report.passed ? 0 : 1);
  } catch (error) {
    log(`error: ${isMlopsError(error) ? error.message : String((error as Error)?.stack ?? error)}`);
    if (isMlopsError(error) && error.hint) log(`hint: ${error.hint}`);
    process.exit(isMlopsError(error) ? error.exitCode : 70);
  }
}
