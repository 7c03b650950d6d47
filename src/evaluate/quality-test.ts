import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/defaults.js';
import { inputError } from '../errors.js';
import { openHoldout } from '../holdout/open.js';
import { describeGate, baselineGates, checkKnownMetrics, evaluateGates, gatesFromConfig, type GateResult, type GateSpec } from '../metrics/gates.js';
import { CLASSIFICATION_METRICS, REGRESSION_METRICS } from '../metrics/names.js';
import { LOWER_IS_BETTER } from '../metrics/regression.js';
import { openTarget, type HoldoutRun } from '../predict/target.js';
import { evaluate, type Evaluation } from './evaluate.js';
import type { FeatureSummary } from '../holdout/stats.js';
import { processingFor, type ProcessingPlan } from '../processing/plan.js';

export { CLASSIFICATION_METRICS, REGRESSION_METRICS };

export interface TestReport {
  model: string;
  image: string | null;
  imageId: string | null;
  mode: 'image' | 'url' | 'local';
  /** How the server was spoken to (rest-json, rest-binary, grpc); null in-process. */
  protocol: string | null;
  task: Evaluation['task'];
  rows: number;
  metrics: Evaluation['metrics'];
  gates: GateResult[];
  passed: boolean;
  parity: Evaluation['parity'];
  seconds: number;
  rowsPerSecond: number;
  holdout: { file: string; format: string };
  output: string;
  outputKind: Evaluation['outputKind'];
  classes?: string[];
  featureStats: Record<string, FeatureSummary>;
}

/** The metrics of a `mlops test --json` report (--baseline); a missing or malformed file exits 2 naming it. */
export async function readBaseline(cwd: string, file: string): Promise<Record<string, unknown>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path.resolve(cwd, file), 'utf8'));
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw inputError(`--baseline ${file}: ${missing ? 'file not found' : 'not valid JSON'}`, 'pass a report written by `mlops test --json`');
  }
  const metrics = (parsed as { metrics?: unknown }).metrics;
  if (!metrics || typeof metrics !== 'object') throw inputError(`--baseline ${file}: no "metrics" object`, 'pass a report written by `mlops test --json`');
  return metrics as Record<string, unknown>;
}

export interface RunTestOptions extends HoldoutRun {
  /** Gates beyond test.gates. */
  gates: GateSpec[];
  /** The metrics of an earlier `mlops test --json` report (readBaseline), which test.maxDrop limits how far each may fall from. */
  baseline?: Record<string, unknown>;
  onProgress?: (rows: number) => void;
  /** The model whose folder says how images and texts become tensors, when the one tested has none beside it (an optimized copy). */
  processingFrom?: string;
}

/** Scores the model on the holdout wherever it runs, then applies the gates. */
export async function runQualityTest(options: RunTestOptions): Promise<TestReport> {
  const { config, holdoutFile, baseline } = options;
  const specs = [...gatesFromConfig(config.test.gates), ...options.gates];
  const target = await openTarget({
    target: options.target,
    cwd: options.cwd,
    projectDir: options.projectDir,
    config,
    env: options.env,
    withReference: config.test.parity.sample > 0,
    purpose: 'test',
  });
  try {
    // A model folder's preprocessing reads image folders and text columns; its id2label names the classes.
    const processing = await processingFor(options.processingFrom ?? target.modelPath, target.predictor, config.model);
    const holdout = await openHoldout({
      cwd: options.cwd,
      holdout: holdoutFile,
      labels: options.labelsFile,
      inputs: target.predictor.inputs,
      label: config.test.label,
      features: config.test.features,
      processing,
    });
    const result = await evaluate({
      predictor: target.predictor,
      holdout: { ...holdout, file: holdoutFile },
      settings: withClassNames(config.test, processing),
      reference: target.reference,
      onProgress: options.onProgress,
    });
    const known = result.task === 'classification' ? CLASSIFICATION_METRICS : REGRESSION_METRICS;
    checkKnownMetrics(specs, known, result.task);
    checkKnownMetrics(
      Object.keys(config.test.maxDrop).map((metric) => ({ metric, op: 'max_drop' as const, threshold: 0 })),
      known,
      `${result.task} (test.maxDrop)`,
    );
    const metrics = result.metrics as unknown as Record<string, unknown>;
    const gates = [...evaluateGates(specs, metrics), ...(baseline ? baselineGates(config.test.maxDrop, baseline, metrics, LOWER_IS_BETTER) : [])];
    return {
      model: target.modelName,
      image: target.image ?? null,
      imageId: target.container?.imageId ?? null,
      mode: target.mode,
      protocol: target.predictor.protocol ?? null,
      task: result.task,
      rows: result.rows,
      metrics: result.metrics,
      gates,
      passed: gates.every((g) => g.passed) && (result.parity?.passed ?? true),
      parity: result.parity,
      seconds: Math.round(result.seconds * 1000) / 1000,
      rowsPerSecond: Math.round(result.rowsPerSecond),
      holdout: { file: holdoutFile, format: holdout.format },
      output: result.output,
      outputKind: result.outputKind,
      classes: result.classes,
      featureStats: result.featureStats,
    };
  } finally {
    await target.close();
  }
}

export { describeGate };

/** test.labels, or else the model folder's id2label names, so that a holdout can name its classes. */
export function withClassNames(settings: Config['test'], processing: ProcessingPlan | undefined): Config['test'] {
  const names = processing?.labels?.names ?? [];
  return settings.labels.length === 0 && names.length > 0 ? { ...settings, labels: names } : settings;
}
