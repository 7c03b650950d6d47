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
import { evaluateGates, failureGates, gatesFromConfig, parseGateFlag, type GateResult, type GateSpec } from '../metrics/gates.js';
import { CLASSIFICATION_METRICS, REGRESSION_METRICS } from '../metrics/names.js';
import { LOWER_IS_BETTER } from '../metrics/regression.js';
import { inspectModel } from '../model/inspect.js';
import { openLocalPredictor, type Predictor, type TensorSignature } from '../predict/predictor.js';
import { calibrate, type CalibrationMethod } from './calibrate.js';
import { OPTIMIZE_METADATA } from '../model/optimized.js';
import { decodeModel, encodeModel, inlineExternalData, setMetadata } from './onnx-graph.js';
import { calibrationTensors, findCandidates, quantizeDynamic, quantizeStatic, type LeftInFloat, type QuantizeResult } from './quantize.js';

export type OptimizationLevel = 'basic' | 'extended' | 'all';

export interface OptimizeFlags {
  model?: string;
  output?: string;
  quantize?: string;
  calibration?: string;
  calibrationRows?: number;
  method?: string;
  perChannel?: boolean;
  exclude: string[];
  level?: string;
  gate: string[];
  keep?: boolean;
  holdout?: string;
}

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
  quantize: 'none' | 'dynamic' | 'static';
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

function choice<T extends string>(value: string | undefined, allowed: readonly T[], flag: string): T | undefined {
  if (value === undefined || value === '') return undefined;
  if (!allowed.includes(value as T)) throw inputError(`${flag} ${value}: expected ${allowed.join(', ')}`);
  return value as T;
}

/** ONNX Runtime's own offline optimization: the session writes the graph it optimized. */
async function ortOptimize(input: string | Uint8Array, output: string, level: OptimizationLevel): Promise<void> {
  const session = await ort.InferenceSession.create(input as never, { graphOptimizationLevel: level, optimizedModelFilePath: output, logSeverityLevel: 4 });
  await session.release();
}

export interface RunOptimizeOptions {
  cwd: string;
  projectDir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  flags: OptimizeFlags;
  onStep?: (line: string) => void;
}

/**
 * Optimizes (and quantizes) a model, then scores and benchmarks it beside the source and gates the
 * result; the output file is written only when the gates pass (or with --keep).
 */
