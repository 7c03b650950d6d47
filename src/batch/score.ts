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
import { parseCellsInto, readPiece, RowProblem, type BatchItem, type ColumnsPlan, type ReadSettings, type RowId } from './read.js';
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

/**
 * Rows on their way to the model: the batch's tensors themselves for float feature columns (filled as
 * rows are read), else the rows, stacked when the batch runs.
 */
interface Batch {
  rowIds: RowId[];
  /** Where row i is, for a reject. */
  where(index: number): string;
  /** The batch's feeds, padded to a fixed batch size. */
  feeds(): Tensors;
  /** One row's feeds, for finding the rows a failed batch cannot score. */
  one(index: number): Tensors;
}

function rowBatch(scorer: Scorer, rows: Pending[]): Batch {
  return {
    rowIds: rows.map((p) => p.rowId),
    where: (index) => rows[index].where,
    feeds: () => {
      const shapes = rows[0].row.shapes;
      // Rows of another shape (a dynamic dimension) cannot stack with the first: each such row runs alone.
      if (rows.some((r) => Object.keys(shapes).some((name) => r.row.shapes[name]?.join() !== shapes[name].join())))
        throw new RangeError('rows of different shapes');
      return rowsToTensors(
        rows.map((p) => p.row),
        scorer.model.inputs,
        scorer.fixedBatch ? scorer.batchSize : rows.length,
      );
    },
    one: (index) => rowsToTensors([rows[index].row], scorer.model.inputs, scorer.fixedBatch ? scorer.batchSize : 1),
  };
}

/** Float feature columns parsed straight into reused tensors of batchSize rows. */
class CellBatch {
  readonly tensors: Record<string, Float32Array | Float64Array>;
  private readonly widths: Record<string, number>;
  rowIds: RowId[] = [];
  private ats: (() => string)[] = [];
  /** Sized by the plan's columns: a float input with a known row size (what makes a 'cells' item). */
  constructor(
    private readonly scorer: Scorer,
    plan: ColumnsPlan,
  ) {
    this.tensors = {};
    this.widths = {};
    for (const { layout, indices } of plan.inputs) {
      this.widths[layout.name] = indices.length;
      this.tensors[layout.name] =
        layout.datatype === 'FP64' ? new Float64Array(scorer.batchSize * indices.length) : new Float32Array(scorer.batchSize * indices.length);
    }
  }
  get count(): number {
    return this.rowIds.length;
  }
  /** Parses the row in; the reason it cannot, or undefined. */
  add(item: Extract<BatchItem, { kind: 'cells' }>): string | undefined {
    const problem = parseCellsInto(item.cells, item.plan, this.tensors, this.count);
    if (problem) return problem;
    this.rowIds.push(item.rowId);
    this.ats.push(item.at);
    return undefined;
  }
  /** The filled rows as a batch; the tensors are reused once it has run. */
  take(): Batch {
    const count = this.count;
    const rows = this.scorer.fixedBatch ? this.scorer.batchSize : count;
    const slice = (name: string, from: number, to: number, size: number): Tensors[string] => {
      const width = this.widths[name];
      const data = this.tensors[name];
      // A fixed batch size: the short last batch padded with copies of its last row (their outputs are dropped).
      for (let r = to; r < from + size; r++) data.copyWithin(r * width, (to - 1) * width, to * width);
      return { data: data.subarray(from * width, (from + size) * width), dims: [size, width] };
    };
    const ats = this.ats;
    const batch: Batch = {
      rowIds: this.rowIds,
      where: (index) => ats[index](),
      feeds: () => Object.fromEntries(Object.keys(this.tensors).map((name) => [name, slice(name, 0, count, rows)])),
      one: (index) => {
        if (this.scorer.fixedBatch) return rowsToTensors([this.rowAt(index, ats[index]())], this.scorer.model.inputs, this.scorer.batchSize);
        return Object.fromEntries(Object.keys(this.tensors).map((name) => [name, slice(name, index, index + 1, 1)]));
      },
    };
    this.rowIds = [];
    this.ats = [];
    return batch;
  }
  private rowAt(index: number, where: string): HoldoutRow {
    const inputs: HoldoutRow['inputs'] = {};
    const shapes: HoldoutRow['shapes'] = {};
    for (const name of Object.keys(this.tensors)) {
      const width = this.widths[name];
      inputs[name] = this.tensors[name].slice(index * width, (index + 1) * width);
      shapes[name] = [width];
    }
    return { where, inputs, shapes, label: '' };
  }
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
  let reported = 0;
  const reject = (rowId: RowId, where: string, reason: string) => {
    rejected++;
    rejectLines.push(JSON.stringify({ ...rowId, where, reason }));
  };
  let rows: Pending[] = [];
  let raws: Extract<BatchItem, { kind: 'raw' }>[] = [];
  let cells: CellBatch | undefined;
  const score = async (batch: Batch) => {
    const done = await scoreRows(scorer, batch, reject);
    if (done.rowIds.length > 0) await part.add(done);
    scored += done.rowIds.length;
    // Rows read since the last report, rejects included: the progress counts toward the rows planned.
    onRows(records - reported);
    reported = records;
  };
  // Whatever is waiting runs, in the order it was read.
  const runBatch = async () => {
    if (cells && cells.count > 0) await score(cells.take());
    if (raws.length > 0) rows.push(...(await preprocessRaws(scorer, raws, reject)));
    raws = [];
    if (rows.length > 0) await score(rowBatch(scorer, rows));
    rows = [];
  };
  outer: for (const piece of shard.pieces) {
    for await (const item of readPiece(batchPlan.files[piece.file], piece, scorer.read)) {
      if (records >= take) break outer;
      records++;
      if (item.kind === 'reject') reject(item.rowId, item.where, item.reason);
      else if (item.kind === 'cells') {
        if (rows.length + raws.length > 0) await runBatch();
        cells ??= new CellBatch(scorer, item.plan);
        const problem = cells.add(item);
        if (problem) reject(item.rowId, item.at(), problem);
      } else {
        if (cells && cells.count > 0) await runBatch();
        if (item.kind === 'raw') raws.push(item);
        else rows.push({ rowId: item.rowId, where: item.where, row: { where: item.where, inputs: item.inputs, shapes: item.shapes, label: '' } });
      }
      if ((cells?.count ?? 0) + rows.length + raws.length >= scorer.batchSize) await runBatch();
      if (rejectLines.length >= 256) await flushRejects();
    }
  }
  await runBatch();
  if (records > reported) onRows(records - reported);
  await flushRejects();
  const partFile = await part.close();
  const rejectsFile = await rejects.close();
  await rename(`${files.part}.partial`, files.part);
  await rename(`${files.rejects}.partial`, files.rejects);
  return { index: shard.index, records, scored, rejected, part: partFile, rejects: rejectsFile };

