import { describe, expect, it } from 'vitest';
import { createLatencyHistogram, recordMs, summarize } from '../../src/bench/stats.js';

describe('latency statistics', () => {
  it('gives the percentiles, mean and stddev of a known sequence (3 significant digits)', () => {
    const h = createLatencyHistogram();
    for (let v = 1; v <= 1000; v++) recordMs(h, v / 10); // 0.1 ms .. 100 ms
    const s = summarize(h)!;
    const close = (actual: number, expected: number) => expect(Math.abs(actual - expected) / expected).toBeLessThan(0.002);
    close(s.min, 0.1);
    close(s.p50, 50);
    close(s.p90, 90);
    close(s.p95, 95);
    close(s.p99, 99);
    close(s.p999, 99.9);
    close(s.max, 100);
    close(s.mean, 50.05);
    close(s.stddev, 28.867);
  });

  it('is absent, never zero, for a run with no successful request', () => {
    expect(summarize(createLatencyHistogram())).toBeNull();
  });
});
