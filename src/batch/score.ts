/**
 * Scores one shard: reads its pieces, runs the model a batch at a time, writes the part and the
 * rejects. Runs in a worker thread, with its own ONNX Runtime session of one thread; rows stream
 * through, so memory holds a batch, not the shard.
 */
import { rename } from 'node:fs/promises';
import { rowsToTensors } from '../evaluate/batches.js';
import type { HoldoutRow } from '../holdout/types.js';
import { ModelRunError } from '../model/run-error.js';
import type { LoadedModel, Tensors } from '../model/session.js';
import { asNumbers } from '../predict/predictor.js';
import { topLabels } from '../processing/labels.js';
import type { Preprocessor, ProcessingPlan } from '../processing/plan.js';
import { BadRequest } from '../protocol/request.js';
import { readPiece, RowProblem, type BatchItem, type ReadSettings, type RowId } from './read.js';
import type { BatchPlan, Shard } from './plan.js';
import { HashedFile, openPartWriter, type OutputLayout, type ScoredRows } from './write.js';

export interface ShardFiles {
  part: string;
  rejects: string;
}

export interface ShardResult {
  index: number;
  /** Rows read (scored + rejected). */
  records: number;
  scored: number;
  rejected: number;
  part: { bytes: number; sha256: string };
  rejects: { bytes: number; sha256: string };
}

export interface Scorer {
  model: LoadedModel;
  preprocessor?: Preprocessor;
  plan?: ProcessingPlan;
  layout: OutputLayout;
  read: ReadSettings;
  batchSize: number;
  /** The model's first dimension is fixed: short batches are padded to it. */
  fixedBatch: boolean;
}

interface Pending {
  rowId: RowId;
  where: string;
  row: HoldoutRow;
}

/** Scores a shard into its part and rejects files (under temporary names, renamed when whole). */
export async function scoreShard(
  scorer: Scorer,
  batchPlan: BatchPlan,
  shard: Shard,
  files: ShardFiles,
  take: number,
  onRows: (count: number) => void,
): Promise<ShardResult> {
  const part = openPartWriter(`${files.part}.partial`, scorer.layout);
  const rejects = new HashedFile(`${files.rejects}.partial`);
  const rejectLines: string[] = [];
  let records = 0;
  let scored = 0;
  let rejected = 0;
  const reject = (rowId: RowId, where: string, reason: string) => {
    rejected++;
    rejectLines.push(JSON.stringify({ ...rowId, where, reason }));
  };
  let batch: Pending[] = [];
  let raws: Extract<BatchItem, { kind: 'raw' }>[] = [];
  const runBatch = async () => {
    if (raws.length > 0) batch.push(...(await preprocessRaws(scorer, raws, reject)));
    raws = [];
    if (batch.length === 0) return;
    const done = await scoreRows(scorer, batch, reject);
    if (done.rowIds.length > 0) await part.add(done);
    scored += done.rowIds.length;
    onRows(batch.length);
    batch = [];
  };
  outer: for (const piece of shard.pieces) {
    for await (const item of readPiece(batchPlan.files[piece.file], piece, scorer.read)) {
      if (records >= take) break outer;
      records++;
      if (item.kind === 'reject') reject(item.rowId, item.where, item.reason);
      else if (item.kind === 'raw') raws.push(item);
      else batch.push({ rowId: item.rowId, where: item.where, row: { where: item.where, inputs: item.inputs, shapes: item.shapes, label: '' } });
      if (batch.length + raws.length >= scorer.batchSize) await runBatch();
      if (rejectLines.length >= 256) await flushRejects();
    }
  }
  await runBatch();
  await flushRejects();
  const partFile = await part.close();
  const rejectsFile = await rejectsClose();
  await rename(`${files.part}.partial`, files.part);
  await rename(`${files.rejects}.partial`, files.rejects);
  return { index: shard.index, records, scored, rejected, part: partFile, rejects: rejectsFile };

  async function flushRejects() {
    if (rejectLines.length === 0) return;
    await rejects.write(rejectLines.join('\n') + '\n');
    rejectLines.length = 0;
  }
  function rejectsClose() {
    return rejects.close();
  }
}

