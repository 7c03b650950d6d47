import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { classificationMetrics } from '../../src/metrics/classification.js';
import { expectClose, fixture } from '../helpers.js';

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
