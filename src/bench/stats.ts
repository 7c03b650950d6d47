import { build, type Histogram } from 'hdr-histogram-js';

export interface LatencySummary {
  min: number;
  mean: number;
  stddev: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
}

/** Latencies are recorded in nanoseconds (3 significant digits) and reported in milliseconds. */
export function createLatencyHistogram(): Histogram {
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: 3, autoResize: true });
}

export function recordMs(histogram: Histogram, ms: number): void {
  histogram.recordValue(Math.max(1, Math.round(ms * 1e6)));
}

/** Null when nothing was recorded: a run whose every request failed has no latency, never a latency of 0. */
export function summarize(histogram: Histogram): LatencySummary | null {
  const ms = (ns: number) => Math.round((ns / 1e6) * 1e4) / 1e4;
  if (histogram.totalCount === 0) return null;
  return {
    min: ms(histogram.minNonZeroValue),
    mean: ms(histogram.mean),
    stddev: ms(histogram.stdDeviation),
    p50: ms(histogram.getValueAtPercentile(50)),
    p90: ms(histogram.getValueAtPercentile(90)),
    p95: ms(histogram.getValueAtPercentile(95)),
    p99: ms(histogram.getValueAtPercentile(99)),
    p999: ms(histogram.getValueAtPercentile(99.9)),
    max: ms(histogram.maxValue),
  };
}
