/**
 * `mlops batch` on this machine (and in the image's batch mode): plans the shards, skips those a
 * previous run finished, scores the rest on worker threads, and joins the parts when every shard is
 * done. The manifest beside the output records the plan and, once joined, what was written.
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';

import { inputError } from '../errors.js';
import { batchSizeFor } from '../evaluate/batches.js';
import { inputLayouts } from '../holdout/open.js';
import { readServableModel } from '../model/session.js';
import { processingFor, type ProcessingOverrides } from '../processing/plan.js';
import { isObjectUri, objectStoreFor } from '../storage/index.js';
import type { ObjectStore } from '../storage/object-store.js';
import { byteReader, listInput, type InputFile } from './input.js';
import {
  joinParts,
  makeFolders,
  stageParts,
  outputPlace,
  partName,
  placeJoin,
  publish,
  readText,
  removeParts,
  removeRun,
  sizeOf,
  writeText,
  type OutputPlace,
} from './output.js';
import { inputWeight, planShards, weighInput, type BatchPlan } from './plan.js';
import { runOnWorkers, type PoolJob } from './pool.js';
import { checkColumns, featureColumns, tableColumns, type ReadSettings } from './read.js';
import type { ShardResult } from './score.js';
import { hashFile, outputLayout, type OutputFormat, type OutputLayout } from './write.js';
import type { WorkerSetup } from './worker.js';

export interface RunBatchOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  model: { path: string } & ProcessingOverrides;
  input: string;
  output: string;
  format?: OutputFormat;
  idColumn: string;
  columns: string[];
  batchSize: number;
  /** 0: one per core. */
  workers: number;
  shardMegabytes: number;
  maxRejectRate: number;
  limit?: number;
  /** The job's shard count (--shard i/n, a Job's completions); else from shardMegabytes. */
  shardCount?: number;
  /** The shards to run here; else every shard. */
  only?: number[];
  onProgress?: (progress: BatchProgress) => void;
  log: (line: string) => void;
  /** Tests point the stores at local stand-ins. */
  storeFor?: (uri: string) => ObjectStore;
}

export interface BatchProgress {
  records: number;
  total: number;
  shardsDone: number;
  shards: number;
  seconds: number;
}

export interface BatchReport {
  input: string;
  output: string;
  format: OutputFormat;
  model: { path: string; sha256: string };
  manifest: string;
  rejects: string | null;
  shards: { total: number; ran: number; skipped: number; done: number; pending: number[] };
  records: number;
  scored: number;
  rejected: number;
  rejectRate: number | null;
  maxRejectRate: number;
  /** Every shard done and the parts joined: the output is whole. */
  complete: boolean;
  /** The gate over the rows read so far (every row, once complete): some rows scored, and rejects within batch.maxRejectRate. */
  passed: boolean;
  verdict: string;
  written: { bytes: number; sha256: string } | null;
  workers: number;
  seconds: number;
  rowsPerSecond: number | null;
}

interface Manifest {
  mlopsBatchManifest: 1;
  key: string;
  input: string;
  output: string;
  format: OutputFormat;
  model: { sha256: string };
  plan: BatchPlan;
  ids: OutputLayout['ids'];
  /** The output's columns: what joining Parquet parts needs, and what a gather without the model reads. */
  layout: OutputLayout;
  shards?: (ShardResult & { part: ShardResult['part'] & { file: string } })[];
  written?: { file: string; bytes: number; sha256: string } | null;
  totals?: { records: number; scored: number; rejected: number };
}

const inputFormatOf = (files: InputFile[]): OutputFormat => {
  const format = files[0].format;
  return format === 'csv' || format === 'jsonl' || format === 'parquet' ? format : 'csv';
};

/** What names each output row: the id column when every file has it, else the file and row. */
async function idsOf(plan: BatchPlan, idColumn: string, reader: ReturnType<typeof byteReader>): Promise<OutputLayout['ids']> {
  if (plan.files[0].format === 'image') return { source: true, row: false };
  for (const file of plan.files) {
    const columns = await tableColumns(file, reader);
    if (!idColumn || !columns?.includes(idColumn)) return { source: true, row: true };
  }
  return { column: idColumn };
}

