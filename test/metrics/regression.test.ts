import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { regressionMetrics } from '../../src/metrics/regression.js';
import { expectClose, fixture } from '../helpers.js';

const cases = JSON.parse(readFileSync(fixture('metric_cases.sklearn.json'), 'utf8'));

describe('regression metrics match scikit-learn', () => {
  for (const c of cases.regression) {
    it(c.name, () => expectClose(regressionMetrics(c.y_true, c.y_pred), c.expected));
  }

  it('r2 of a constant target follows scikit-learn (1 when exact, 0 otherwise)', () => {
    expect(regressionMetrics([2, 2], [2, 2]).r2).toBe(1);
    expect(regressionMetrics([2, 2], [2, 3]).r2).toBe(0);
  });
});