  async function flushRejects() {
    if (rejectLines.length === 0) return;
    await rejects.write(rejectLines.join('\n') + '\n');
    rejectLines.length = 0;
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
async function scoreRows(scorer: Scorer, batch: Batch, reject: (rowId: RowId, where: string, reason: string) => void): Promise<ScoredRows> {
  try {
    return await run(scorer, batch.feeds(), batch.rowIds);
  } catch (error) {
    if (!(error instanceof ModelRunError) && !(error instanceof RangeError)) throw error;
  }
  const merged: ScoredRows = {
    rowIds: [],
    values: Object.fromEntries(scorer.model.outputs.map((o) => [o.name, []])),
    labels: scorer.layout.labels ? [] : undefined,
  };
  for (let i = 0; i < batch.rowIds.length; i++) {
    let result: ScoredRows;
    try {
      result = await run(scorer, batch.one(i), [batch.rowIds[i]]);
    } catch (error) {
      if (!(error instanceof ModelRunError) && !(error instanceof RangeError)) throw error;
      reject(batch.rowIds[i], batch.where(i), `the model failed on this row: ${error.message}`);
      continue;
    }
    merged.rowIds.push(...result.rowIds);
    for (const name of Object.keys(merged.values)) merged.values[name].push(...result.values[name]);
    if (merged.labels && result.labels) merged.labels.push(...result.labels);
  }
  return merged;
}

async function run(scorer: Scorer, feeds: Tensors, rowIds: RowId[]): Promise<ScoredRows> {
  const outputs = await scorer.model.run(feeds);
  const values: ScoredRows['values'] = {};
  for (const spec of scorer.model.outputs) {
    const tensor = outputs[spec.name];
    const data = asNumbers(spec.datatype, tensor.data);
    const width = tensor.dims.slice(1).reduce((n, d) => n * d, 1);
    const perRow: (ArrayLike<number> | string[])[] = [];
    for (let r = 0; r < rowIds.length; r++)
      perRow.push(Array.isArray(data) ? data.slice(r * width, (r + 1) * width) : (data as Float32Array).subarray(r * width, (r + 1) * width));
    values[spec.name] = perRow;
  }
  const labelSettings = scorer.plan?.labels;
  const labels =
    scorer.layout.labels && labelSettings
      ? topLabels(outputs[labelSettings.output], labelSettings, 1)
          .slice(0, rowIds.length)
          .map((l) => l[0])
      : undefined;
  return { rowIds, values, labels };
}