/** How many rows each shard may read under --limit: the first `limit` rows of the input. */
function takes(plan: BatchPlan, limit: number | undefined): number[] {
  let before = 0;
  return plan.shards.map((shard) => {
    const take = limit === undefined ? shard.records : Math.max(0, Math.min(shard.records, limit - before));
    before += shard.records;
    return take;
  });
}

/** Everything a run decides before scoring: the files, the model, where the output goes, and the plan (read back or made). */
interface Prepared {
  place: OutputPlace;
  store: ObjectStore | undefined;
  key: string;
  manifest: Manifest;
  layout: OutputLayout;
  setup: Omit<WorkerSetup, 'plan'>;
}

/** What a resumable run is of: the model, the files (names, sizes, times), and the settings that change the rows. The shard count is not in it: a run without --shard joins what --shard i/n runs began. */
function runKey(model: string, files: InputFile[], options: RunBatchOptions, format: OutputFormat): string {
  return createHash('sha256')
    .update(
      JSON.stringify({
        model,
        files: files.map((f) => [f.shown, f.size, f.modified ?? null]),
        id: options.idColumn,
        columns: options.columns,
        format,
        limit: options.limit ?? null,
      }),
    )
    .digest('hex')
    .slice(0, 24);
}

async function prepare(options: RunBatchOptions, storeFor: (uri: string) => ObjectStore): Promise<Prepared> {
  const reader = byteReader(storeFor);
  // The output inside the input's folder is not an input (the next run would score it); named as the input, it is refused.
  const target = (isObjectUri(options.output) ? options.output : path.resolve(options.cwd, options.output)).replace(/\/+$/, '');
  const own = (location: string) => location === target || location === `${target}.manifest.json` || location === `${target}.rejects.jsonl`;
  const listed = await listInput(options.input, options.cwd, storeFor, own);
  const servable = await readServableModel({ path: options.model.path, cwd: options.cwd });
  const processing = await processingFor(
    servable.info.path,
    { inputs: servable.inputs, outputs: servable.outputs },
    { preprocess: options.model.preprocess, postprocess: options.model.postprocess },
  );
  const rawKind: 'image' | 'text' | undefined = processing?.image ? 'image' : processing?.text ? 'text' : undefined;
  const place = await outputPlace(options.output, options.cwd, options.format, inputFormatOf(listed));
  const files = await weighInput(listed, reader);
  const total = inputWeight(files);
  const store = place.remote ? storeFor(place.output) : undefined;
  const key = runKey(servable.info.sha256, files, options, place.format);
  const read: Omit<ReadSettings, 'reader' | 'idColumn'> = {
    layouts: inputLayouts(servable.inputs),
    columns: options.columns,
    ...(rawKind ? { raw: { kind: rawKind, maxBytes: processing?.image?.maxBytes ?? 0 } } : {}),
  };
  const byFirstFile = async (plan: BatchPlan) => {
    if (plan.files.length > 1 && Array.isArray(read.columns) && read.columns.length === 0)
      read.columns = (await featureColumns(plan.files[0], { ...read, reader, idColumn: options.idColumn })) ?? read.columns;
  };
  let manifest = await readManifest(place, store);
  if (manifest && manifest.key !== key) {
    options.log(`${place.manifest} is of another run (other input, model or settings): starting over`);
    await removeRun(place, store);
    manifest = undefined;
  }
  const planned = manifest?.plan.shards.length;
  if (manifest && options.shardCount !== undefined && options.shardCount !== planned)
    throw inputError(
      `${place.manifest}: this job has ${planned} shards, and ${options.shardCount} are asked`,
      `run its shards as i/${planned}, or write to another --output`,
    );
  const shardCount = planned ?? options.shardCount ?? Math.max(1, Math.ceil(total / (options.shardMegabytes * 2 ** 20)));
  // The same files (the key says so), perhaps at another place: a folder mounted elsewhere in a container.
  if (manifest) {
    for (const file of manifest.plan.files) file.location = files.find((f) => f.shown === file.shown)?.location ?? file.location;
    await makeFolders(place);
  }
  if (!manifest) {
    const plan = await planShards(files, shardCount, reader);
    // Files after the first are read by the first one's column names, not by position: a folder of
    // exports whose columns come in another order is still scored right.
    await byFirstFile(plan);
    for (const file of plan.files) await checkColumns(file, { ...read, reader, idColumn: options.idColumn });
    await makeFolders(place);
    const ids = await idsOf(plan, options.idColumn, reader);
    manifest = {
      mlopsBatchManifest: 1,
      key,
      input: options.input,
      output: options.output,
      format: place.format,
      model: { sha256: servable.info.sha256 },
      plan,
      ids,
      layout: outputLayout(place.format, servable.outputs, ids, Boolean(processing?.labels)),
    };
    await writeText(place.manifest, JSON.stringify(manifest, null, 1) + '\n', store);
  }
  // A resumed run holds its files to the first one's columns too.
  await byFirstFile(manifest.plan);
  const setup = {
    modelPath: servable.info.path,
    processing,
    layout: manifest.layout,
    read: { ...read, idColumn: 'column' in manifest.ids ? manifest.ids.column : '' },
    ...batchSettings(servable.inputs, options.batchSize),
    env: options.env,
  };
  return { place, store, key, manifest, layout: manifest.layout, setup };
}