/** Images decoded and texts tokenized, a batch at a time; a row whose input fails is a reject. */
async function preprocessRaws(
  scorer: Scorer,
  raws: Extract<BatchItem, { kind: 'raw' }>[],
  reject: (rowId: RowId, where: string, reason: string) => void,
): Promise<Pending[]> {
  const preprocessor = scorer.preprocessor;
  const done = await Promise.all(
    raws.map(async (item): Promise<Pending | undefined> => {
      try {
        if (!preprocessor) throw new RowProblem('the model takes tensors, not raw images or texts');
        const raw = await item.load();
        let feeds: Tensors;
        if (preprocessor.tokenizer) {
          const text = typeof raw === 'string' ? raw : new TextDecoder('utf-8', { fatal: true }).decode(raw);
          const one = preprocessor.tokenizer.encodeOne(text, item.where);
          feeds = preprocessor.tokenizer.feeds([one.ids], [one.typeIds], preprocessor.tokenizer.settings.maxLength);
        } else feeds = (await preprocessor.toFeeds([raw], () => item.where)).feeds;
        const row: HoldoutRow = { where: item.where, inputs: {}, shapes: {}, label: '' };
        for (const [name, tensor] of Object.entries(feeds)) {
          const data = tensor.data;
          row.inputs[name] = data instanceof BigInt64Array || data instanceof BigUint64Array ? Float64Array.from(data, Number) : data;
          row.shapes[name] = tensor.dims.slice(1);
        }
        return { rowId: item.rowId, where: item.where, row };
      } catch (error) {
        if (error instanceof RowProblem || error instanceof BadRequest || (error as { exitCode?: number }).exitCode === 2)
          reject(item.rowId, item.where, stripWhere((error as Error).message, item.where));
        else throw error;
        return undefined;
      }
    }),
  );
  return done.filter((p): p is Pending => p !== undefined);
}

const stripWhere = (message: string, where: string) => (message.startsWith(`${where}: `) ? message.slice(where.length + 2) : message);

/** Runs a batch; when the model fails on it, each row alone, so that only the rows it cannot score are rejected. */
async function scoreRows(scorer: Scorer, batch: Pending[], reject: (rowId: RowId, where: string, reason: string) => void): Promise<ScoredRows> {
  try {
    return await run(scorer, batch);
  } catch (error) {
    if (!(error instanceof ModelRunError) && !(error instanceof RangeError)) throw error;
    if (batch.length === 1) {
      reject(batch[0].rowId, batch[0].where, `the model failed on this row: ${error.message}`);
      return { rowIds: [], values: {} };
    }
  }
  const merged: ScoredRows = {
    rowIds: [],
    values: Object.fromEntries(scorer.model.outputs.map((o) => [o.name, []])),
    labels: scorer.layout.labels ? [] : undefined,
  };
  for (const one of batch) {
    const result = await scoreRows(scorer, [one], reject);
    merged.rowIds.push(...result.rowIds);
    for (const name of Object.keys(merged.values)) merged.values[name].push(...(result.values[name] ?? []));
    if (merged.labels && result.labels) merged.labels.push(...result.labels);
  }
  return merged;
}

async function run(scorer: Scorer, batch: Pending[]): Promise<ScoredRows> {
  const rows = batch.map((p) => p.row);
  const shapes = rows[0].shapes;
  // Rows of another shape (a dynamic dimension) cannot stack with the first: each such row runs alone.
  if (rows.some((r) => Object.keys(shapes).some((name) => r.shapes[name]?.join() !== shapes[name].join()))) throw new RangeError('rows of different shapes');
  const feeds = rowsToTensors(rows, scorer.model.inputs, scorer.fixedBatch ? scorer.batchSize : rows.length);
  const outputs = await scorer.model.run(feeds);
  const values: ScoredRows['values'] = {};
  for (const spec of scorer.model.outputs) {
    const tensor = outputs[spec.name];
    const data = asNumbers(spec.datatype, tensor.data);
    const width = tensor.dims.slice(1).reduce((n, d) => n * d, 1);
    const perRow: (ArrayLike<number> | string[])[] = [];
    for (let r = 0; r < batch.length; r++)
      perRow.push(Array.isArray(data) ? data.slice(r * width, (r + 1) * width) : (data as Float32Array).subarray(r * width, (r + 1) * width));
    values[spec.name] = perRow;
  }
  const labelSettings = scorer.plan?.labels;
  const labels =
    scorer.layout.labels && labelSettings
      ? topLabels(outputs[labelSettings.output], labelSettings, 1)
          .slice(0, batch.length)
          .map((l) => l[0])
      : undefined;
  return { rowIds: batch.map((p) => p.rowId), values, labels };
}