export async function runOptimize(options: RunOptimizeOptions): Promise<OptimizeReport> {
  const started = performance.now();
  const { flags, config, cwd, projectDir } = options;
  const settings = config.optimize;
  const sourcePath = flags.model ? path.resolve(cwd, flags.model) : path.resolve(projectDir, config.model.path);
  const outputSetting = flags.output ? path.resolve(cwd, flags.output) : settings.output ? path.resolve(projectDir, settings.output) : '';
  if (!outputSetting) throw inputError('no output file', 'pass --output model.int8.onnx, or set optimize.output');
  if (path.resolve(outputSetting) === path.resolve(sourcePath))
    throw inputError(`--output ${flags.output ?? settings.output} is the source model`, 'write the optimized model to another file');
  const quantize = choice(flags.quantize, ['none', 'dynamic', 'static'] as const, '--quantize') ?? settings.quantize;
  const level = choice(flags.level, ['basic', 'extended', 'all'] as const, '--level') ?? settings.level;
  const method = choice(flags.method, ['minmax', 'percentile'] as const, '--method') ?? settings.method;
  const perChannel = flags.perChannel ?? settings.perChannel;
  const exclude = [...settings.exclude, ...flags.exclude];
  const calibrationRows = flags.calibrationRows ?? settings.calibrationRows;
  if (!Number.isInteger(calibrationRows) || calibrationRows < 1) throw inputError(`--calibration-rows ${calibrationRows}: expected a row count >= 1`);
  const specs: GateSpec[] = [...gatesFromConfig(settings.gates), ...flags.gate.map(parseGateFlag)];
  for (const spec of specs)
    if (!OPTIMIZE_METRICS.includes(spec.metric))
      throw inputError(`gate on unknown metric '${spec.metric}' for optimize`, `known: ${OPTIMIZE_METRICS.join(', ')}`);

  const source = await inspectModel(sourcePath, { cwd });
  const holdoutFile = flags.holdout ? path.resolve(cwd, flags.holdout) : config.test.holdout ? path.resolve(projectDir, config.test.holdout) : '';
  if (specs.length === 0 && !holdoutFile)
    throw inputError(
      'optimize has nothing to judge the optimized model by: no holdout and no gate',
      'set test.holdout (or pass --holdout), and optimize.gates such as {"accuracy_drop": "<= 0.005", "speedup": ">= 1.2"}',
    );
  const work = await mkdtemp(path.join(tmpdir(), 'mlops-optimize-'));
  try {
    const written = path.join(work, 'optimized.onnx');
    let quantized: QuantizeResult = { quantized: [], leftInFloat: [] };
    let calibration: OptimizeReport['calibration'] = null;
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
      await writeFile(written, encodeModel(model));
    } else {
      // Basic level first: constant folding and eliminations in standard ops only, so the quantizer sees plain MatMul, Gemm and Conv.
      options.onStep?.('Folding constants (ONNX Runtime, level basic)');
      await ortOptimize(source.path, path.join(work, 'basic.onnx'), 'basic');
      const model = decodeModel(await readFile(path.join(work, 'basic.onnx')));
      await inlineExternalData(model, path.dirname(source.path));
      if (quantize === 'dynamic') {
        quantized = quantizeDynamic(model, exclude);
      } else {
        const calibrationFile = flags.calibration
          ? path.resolve(cwd, flags.calibration)
          : config.monitor.reference
            ? path.resolve(projectDir, config.monitor.reference)
            : holdoutFile;
        if (!calibrationFile)
          throw inputError(
            'static quantization needs calibration rows',
            'pass --calibration <file> (any holdout format), or set monitor.reference or test.holdout',
          );
        const { candidates } = findCandidates(model, 'static', exclude);
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
        options.onStep?.(`Calibrating on up to ${calibrationRows} rows of ${path.relative(cwd, calibrationFile) || calibrationFile}`);
        const { ranges, rows } = await calibrate({
          model,
          tensors: calibrationTensors(candidates),
          inputs,
          data,
          rows: calibrationRows,
          method,
          percentile: settings.percentile,
        });
        calibration = { file: path.relative(cwd, calibrationFile) || calibrationFile, rows, method };
        metadata[OPTIMIZE_METADATA.calibrationRows] = String(rows);
        quantized = quantizeStatic(model, exclude, ranges, perChannel);
      }
      if (exclude.length > 0) metadata[OPTIMIZE_METADATA.excluded] = exclude.join(',');
      setMetadata(model, metadata);
      const plain = encodeModel(model);
      if (level === 'basic') await writeFile(written, plain);
      else {
        // The fused form (QLinearConv, DynamicQuantizeMatMul, ...) ONNX Runtime would build at every load, saved once.
        options.onStep?.(`Optimizing the quantized graph (ONNX Runtime, level ${level})`);
        await ortOptimize(plain, path.join(work, 'fused.onnx'), level);
        const fused = decodeModel(await readFile(path.join(work, 'fused.onnx')));
        setMetadata(fused, metadata);
        await writeFile(written, encodeModel(fused));
      }
    }
    const writtenBytes = await readFile(written);

    // The gate: both models scored and benchmarked the same way, side by side.
    const side = (file: string, sha: string, size: number): ModelSide => ({
      file,
      sha256: sha,
      sizeBytes: size,
      metrics: null,
      latencyMs: null,
      throughputRps: null,
    });
    // A source with external data weighs its data files too.
    const externalBytes = (await Promise.all(source.externalData.map((f) => stat(path.resolve(path.dirname(source.path), f)).then((s) => s.size)))).reduce(
      (a, b) => a + b,
      0,
    );
    const before = side(path.relative(cwd, source.path) || source.path, source.sha256, source.sizeBytes + externalBytes);
    const after = side(path.relative(cwd, outputSetting) || outputSetting, sha256(writtenBytes), writtenBytes.length);
    let task: TestReport['task'] | null = null;
    let agreement: OptimizeReport['agreement'] = null;
    const testConfig: Config = { ...config, test: { ...config.test, gates: {}, maxDrop: {}, parity: { ...config.test.parity, sample: 0 } } };
    if (holdoutFile) {
      for (const [label, file, into] of [
        ['source', source.path, before],
        ['optimized', written, after],
      ] as const) {
        options.onStep?.(`Scoring the ${label} model on the holdout`);
        const report = await runQualityTest({
          cwd,
          projectDir,
          config: testConfig,
          env: options.env,
          flags: { local: true, model: file, holdout: holdoutFile, gate: [] },
          processingFrom: source.path,
        });
        into.metrics = report.metrics as unknown as Record<string, number | null>;
        task = report.task;
      }
      options.onStep?.("Comparing the two models' outputs row by row");
      agreement = await compareOutputs(source.path, written, holdoutFile, config, cwd);
    }
    const rounds = settings.bench.rounds;
    const benchConfig: Config = {
      ...config,
      bench: {
        ...config.bench,
        gates: {},
        concurrency: [settings.bench.concurrency],
        rates: [],
        batch: [settings.bench.batch],
        durationSeconds: settings.bench.durationSeconds,
        warmupSeconds: Math.min(1, settings.bench.durationSeconds / 2),
      },
    };
    const runs: { source: BenchRun[]; optimized: BenchRun[] } = { source: [], optimized: [] };
    // Alternating rounds: a noisy neighbour slows both models, not one.
    for (let round = 0; round < rounds; round++) {
      for (const [label, file] of [
        ['source', source.path],
        ['optimized', written],
      ] as const) {
        options.onStep?.(`Benchmarking the ${label} model in-process (round ${round + 1} of ${rounds})`);
        const report = await runBench({
          cwd,
          projectDir,
          config: benchConfig,
          env: options.env,
          flags: { local: true, model: file, gate: [], ...(holdoutFile ? { holdout: holdoutFile } : {}) },
          processingFrom: source.path,
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

    const comparison = metricComparison(before.metrics, after.metrics);
    const values: Record<string, number | null> = {
      speedup: before.latencyMs && after.latencyMs && after.latencyMs.p50 > 0 ? before.latencyMs.p50 / after.latencyMs.p50 : null,
      throughput_ratio: before.throughputRps && after.throughputRps !== null ? after.throughputRps / before.throughputRps : null,
      size_ratio: after.sizeBytes / before.sizeBytes,
      // The optimized model's failed benchmark requests, worst round: a model that fails is no gain, whatever its size.
      error_rate: runs.optimized.length > 0 ? Math.max(...runs.optimized.map((r) => r.errors.rate)) : null,
      max_abs_diff: agreement?.maxAbsDiff ?? null,
      mean_abs_diff: agreement?.meanAbsDiff ?? null,
      class_change_rate: agreement?.classChangeRate ?? null,
      ...Object.fromEntries(comparison.map((c) => [`${c.metric}_drop`, c.drop])),
    };
    // With no gate of its own, the model may not lose more than a point of its headline metric; and failed
    // requests are gated as `mlops bench` gates them (failureGates): never a pass by default.
    const defaults: GateSpec[] = [
      ...(specs.length === 0 ? [{ metric: task === 'regression' ? 'r2_drop' : 'accuracy_drop', op: '<=' as const, threshold: 0.01 }] : []),
      ...failureGates(specs, 'throughput_ratio'),
    ];
    const gates = [...evaluateGates(specs, values), ...evaluateGates(defaults, values).map((g) => ({ ...g, implicit: true }))];
    const passed = gates.every((g) => g.passed);
    let output: string | null = null;
    if (passed || flags.keep) {
      // Into place whole: a rename within the output's folder, never a half-written model.
      const staging = `${outputSetting}.tmp-${process.pid}`;
      await copyFile(written, staging);
      await rename(staging, outputSetting);
      // A model from an export folder keeps its processing files beside it, so the optimized one builds and serves the same.
      await copyProcessingFiles(source.path, outputSetting);
      output = after.file;
    }
    return {
      source: before,
      optimized: after,
      output,
      level,
      quantize,
      calibration,
      quantized: quantized.quantized,
      leftInFloat: quantized.leftInFloat,
      task,
      comparison,
      agreement,
      values,
      gates,
      passed,
      seconds: Math.round((performance.now() - started) / 10) / 100,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
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