export async function runBatch(options: RunBatchOptions): Promise<BatchReport> {
  const started = performance.now();
  const storeFor = options.storeFor ?? ((uri: string) => objectStoreFor(uri, options.env));
  const { place, store, key, manifest, layout, setup } = await prepare(options, storeFor);
  const plan = manifest.plan;
  const shards = plan.shards.length;
  const selected = options.only ?? plan.shards.map((s) => s.index);
  for (const index of selected)
    if (index < 0 || index >= shards) throw inputError(`shard ${index}: the job has ${shards} shards`, `shards are 0 to ${shards - 1}`);
  if (manifest.written && (await sizeOf(place.output, store)) === manifest.written.bytes) {
    return report(options, place, manifest, { ran: 0, skipped: selected.length, workers: 0, started, pending: [] });
  }
  const results = await finishedShards(place, store, shards, key);
  const toRun = selected.filter((index) => !results.has(index));
  const limits = takes(plan, options.limit);
  const workers = options.workers > 0 ? options.workers : os.availableParallelism();
  const totalRows = toRun.reduce((n, index) => n + limits[index], 0);
  let rows = 0;
  const progress = () =>
    options.onProgress?.({ records: rows, total: totalRows, shardsDone: results.size, shards, seconds: (performance.now() - started) / 1000 });
  const onRows = (count: number) => {
    rows += count;
    progress();
  };
  const unstage = toRun.length > 0 ? await stageParts(place) : async () => undefined;
  try {
    const jobs: PoolJob[] = toRun.map((index) => ({
      shard: index,
      take: limits[index],
      files: {
        part: placeJoin(place, place.staging, partName(index, shards, place.format)),
        rejects: placeJoin(place, place.remote ? place.staging : place.records, rejectsName(index, shards)),
      },
    }));
    const onDone = async (result: ShardResult) => {
      await publishShard(
        place,
        store,
        jobs.find((j) => j.shard === result.index)!,
        result,
        shards,
        key,
      );
      results.set(result.index, result);
      progress();
    };
    await runOnWorkers(workers, { ...setup, plan }, jobs, onRows, onDone, () =>
      options.log(`stopped with ${results.size} of ${shards} shards done: run the same command again to go on from there`),
    );
  } finally {
    await unstage();
  }
  const pending = plan.shards.map((s) => s.index).filter((index) => !results.has(index));
  if (pending.length === 0) await joinAll(place, store, manifest, layout, results, shards);
  const ran = { ran: toRun.length, skipped: selected.length - toRun.length, workers: Math.min(workers, toRun.length) };
  return report(options, place, manifest, { ...ran, started, pending, results, ranRecords: rows });
}

async function finishedShards(place: OutputPlace, store: ObjectStore | undefined, count: number, key: string): Promise<Map<number, ShardResult>> {
  const results = new Map<number, ShardResult>();
  for (let index = 0; index < count; index++) {
    const done = await finishedShard(place, store, index, count, key);
    if (done) results.set(index, done);
  }
  return results;
}

