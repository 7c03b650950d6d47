// Issue 37: `mlops batch` on this machine, against the floor, in one run.
// 1. Rows a second for the tabular fixture (1M rows, CSV and Parquet in, CSV out) with 1 worker and with
//    every core, against the floor: one core running the same libraries with no machinery (batch-floor.js:
//    read, split, onnxruntime-node with one thread, write). Goal: workers x 0.8 x the floor. The floor
//    and the 1-worker run are pinned to core 0; the all-core run has the machine. Rounds interleaved.
// 2. Peak RSS (the process, its worker threads included) for 100k and 1M rows.
// 3. Images a second for the image fixture (its 48 holdout images, 8 times over) against the floor.
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HAS_TASKSET } from './dataplane.js';
import { fixture, median, round, ROOT, table } from './lib.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ROWS = Number(process.env.BENCH_BATCH_ROWS ?? 1_000_000);
const MODEL = fixture('breast_cancer', 'model.onnx');

const onCore = (core, args) => (HAS_TASKSET && core !== undefined ? ['taskset', ['-c', String(core), process.execPath, ...args]] : [process.execPath, args]);

/** Runs node with args, pinned to `core` when given; its stdout and stderr. */
function run(args, core, cwd) {
  const [command, argv] = onCore(core, args);
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { cwd, env: { ...process.env, CI: 'true' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => (code === 0 ? resolve({ stdout, stderr }) : reject(new Error(`${args.join(' ')} exited ${code}: ${stderr.slice(-500)}`))));
  });
}

/** `mlops batch --json` in a child process: rows a second as the report says, and the process's peak RSS. */
async function batch(dir, input, workers, core) {
  rmSync(path.join(dir, 'out.csv'), { force: true });
  rmSync(path.join(dir, 'out.csv.manifest.json'), { force: true });
  rmSync(path.join(dir, 'out.csv.rejects.jsonl'), { force: true });
  const started = performance.now();
  const { stdout } = await run(
    [path.join(dir, 'rss.mjs'), '--json', 'batch', '--input', input, '--output', 'out.csv', '--model', MODEL, '--workers', String(workers)],
    core,
    dir,
  );
  const seconds = (performance.now() - started) / 1000;
  const { report, rss } = splitOutput(stdout);
  if (!report.passed) throw new Error(`mlops batch did not pass: ${report.verdict}`);
  // Wall time of the whole command (planning, workers starting, joining): what a user waits for.
  return { perSecond: report.records / seconds, rssMiB: rss / 1024 };
}

/** The command's one --json document, then the wrapper's peak RSS (KiB) printed as the process exits. */
function splitOutput(stdout) {
  const at = stdout.lastIndexOf('{"maxrss"');
  return { report: JSON.parse(stdout.slice(0, at)), rss: JSON.parse(stdout.slice(at)).maxrss };
}

async function floor(dir, args) {
  const { stdout } = await run([path.join(ROOT, 'benchmark', 'batch-floor.js'), ...args], 0, dir);
  return JSON.parse(stdout);
}

