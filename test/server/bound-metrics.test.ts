/**
 * The request path's bound counters and histograms: /metrics must read exactly as prom-client's own
 * would for the same observations.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BoundCounter, BoundHistogram } from '../../src/server/bound-metrics.js';

describe('bound metrics', () => {
  it('write what prom-client writes for the same counts and observations, buckets inclusive, +Inf, sum and count', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const buckets = [0.001, 0.01, 0.1, 1];
    const counter = new BoundCounter(ours, 'x_requests_total', 'help "quoted"', ['route', 'code', 'model']);
    const histogram = new BoundHistogram(ours, 'x_seconds', 'latency', ['model', 'version'], buckets);
    const reference = new Counter({ name: 'x_requests_total', help: 'help "quoted"', labelNames: ['route', 'code', 'model'], registers: [theirs] });
    const referenceHistogram = new Histogram({ name: 'x_seconds', help: 'latency', labelNames: ['model', 'version'], buckets, registers: [theirs] });
    const series = [
      { route: '/v2/models/{name}/infer', code: 200, model: 'a' },
      { route: '/v2/models/{name}/infer', code: 400, model: 'a' },
      { route: '/metrics', code: 200, model: '' },
    ];
    series.forEach((labels, i) => {
      const bound = counter.labels(labels);
      for (let k = 0; k <= i; k++) {
        bound.inc();
        reference.inc(labels);
      }
    });
    const observed = [0.001, 0.0005, 0.05, 1, 7, 0.1];
    for (const [i, value] of observed.entries()) {
      const labels = { model: i % 2 ? 'a' : 'b', version: '1' };
      histogram.labels(labels).observe(value);
      referenceHistogram.observe(labels, value);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });
});