function batchSettings(inputs: { name: string; datatype: string; shape: number[] }[], wanted: number): { batchSize: number; fixedBatch: boolean } {
  const { size, fixed } = batchSizeFor(inputs as Parameters<typeof batchSizeFor>[0], wanted);
  return { batchSize: size, fixedBatch: fixed };
}

async function readManifest(place: OutputPlace, store: ObjectStore | undefined): Promise<Manifest | undefined> {
  const text = await readText(place.manifest, store);
  if (text === null) return undefined;
  try {
    const parsed = JSON.parse(text) as Manifest;
    if (parsed.mlopsBatchManifest !== 1) throw new Error('not a batch manifest');
    return parsed;
  } catch (error) {
    throw inputError(`${place.manifest}: not a batch manifest (${(error as Error).message})`, 'remove it, or write the output somewhere else');
  }
}

const recordOf = (place: OutputPlace, index: number, count: number) => placeJoin(place, place.records, partName(index, count, 'json' as OutputFormat));
const rejectsName = (index: number, count: number) => partName(index, count, 'jsonl').replace(/\.jsonl$/, '.rejects.jsonl');
const rejectsOf = (place: OutputPlace, index: number, count: number) => placeJoin(place, place.records, rejectsName(index, count));
const partOf = (place: OutputPlace, index: number, count: number) => placeJoin(place, place.parts, partName(index, count, place.format));

/** A shard a previous run (or another process) finished: its record, and its part still there with the recorded size and sha256. */
async function finishedShard(place: OutputPlace, store: ObjectStore | undefined, index: number, count: number, key: string): Promise<ShardResult | undefined> {
  const text = await readText(recordOf(place, index, count), store);
  if (text === null) return undefined;
  let record: ShardResult & { key?: string };
  try {
    record = JSON.parse(text) as ShardResult & { key?: string };
  } catch {
    return undefined;
  }
  if (record.key !== key || record.index !== index) return undefined;
  const part = partOf(place, index, count);
  if ((await sizeOf(part, store)) !== record.part.bytes) return undefined;
  // Here the part is read again to check it; in a bucket the size stands for it (reading it back costs the transfer).
  if (!store && (await hashFile(part)).sha256 !== record.part.sha256) return undefined;
  return record;
}

async function publishShard(place: OutputPlace, store: ObjectStore | undefined, job: PoolJob, result: ShardResult, count: number, key: string): Promise<void> {
  await publish(job.files.part, partOf(place, result.index, count), store);
  await publish(job.files.rejects, rejectsOf(place, result.index, count), store);
  // The record last: a shard counts as done only once its part is in place.
  await writeText(recordOf(place, result.index, count), JSON.stringify({ ...result, key }) + '\n', store);
}

async function joinAll(
  place: OutputPlace,
  store: ObjectStore | undefined,
  manifest: Manifest,
  layout: OutputLayout,
  results: Map<number, ShardResult>,
  count: number,
): Promise<void> {
  const indexes = [...results.keys()].sort((a, b) => a - b);
  const parts = indexes.map((i) => partOf(place, i, count));
  const rejected = indexes.reduce((n, i) => n + results.get(i)!.rejected, 0);
  await joinParts(
    indexes.map((i) => rejectsOf(place, i, count)),
    place.rejects,
    'rejects',
    layout,
    store,
  );
  const written = place.kind === 'file' ? await joinParts(parts, place.output, place.format, layout, store) : null;
  manifest.shards = indexes.map((i) => {
    const r = results.get(i)!;
    return { ...r, part: { ...r.part, file: partName(i, count, place.format) } };
  });
  manifest.totals = {
    records: indexes.reduce((n, i) => n + results.get(i)!.records, 0),
    scored: indexes.reduce((n, i) => n + results.get(i)!.scored, 0),
    rejected,
  };
  // Named as the output is, beside the manifest: the folder may be mounted elsewhere when a gather reads it.
  manifest.written = written ? { file: path.basename(place.output), ...written } : null;
  await writeText(place.manifest, JSON.stringify(manifest, null, 1) + '\n', store);
  // The parts of a joined file are not kept: the output holds them, and the manifest each one's sha256.
  if (place.kind === 'file') {
    await removeParts(
      place,
      indexes.flatMap((i) => [partOf(place, i, count), recordOf(place, i, count), rejectsOf(place, i, count)]),
      store,
    );
  }
}