function datasets(dir) {
  // The datasets come from the test helper, through vitest's loader-free path: a small script run by node.
  writeFileSync(
    path.join(dir, 'make.mjs'),
    `import { writeFileSync, createWriteStream } from 'node:fs';
import { fileWriter, ParquetWriter } from 'hyparquet-writer';
const lines = ${JSON.stringify(fixture('breast_cancer', 'holdout.csv'))};
const text = (await import('node:fs')).readFileSync(lines, 'utf8').trim().split('\\n');
const header = text[0].split(',').map((c) => c.trim());
const keep = header.map((_, i) => i).filter((i) => header[i] !== 'label');
const rows = text.slice(1).map((l) => { const c = l.split(','); return keep.map((i) => Number(c[i])); });
const columns = keep.map((i) => header[i]);
for (const [file, count] of [['million.csv', ${ROWS}], ['hundred-thousand.csv', ${Math.round(ROWS / 10)}]]) {
  const out = createWriteStream(file);
  out.write(['id', ...columns].join(',') + '\\n');
  let chunk = '';
  for (let n = 0; n < count; n++) { chunk += 'r' + (n + 1) + ',' + rows[n % rows.length].join(',') + '\\n'; if (chunk.length > 1 << 20) { if (!out.write(chunk)) await new Promise((r) => out.once('drain', r)); chunk = ''; } }
  out.end(chunk); await new Promise((r) => out.once('finish', r));
}
const writer = new ParquetWriter({ writer: fileWriter('million.parquet'), schema: [{ name: 'root', num_children: columns.length + 1 }, { name: 'id', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' }, ...columns.map((name) => ({ name, type: 'DOUBLE', repetition_type: 'REQUIRED' }))] });
for (let start = 0; start < ${ROWS}; start += 50000) {
  const end = Math.min(${ROWS}, start + 50000); const ids = []; const data = columns.map(() => new Float64Array(end - start));
  for (let n = start; n < end; n++) { ids.push('r' + (n + 1)); const row = rows[n % rows.length]; for (let c = 0; c < columns.length; c++) data[c][n - start] = row[c]; }
  await writer.write({ columnData: [{ name: 'id', data: ids, type: 'STRING', nullable: false }, ...columns.map((name, c) => ({ name, data: data[c], type: 'DOUBLE', nullable: false }))], rowGroupSize: 50000 });
}
await writer.finish();
`,
  );
  execFileSync(process.execPath, [path.join(dir, 'make.mjs')], { cwd: dir, env: { ...process.env, NODE_PATH: path.join(ROOT, 'node_modules') } });
  const bin = JSON.stringify(path.join(ROOT, 'bin', 'mlops.js'));
  writeFileSync(
    path.join(dir, 'rss.mjs'),
    `process.on('exit', () => process.stdout.write(JSON.stringify({ maxrss: process.resourceUsage().maxRSS })));\nprocess.argv.splice(1, 1, ${bin});\nawait import(${bin});\n`,
  );
  // The image fixture's holdout, 8 times over, in one folder per class.
  const images = path.join(dir, 'images');
  for (let copy = 0; copy < 8; copy++) {
    for (const label of ['circle', 'cross', 'square', 'triangle']) {
      mkdirSync(path.join(images, label), { recursive: true });
      cpSync(fixture('shapes_image', 'holdout', label), path.join(images, `${label}`, `copy${copy}`), { recursive: true });
    }
  }
}

