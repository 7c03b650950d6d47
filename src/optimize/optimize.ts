import * as ort from 'onnxruntime-node';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Config } from '../config/defaults.js';
import { inputError } from '../errors.js';
import { batchSizeFor, inBatches, rowsToTensors } from '../evaluate/batches.js';
import { chooseOutput } from '../evaluate/evaluate.js';
import { runQualityTest, type TestReport } from '../evaluate/quality-test.js';
import { runBench, type BenchRun } from '../bench/bench.js';
import { readModelFolder } from '../processing/folder.js';
import { openHoldout } from '../holdout/open.js';
import { evaluateGates, failureGates, gatesFromConfig, type GateResult, type GateSpec } from '../metrics/gates.js';
import { CLASSIFICATION_METRICS, REGRESSION_METRICS } from '../metrics/names.js';
import { LOWER_IS_BETTER } from '../metrics/regression.js';
import { inspectModel } from '../model/inspect.js';
import { openLocalPredictor, type Predictor, type TensorSignature } from '../predict/predictor.js';
import { calibrate, type CalibrationMethod } from './calibrate.js';
import { OPTIMIZE_METADATA } from '../model/optimized.js';
import { decodeModel, encodeModel, inlineExternalData, setMetadata, type ModelProto } from './onnx-graph.js';
import { calibrationTensors, findCandidates, quantizeDynamic, quantizeStatic, type LeftInFloat, type QuantizeResult, type Range } from './quantize.js';

export type OptimizationLevel = 'basic' | 'extended' | 'all';

/** none: graph optimization only; dynamic or static INT8 quantization first. */
export type Quantization = 'none' | 'dynamic' | 'static';

export interface ModelSide {
  file: string;
  sha256: string;
  sizeBytes: number;
  metrics: Record<string, number | null> | null;
  latencyMs: { p50: number; p99: number } | null;
  throughputRps: number | null;
}

export interface OptimizeReport {
  source: ModelSide;
  optimized: ModelSide;
  /** Where the model was written; null when a gate failed and --keep was not given. */
  output: string | null;
  level: OptimizationLevel;
  quantize: Quantization;
  calibration: { file: string; rows: number; method: CalibrationMethod } | null;
  quantized: QuantizeResult['quantized'];
  leftInFloat: LeftInFloat[];
  task: TestReport['task'] | null;
  /** Per metric: before, after, drop (positive: worse). */
  comparison: { metric: string; before: number | null; after: number | null; drop: number | null }[];
  agreement: { rows: number; maxAbsDiff: number; meanAbsDiff: number; classChangeRate: number | null } | null;
  /** The values gates are judged on: <metric>_drop, speedup, throughput_ratio, size_ratio, max_abs_diff, mean_abs_diff, class_change_rate. */
  values: Record<string, number | null>;
  gates: (GateResult & { implicit?: boolean })[];
  passed: boolean;
  seconds: number;
}

export const OPTIMIZE_METRICS = [
  'error_rate',
  'speedup',
  'throughput_ratio',
  'size_ratio',
  'max_abs_diff',
  'mean_abs_diff',
  'class_change_rate',
  ...[...CLASSIFICATION_METRICS, ...REGRESSION_METRICS].map((m) => `${m}_drop`),
];

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** ONNX Runtime's own offline optimization: the session writes the graph it optimized. */
async function ortOptimize(input: string | Uint8Array, output: string, level: OptimizationLevel): Promise<void> {
  const session = await ort.InferenceSession.create(input as never, { graphOptimizationLevel: level, optimizedModelFilePath: output, logSeverityLevel: 4 });
  await session.release();
}

/** What to make and how to judge it. A choice left out takes optimize's config; files are relative to cwd. */
export interface RunOptimizeOptions {
  cwd: string;
  projectDir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  /** The source model's path. */
  sourceModel: string;
  /** Where the optimized model goes: a path other than the source's. */
  outputFile: string;
  quantize?: Quantization;
  /** Rows for static quantization, in any holdout format (default: monitor.reference, else the holdout). */
  calibrationFile?: string;
  calibrationRows?: number;
  calibrationMethod?: CalibrationMethod;
  /** One scale per Conv output channel, rather than one per weight. */
  perChannel?: boolean;
  /** Node names or op types left in float, beyond optimize.exclude. */
  exclude: string[];
  level?: OptimizationLevel;
  /** The holdout both models are scored on (default: test.holdout). */
  holdoutFile?: string;
  /** Gates beyond optimize.gates. */
  gates: GateSpec[];
  /** Write the optimized model even when a gate fails. */
  keepOnFailure: boolean;
  onStep?: (line: string) => void;
}