function report(
  options: Pick<RunBatchOptions, 'input' | 'model' | 'maxRejectRate'>,
  place: OutputPlace,
  manifest: Manifest,
  run: { ran: number; skipped: number; workers: number; started: number; pending: number[]; results?: Map<number, ShardResult>; ranRecords?: number },
): BatchReport {
  const results = run.results ? [...run.results.values()] : (manifest.shards ?? []);
  const records = manifest.totals?.records ?? results.reduce((n, r) => n + r.records, 0);
  const scored = manifest.totals?.scored ?? results.reduce((n, r) => n + r.scored, 0);
  const rejected = manifest.totals?.rejected ?? results.reduce((n, r) => n + r.rejected, 0);
  const complete = run.pending.length === 0;
  const rejectRate = records > 0 ? rejected / records : null;
  const seconds = (performance.now() - run.started) / 1000;
  let verdict: string;
  let passed = false;
  const waiting = complete ? '' : `; ${run.pending.length} of ${manifest.plan.shards.length} shards still to run, so the output is not joined yet`;
  if (records === 0) verdict = `no rows were read${waiting}`;
  else if (scored === 0) verdict = `every row was rejected (${rejected})${waiting}`;
  else if (rejectRate! > options.maxRejectRate)
    verdict = `${rejected} of ${records} rows rejected (${(rejectRate! * 100).toPrecision(3)}%), over batch.maxRejectRate ${options.maxRejectRate}${waiting}`;
  else {
    passed = true;
    verdict = `${rejected > 0 ? `${rejected} of ${records} rows rejected, within batch.maxRejectRate ${options.maxRejectRate}` : `all ${records} rows scored`}${waiting}`;
  }
  const ranRows = run.ranRecords ?? 0;
  return {
    input: options.input,
    output: place.output,
    format: place.format,
    model: { path: options.model.path, sha256: manifest.model.sha256 },
    manifest: place.manifest,
    rejects: complete ? place.rejects : null,
    shards: {
      total: manifest.plan.shards.length,
      ran: run.ran,
      skipped: run.skipped,
      done: manifest.plan.shards.length - run.pending.length,
      pending: run.pending,
    },
    records,
    scored,
    rejected,
    rejectRate,
    maxRejectRate: options.maxRejectRate,
    complete,
    passed,
    verdict,
    written: manifest.written ? { bytes: manifest.written.bytes, sha256: manifest.written.sha256 } : null,
    workers: run.workers,
    seconds,
    rowsPerSecond: run.ran > 0 && seconds > 0 ? ranRows / seconds : null,
  };
}

export interface GatherOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  input: string;
  output: string;
  maxRejectRate: number;
  storeFor?: (uri: string) => ObjectStore;
}

/**
 * Joins what the shards of a job wrote elsewhere (a Job's pods, containers of the image's batch mode),
 * without the model: the manifest the first of them wrote says what every shard's part holds.
 */
export async function gatherBatch(options: GatherOptions): Promise<BatchReport> {
  const started = performance.now();
  const storeFor = options.storeFor ?? ((uri: string) => objectStoreFor(uri, options.env));
  const located = await outputPlace(options.output, options.cwd, undefined, 'csv');
  const store = located.remote ? storeFor(located.output) : undefined;
  const manifest = await readManifest(located, store);
  if (!manifest)
    throw inputError(`${located.manifest}: no manifest: no shard of this job has started`, 'check the job ran, and that --output is the one it wrote to');
  const place = { ...located, format: manifest.format };
  const shards = manifest.plan.shards.length;
  if (manifest.written && (await sizeOf(place.output, store)) === manifest.written.bytes)
    return report({ ...options, model: { path: '' } }, place, manifest, { ran: 0, skipped: 0, workers: 0, started, pending: [] });
  const results = await finishedShards(place, store, shards, manifest.key);
  const pending = manifest.plan.shards.map((s) => s.index).filter((index) => !results.has(index));
  if (pending.length === 0) await joinAll(place, store, manifest, manifest.layout, results, shards);
  return report({ ...options, model: { path: '' } }, place, manifest, { ran: 0, skipped: 0, workers: 0, started, pending, results });
}