export async function run_({ log }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlops-bench-batch-'));
  // The datasets are written with the project's own node_modules (hyparquet-writer).
  symlinkModules(dir);
  datasets(dir);
  const cores = os.availableParallelism();
  const samples = { floorCsv: [], one: [], all: [], parquetAll: [], floorImages: [], imagesOne: [], imagesAll: [] };
  for (let round_ = 0; round_ < ROUNDS; round_++) {
    samples.floorCsv.push((await floor(dir, ['csv', MODEL, 'million.csv', 'floor-out.csv'])).perSecond);
    samples.one.push((await batch(dir, 'million.csv', 1, 0)).perSecond);
    samples.all.push((await batch(dir, 'million.csv', cores)).perSecond);
    samples.parquetAll.push((await batch(dir, 'million.parquet', cores)).perSecond);
    samples.floorImages.push((await floor(dir, ['images', fixture('shapes_image'), 'images'])).perSecond);
    samples.imagesOne.push(await imagesRun(dir, 1, 0));
    samples.imagesAll.push(await imagesRun(dir, cores));
    log(
      `round ${round_ + 1}: floor ${round(samples.floorCsv.at(-1), 0)} rows/s, 1 worker ${round(samples.one.at(-1), 0)}, ${cores} workers ${round(samples.all.at(-1), 0)}`,
    );
  }
  const small = await batch(dir, 'hundred-thousand.csv', cores);
  const large = await batch(dir, 'million.csv', cores);
  rmSync(dir, { recursive: true, force: true });
  const m = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
  const results = {
    rows: ROWS,
    cores,
    rounds: ROUNDS,
    pinned: HAS_TASKSET,
    rowsPerSecond: { floorOneCore: round(m.floorCsv, 0), oneWorker: round(m.one, 0), allWorkers: round(m.all, 0), parquetAllWorkers: round(m.parquetAll, 0) },
    ratios: {
      oneWorkerToFloor: round(m.one / m.floorCsv),
      allWorkersToFloor: round(m.all / m.floorCsv),
      goalAllWorkers: round(0.8 * cores),
      metGoal: m.all >= 0.8 * cores * m.floorCsv,
      parquetToCsv: round(m.parquetAll / m.all),
    },
    peakRssMiB: { rows100k: round(small.rssMiB, 0), rows1M: round(large.rssMiB, 0), ratio: round(large.rssMiB / small.rssMiB) },
    imagesPerSecond: {
      floorOneCore: round(m.floorImages, 1),
      oneWorker: round(m.imagesOne, 1),
      allWorkers: round(m.imagesAll, 1),
      oneWorkerToFloor: round(m.imagesOne / m.floorImages),
      allWorkersToFloor: round(m.imagesAll / m.floorImages),
    },
    samples,
  };
  const markdown = [
    `${ROWS.toLocaleString('en-US')} rows of the tabular fixture, CSV in and out; medians of ${ROUNDS} interleaved rounds; floor and 1-worker runs pinned to core 0${HAS_TASKSET ? '' : ' (taskset missing: not pinned)'}.`,
    '',
    table(
      ['run', 'rows/s', 'x floor', 'goal'],
      [
        ['floor: one core, no machinery', String(results.rowsPerSecond.floorOneCore), '1', ''],
        ['mlops batch, 1 worker', String(results.rowsPerSecond.oneWorker), String(results.ratios.oneWorkerToFloor), '>= 0.8'],
        [
          `mlops batch, ${cores} workers`,
          String(results.rowsPerSecond.allWorkers),
          String(results.ratios.allWorkersToFloor),
          `>= ${results.ratios.goalAllWorkers}`,
        ],
        [`mlops batch, ${cores} workers, Parquet in`, String(results.rowsPerSecond.parquetAllWorkers), String(round(m.parquetAll / m.floorCsv)), ''],
      ],
    ),
    '',
    `Peak RSS: ${results.peakRssMiB.rows100k} MiB for 100k rows, ${results.peakRssMiB.rows1M} MiB for 1M (${results.peakRssMiB.ratio}x).`,
    '',
    table(
      ['images (384 files, 3x64x64)', 'images/s', 'x floor'],
      [
        ['floor: one core, decode + preprocess + run', String(results.imagesPerSecond.floorOneCore), '1'],
        ['mlops batch, 1 worker', String(results.imagesPerSecond.oneWorker), String(results.imagesPerSecond.oneWorkerToFloor)],
        [`mlops batch, ${cores} workers`, String(results.imagesPerSecond.allWorkers), String(results.imagesPerSecond.allWorkersToFloor)],
      ],
    ),
  ].join('\n');
  return { results, markdown };
}

async function imagesRun(dir, workers, core) {
  rmSync(path.join(dir, 'images-out.csv'), { force: true });
  rmSync(path.join(dir, 'images-out.csv.manifest.json'), { force: true });
  const started = performance.now();
  const { stdout } = await run(
    [
      path.join(dir, 'rss.mjs'),
      '--json',
      'batch',
      '--input',
      'images',
      '--output',
      'images-out.csv',
      '--model',
      fixture('shapes_image'),
      '--workers',
      String(workers),
      '--batch-size',
      '32',
    ],
    core,
    dir,
  );
  const { report } = splitOutput(stdout);
  return report.records / ((performance.now() - started) / 1000);
}

function symlinkModules(dir) {
  try {
    execFileSync('ln', ['-s', path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules')]);
  } catch {
    // already there
  }
}

export { run_ as run };