/** The optimization asked for: the options over optimize's config. */
interface Recipe {
  quantize: Quantization;
  level: OptimizationLevel;
  method: CalibrationMethod;
  perChannel: boolean;
  exclude: string[];
  calibrationRows: number;
}

type SourceModel = Awaited<ReturnType<typeof inspectModel>>;

/**
 * Optimizes (and quantizes) a model, then scores and benchmarks it beside the source and gates the
 * result; the output file is written only when the gates pass (or keepOnFailure says so).
 */
export async function runOptimize(options: RunOptimizeOptions): Promise<OptimizeReport> {
  const started = performance.now();
  const { config, cwd, projectDir } = options;
  const settings = config.optimize;
  const outputPath = path.resolve(cwd, options.outputFile);
  const recipe: Recipe = {
    quantize: options.quantize ?? settings.quantize,
    level: options.level ?? settings.level,
    method: options.calibrationMethod ?? settings.method,
    perChannel: options.perChannel ?? settings.perChannel,
    exclude: [...settings.exclude, ...options.exclude],
    calibrationRows: options.calibrationRows ?? settings.calibrationRows,
  };
  const specs: GateSpec[] = [...gatesFromConfig(settings.gates), ...options.gates];
  for (const spec of specs)
    if (!OPTIMIZE_METRICS.includes(spec.metric))
      throw inputError(`gate on unknown metric '${spec.metric}' for optimize`, `known: ${OPTIMIZE_METRICS.join(', ')}`);

  const source = await inspectModel(path.resolve(cwd, options.sourceModel), { cwd });
  const holdoutFile = options.holdoutFile ? path.resolve(cwd, options.holdoutFile) : config.test.holdout ? path.resolve(projectDir, config.test.holdout) : '';
  if (specs.length === 0 && !holdoutFile)
    throw inputError(
      'optimize has nothing to judge the optimized model by: no holdout and no gate',
      'set test.holdout (or pass --holdout), and optimize.gates such as {"accuracy_drop": "<= 0.005", "speedup": ">= 1.2"}',
    );
  const work = await mkdtemp(path.join(tmpdir(), 'mlops-optimize-'));
  try {
    const made = await makeOptimized(options, recipe, source, holdoutFile, work);
    const writtenBytes = await readFile(made.file);
    // A source with external data weighs its data files too.
    const externalBytes = (await Promise.all(source.externalData.map((f) => stat(path.resolve(path.dirname(source.path), f)).then((s) => s.size)))).reduce(
      (a, b) => a + b,
      0,
    );
    // The gate: both models scored and benchmarked the same way, side by side.
    const before = side(path.relative(cwd, source.path) || source.path, source.sha256, source.sizeBytes + externalBytes);
    const after = side(path.relative(cwd, outputPath) || outputPath, sha256(writtenBytes), writtenBytes.length);
    const scored = holdoutFile ? await scoreSides(options, source.path, made.file, holdoutFile, before, after) : { task: null, agreement: null };
    const optimizedRuns = await benchSides(options, source.path, made.file, holdoutFile, before, after);
    const comparison = metricComparison(before.metrics, after.metrics);
    const values = gateValues(before, after, optimizedRuns, scored.agreement, comparison);
    const gates = judge(specs, values, scored.task);
    const passed = gates.every((g) => g.passed);
    let output: string | null = null;
    if (passed || options.keepOnFailure) {
      // Into place whole: a rename within the output's folder, never a half-written model.
      const staging = `${outputPath}.tmp-${process.pid}`;
      await copyFile(made.file, staging);
      await rename(staging, outputPath);
      // A model from an export folder keeps its processing files beside it, so the optimized one builds and serves the same.
      await copyProcessingFiles(source.path, outputPath);
      output = after.file;
    }
    return {
      source: before,
      optimized: after,
      output,
      level: recipe.level,
      quantize: recipe.quantize,
      calibration: made.calibration,
      quantized: made.quantized.quantized,
      leftInFloat: made.quantized.leftInFloat,
      task: scored.task,
      comparison,
      agreement: scored.agreement,
      values,
      gates,
      passed,
      seconds: Math.round((performance.now() - started) / 10) / 100,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** A model's side of the comparison, before it is scored and benchmarked. */
function side(file: string, sha: string, size: number): ModelSide {
  return { file, sha256: sha, sizeBytes: size, metrics: null, latencyMs: null, throughputRps: null };
}

/** What optimize's gates judge: speed, size and agreement of the optimized model beside the source, and each metric's drop. */
function gateValues(
  before: ModelSide,
  after: ModelSide,
  optimizedRuns: BenchRun[],
  agreement: OptimizeReport['agreement'],
  comparison: OptimizeReport['comparison'],
): Record<string, number | null> {
  return {
    speedup: before.latencyMs && after.latencyMs && after.latencyMs.p50 > 0 ? before.latencyMs.p50 / after.latencyMs.p50 : null,
    throughput_ratio: before.throughputRps && after.throughputRps !== null ? after.throughputRps / before.throughputRps : null,
    size_ratio: after.sizeBytes / before.sizeBytes,
    // The optimized model's failed benchmark requests, worst round: a model that fails is no gain, whatever its size.
    error_rate: optimizedRuns.length > 0 ? Math.max(...optimizedRuns.map((r) => r.errors.rate)) : null,
    max_abs_diff: agreement?.maxAbsDiff ?? null,
    mean_abs_diff: agreement?.meanAbsDiff ?? null,
    class_change_rate: agreement?.classChangeRate ?? null,
    ...Object.fromEntries(comparison.map((c) => [`${c.metric}_drop`, c.drop])),
  };
}

/** The user's gates, and the implicit ones (marked so) that keep a model that lost quality or failed requests from passing. */
function judge(specs: GateSpec[], values: Record<string, number | null>, task: TestReport['task'] | null): OptimizeReport['gates'] {
  // With no gate of its own, the model may not lose more than a point of its headline metric; and failed
  // requests are gated as `mlops bench` gates them (failureGates): never a pass by default.
  const defaults: GateSpec[] = [
    ...(specs.length === 0 ? [{ metric: task === 'regression' ? 'r2_drop' : 'accuracy_drop', op: '<=' as const, threshold: 0.01 }] : []),
    ...failureGates(specs, 'throughput_ratio'),
  ];
  return [...evaluateGates(specs, values), ...evaluateGates(defaults, values).map((g) => ({ ...g, implicit: true }))];
}

/** The optimized model, in the work folder, and what quantization did to it. */
interface Made {
  file: string;
  quantized: QuantizeResult;
  calibration: OptimizeReport['calibration'];
}

/** ONNX Runtime's graph optimization of the source, and before it, when the recipe asks, mlops' INT8 quantization. */
async function makeOptimized(options: RunOptimizeOptions, recipe: Recipe, source: SourceModel, holdoutFile: string, work: string): Promise<Made> {
  const { quantize, level, method, perChannel, exclude } = recipe;
  const file = path.join(work, 'optimized.onnx');
  const metadata: Record<string, string> = {
    [OPTIMIZE_METADATA.sourceSha256]: source.sha256,
    [OPTIMIZE_METADATA.level]: level,
    [OPTIMIZE_METADATA.method]:
      quantize === 'none' ? `graph-${level}` : `${quantize}-int8${quantize === 'static' ? `-${method}${perChannel ? '-per-channel' : ''}` : ''}`,
  };
  if (quantize === 'none') {
    options.onStep?.(`Optimizing the graph (ONNX Runtime, level ${level})`);
    await ortOptimize(source.path, path.join(work, 'graph.onnx'), level);
    const model = decodeModel(await readFile(path.join(work, 'graph.onnx')));
    await inlineExternalData(model, path.dirname(source.path));
    setMetadata(model, metadata);
    await writeFile(file, encodeModel(model));
    return { file, quantized: { quantized: [], leftInFloat: [] }, calibration: null };
  }
  // Basic level first: constant folding and eliminations in standard ops only, so the quantizer sees plain MatMul, Gemm and Conv.
  options.onStep?.('Folding constants (ONNX Runtime, level basic)');
  await ortOptimize(source.path, path.join(work, 'basic.onnx'), 'basic');
  const model = decodeModel(await readFile(path.join(work, 'basic.onnx')));
  await inlineExternalData(model, path.dirname(source.path));
  let quantized: QuantizeResult;
  let calibration: OptimizeReport['calibration'] = null;
  if (quantize === 'dynamic') {
    quantized = quantizeDynamic(model, exclude);
  } else {
    const calibrated = await calibrateRanges(options, recipe, source, model, holdoutFile);
    calibration = calibrated.calibration;
    metadata[OPTIMIZE_METADATA.calibrationRows] = String(calibration.rows);
    quantized = quantizeStatic(model, exclude, calibrated.ranges, perChannel);
  }
  if (exclude.length > 0) metadata[OPTIMIZE_METADATA.excluded] = exclude.join(',');
  setMetadata(model, metadata);
  const plain = encodeModel(model);
  if (level === 'basic') await writeFile(file, plain);
  else {
    // The fused form (QLinearConv, DynamicQuantizeMatMul, ...) ONNX Runtime would build at every load, saved once.
    options.onStep?.(`Optimizing the quantized graph (ONNX Runtime, level ${level})`);
    await ortOptimize(plain, path.join(work, 'fused.onnx'), level);
    const fused = decodeModel(await readFile(path.join(work, 'fused.onnx')));
    setMetadata(fused, metadata);
    await writeFile(file, encodeModel(fused));
  }
  return { file, quantized, calibration };
}

/** Static quantization's activation ranges, from the calibration rows run through the float model. */
async function calibrateRanges(
  options: RunOptimizeOptions,
  recipe: Recipe,
  source: SourceModel,
  model: ModelProto,
  holdoutFile: string,
): Promise<{ ranges: Map<string, Range>; calibration: NonNullable<OptimizeReport['calibration']> }> {
  const { config, cwd, projectDir } = options;
  const calibrationFile = options.calibrationFile
    ? path.resolve(cwd, options.calibrationFile)
    : config.monitor.reference
      ? path.resolve(projectDir, config.monitor.reference)
      : holdoutFile;
  if (!calibrationFile)
    throw inputError('static quantization needs calibration rows', 'pass --calibration <file> (any holdout format), or set monitor.reference or test.holdout');
  const { candidates } = findCandidates(model, 'static', recipe.exclude);
  const inputs: TensorSignature[] = source.inputs.map((i) => ({
    name: i.name,
    datatype: i.datatype as TensorSignature['datatype'],
    shape: i.shape ?? [],
  }));
  const data = await openHoldout({
    cwd,
    holdout: calibrationFile,
    inputs,
    label: config.test.label,
    labelOptional: true,
    features: config.test.features,
    model: { ...config.model, path: source.path },
  });
  options.onStep?.(`Calibrating on up to ${recipe.calibrationRows} rows of ${path.relative(cwd, calibrationFile) || calibrationFile}`);
  const { ranges, rows } = await calibrate({
    model,
    tensors: calibrationTensors(candidates),
    inputs,
    data,
    rows: recipe.calibrationRows,
    method: recipe.method,
    percentile: config.optimize.percentile,
  });
  return { ranges, calibration: { file: path.relative(cwd, calibrationFile) || calibrationFile, rows, method: recipe.method } };
}

/** Both models scored on the holdout (into `before` and `after`), and their outputs compared row by row. */
async function scoreSides(
  options: RunOptimizeOptions,
  sourcePath: string,
  optimizedPath: string,
  holdoutFile: string,
  before: ModelSide,
  after: ModelSide,
): Promise<{ task: TestReport['task'] | null; agreement: OptimizeReport['agreement'] }> {
  const { config, cwd, projectDir } = options;
  const testConfig: Config = { ...config, test: { ...config.test, gates: {}, maxDrop: {}, parity: { ...config.test.parity, sample: 0 } } };
  let task: TestReport['task'] | null = null;
  for (const [label, file, into] of [
    ['source', sourcePath, before],
    ['optimized', optimizedPath, after],
  ] as const) {
    options.onStep?.(`Scoring the ${label} model on the holdout`);
    const report = await runQualityTest({
      cwd,
      projectDir,
      config: testConfig,
      env: options.env,
      target: { where: { kind: 'local' }, modelFile: file },
      holdoutFile,
      gates: [],
      processingFrom: sourcePath,
    });
    into.metrics = report.metrics as unknown as Record<string, number | null>;
    task = report.task;
  }
  options.onStep?.("Comparing the two models' outputs row by row");
  return { task, agreement: await compareOutputs(sourcePath, optimizedPath, holdoutFile, config, cwd) };
}

/** Both models benchmarked in-process, in alternating rounds; the medians go into `before` and `after`. Returns the optimized model's runs. */
async function benchSides(
  options: RunOptimizeOptions,
  sourcePath: string,
  optimizedPath: string,
  holdoutFile: string,
  before: ModelSide,
  after: ModelSide,
): Promise<BenchRun[]> {
  const { config, cwd, projectDir } = options;
  const settings = config.optimize.bench;
  const benchConfig: Config = {
    ...config,
    bench: {
      ...config.bench,
      gates: {},
      concurrency: [settings.concurrency],
      rates: [],
      batch: [settings.batch],
      durationSeconds: settings.durationSeconds,
      warmupSeconds: Math.min(1, settings.durationSeconds / 2),
    },
  };
  const runs: { source: BenchRun[]; optimized: BenchRun[] } = { source: [], optimized: [] };
  // Alternating rounds: a noisy neighbour slows both models, not one.
  for (let round = 0; round < settings.rounds; round++) {
    for (const [label, file] of [
      ['source', sourcePath],
      ['optimized', optimizedPath],
    ] as const) {
      options.onStep?.(`Benchmarking the ${label} model in-process (round ${round + 1} of ${settings.rounds})`);
      const report = await runBench({
        cwd,
        projectDir,
        config: benchConfig,
        env: options.env,
        target: { where: { kind: 'local' }, modelFile: file },
        holdoutFile: holdoutFile || undefined,
        gates: [],
        processingFrom: sourcePath,
      });
      runs[label].push(report.runs[0]);
    }
  }
  for (const [label, into] of [
    ['source', before],
    ['optimized', after],
  ] as const) {
    const measured = runs[label].filter((r) => r.latencyMs !== null);
    if (measured.length === 0) continue;
    into.latencyMs = { p50: median(measured.map((r) => r.latencyMs!.p50)), p99: median(measured.map((r) => r.latencyMs!.p99)) };
    into.throughputRps = median(measured.map((r) => r.throughputRps));
  }
  return runs.optimized;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function metricComparison(before: Record<string, number | null> | null, after: Record<string, number | null> | null): OptimizeReport['comparison'] {
  if (!before || !after) return [];
  return Object.keys(before)
    .filter((metric) => typeof before[metric] === 'number' || typeof after[metric] === 'number')
    .map((metric) => {
      const b = typeof before[metric] === 'number' ? before[metric] : null;
      const a = typeof after[metric] === 'number' ? after[metric] : null;
      const drop = a === null || b === null ? null : LOWER_IS_BETTER.has(metric) ? a - b : b - a;
      return { metric, before: b, after: a, drop };
    });
}

/** Both models on every holdout row: how far their outputs are apart, and how often the predicted class changed. */
async function compareOutputs(
  sourcePath: string,
  optimizedPath: string,
  holdoutFile: string,
  config: Config,
  cwd: string,
): Promise<NonNullable<OptimizeReport['agreement']>> {
  const models: Predictor[] = [await openLocalPredictor(sourcePath), await openLocalPredictor(optimizedPath)];
  try {
    const [a, b] = models;
    const output = chooseOutput(a, config.test.output);
    const holdout = await openHoldout({
      cwd,
      holdout: holdoutFile,
      inputs: a.inputs,
      label: config.test.label,
      labelOptional: true,
      features: config.test.features,
      model: { ...config.model, path: sourcePath },
    });
    const { size, fixed } = batchSizeFor(a.inputs, 64);
    let rows = 0;
    let maxAbsDiff = 0;
    let sum = 0;
    let count = 0;
    let changed = 0;
    const width = output.shape.slice(1).reduce((n, d) => n * (d > 0 ? d : 1), 1);
    const classes = width >= 2;
    for await (const batch of inBatches(holdout.rows(), size)) {
      const feeds = rowsToTensors(batch, a.inputs, fixed ? size : batch.length);
      const [x, y] = [(await a.predict(feeds))[output.name].data as ArrayLike<number>, (await b.predict(feeds))[output.name].data as ArrayLike<number>];
      const perRow = x.length / (fixed ? size : batch.length);
      for (let r = 0; r < batch.length; r++) {
        let argA = 0;
        let argB = 0;
        for (let i = 0; i < perRow; i++) {
          const at = r * perRow + i;
          const diff = Math.abs(Number(x[at]) - Number(y[at]));
          maxAbsDiff = Number.isNaN(diff) ? Infinity : Math.max(maxAbsDiff, diff);
          sum += Number.isNaN(diff) ? Infinity : diff;
          count++;
          if (x[at] > x[r * perRow + argA]) argA = i;
          if (y[at] > y[r * perRow + argB]) argB = i;
        }
        if (classes && argA !== argB) changed++;
      }
      rows += batch.length;
    }
    return { rows, maxAbsDiff, meanAbsDiff: count > 0 ? sum / count : 0, classChangeRate: classes && rows > 0 ? changed / rows : null };
  } finally {
    for (const m of models) await m.close();
  }
}

/** The export folder's processing files beside `target`, where it is written elsewhere; a file already there is left alone. */
async function copyProcessingFiles(sourceModel: string, target: string): Promise<void> {
  const from = path.dirname(sourceModel);
  const to = path.dirname(path.resolve(target));
  if (from === to) return;
  for (const file of Object.values((await readModelFolder(sourceModel)).files)) {
    const destination = path.join(to, file.name);
    if (!(await stat(destination).catch(() => undefined))) await copyFile(file.path, destination);
  }
}
