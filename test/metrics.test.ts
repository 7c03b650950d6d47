import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { classificationMetrics } from '../src/metrics/classification.js';
import { regressionMetrics } from '../src/metrics/regression.js';
import { expectClose, fixture } from './helpers.js';

const cases = JSON.parse(readFileSync(fixture('metric_cases.sklearn.json'), 'utf8'));

describe('classification metrics match scikit-learn', () => {
  for (const c of cases.classification) {
    it(c.name, () => {
      const names = Array.from({ length: c.n_classes }, (_, i) => String(i));
      const proba = c.proba ? c.proba.flat() : undefined;
      expectClose(classificationMetrics(c.y_true, c.y_pred, proba, names), c.expected);
    });
  }

  it('the single-class case has no roc_auc, as scikit-learn refuses it', () => {
    const single = cases.classification.find((c: { name: string }) => c.name === 'single class present');
    const m = classificationMetrics(single.y_true, single.y_pred, single.proba.flat(), ['0', '1']);
    expect(m.roc_auc).toBeUndefined();
    expect(m.log_loss).toBeGreaterThan(0);
  });
});

describe('regression metrics match scikit-learn', () => {
  for (const c of cases.regression) {
    it(c.name, () => expectClose(regressionMetrics(c.y_true, c.y_pred), c.expected));
  }

  it('r2 of a constant target follows scikit-learn (1 when exact, 0 otherwise)', () => {
    expect(regressionMetrics([2, 2], [2, 2]).r2).toBe(1);
    expect(regressionMetrics([2, 2], [2, 3]).r2).toBe(0);
  });
});

describe('gates that keep failures from passing (mlops bench and mlops optimize)', () => {
  it('fail one failed request by default, leave a strict error gate alone, and pair a lax one with "some request succeeded"', async () => {
    const { failureGates, parseGateFlag } = await import('../src/metrics/gates.js');
    expect(failureGates([parseGateFlag('p99_ms<=50')], 'throughput_rps')).toEqual([{ metric: 'error_rate', op: '<=', threshold: 0 }]);
    expect(failureGates([parseGateFlag('error_rate<=0.01')], 'throughput_rps')).toEqual([]);
    expect(failureGates([parseGateFlag('error_rate<=1')], 'throughput_ratio')).toEqual([{ metric: 'throughput_ratio', op: '>', threshold: 0 }]);
  });
});
