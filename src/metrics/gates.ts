import { COMPARISON } from '../config/schema.js';
import { inputError } from '../errors.js';

export type Op = '>=' | '<=' | '>' | '<' | '==' | 'max_drop' | 'max_regression';

export interface GateSpec {
  metric: string;
  op: Op;
  threshold: number;
}

export interface GateResult extends GateSpec {
  /** null when the metric could not be computed (e.g. roc_auc without probabilities): the gate fails. */
  value: number | null;
  passed: boolean;
  /** For max_drop gates: the baseline's value. */
  baseline?: number;
}

/** "accuracy>=0.95" (from --gate) */
export function parseGateFlag(text: string): GateSpec {
  const match = /^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|>|<)\s*(.+)$/.exec(text);
  const comparison = match && COMPARISON.exec(`${match[2]}${match[3]}`);
  if (!match || !comparison) {
    throw inputError(
      `--gate ${JSON.stringify(text)}: expected metric, comparison and number, like 'accuracy>=0.95'`,
      "quote it in the shell: --gate 'p95_ms<=20'",
    );
  }
  return { metric: match[1], op: comparison[1] as Op, threshold: Number(comparison[2]) };
}

/** {"accuracy": ">= 0.95"} (from config; already validated by the schema) */
export function gatesFromConfig(gates: Record<string, string>): GateSpec[] {
  return Object.entries(gates).map(([metric, text]) => {
    const comparison = COMPARISON.exec(text)!;
    return { metric, op: comparison[1] as Op, threshold: Number(comparison[2]) };
  });
}

export function checkKnownMetrics(specs: GateSpec[], known: readonly string[], what: string): void {
  for (const spec of specs) {
    if (!known.includes(spec.metric)) {
      throw inputError(`gate on unknown metric '${spec.metric}' for ${what}`, `known metrics: ${known.join(', ')}`);
    }
  }
}

const compare = (value: number, op: Op, threshold: number) =>
  op === '>=' ? value >= threshold : op === '<=' ? value <= threshold : op === '>' ? value > threshold : op === '<' ? value < threshold : value === threshold;

export function evaluateGates(specs: GateSpec[], metrics: Record<string, unknown>): GateResult[] {
  return specs.map((spec) => {
    const value = typeof metrics[spec.metric] === 'number' ? (metrics[spec.metric] as number) : null;
    return { ...spec, value, passed: value !== null && compare(value, spec.op, spec.threshold) };
  });
}

/** A metric may be at most `maxDrop[metric]` worse than the baseline's. */
export function baselineGates(
  maxDrop: Record<string, number>,
  baseline: Record<string, unknown>,
  metrics: Record<string, unknown>,
  lowerIsBetter: ReadonlySet<string>,
): GateResult[] {
  return Object.entries(maxDrop).map(([metric, threshold]) => {
    const before = typeof baseline[metric] === 'number' ? baseline[metric] : undefined;
    const value = typeof metrics[metric] === 'number' ? metrics[metric] : null;
    const drop = before === undefined || value === null ? undefined : lowerIsBetter.has(metric) ? value - before : before - value;
    return { metric, op: 'max_drop', threshold, value, baseline: before, passed: drop !== undefined && drop <= threshold + 1e-12 };
  });
}

export function describeGate(gate: GateSpec & { baseline?: number }): string {
  if (gate.op === 'max_drop') return `${gate.metric} drops at most ${gate.threshold} from ${gate.baseline ?? 'baseline'}`;
  if (gate.op === 'max_regression') return `${gate.metric} at most ${gate.threshold * 100}% worse than ${gate.baseline ?? 'baseline'}`;
  return `${gate.metric} ${gate.op} ${gate.threshold}`;
}

/**
 * The gates a load run adds so that failures never pass (`mlops bench`, `mlops optimize`): without an
 * error_rate gate of the user's, one failed request fails the run, since a benchmark of failures
 * measures nothing; an error_rate gate that would pass with every request failed gets a companion,
 * `succeeded` > 0: at least one request must have been answered.
 */
export function failureGates(specs: GateSpec[], succeeded: string): GateSpec[] {
  const errorGates = specs.filter((g) => g.metric === 'error_rate');
  if (errorGates.length === 0) return [{ metric: 'error_rate', op: '<=', threshold: 0 }];
  return evaluateGates(errorGates, { error_rate: 1 }).every((g) => g.passed) ? [{ metric: succeeded, op: '>', threshold: 0 }] : [];
}
