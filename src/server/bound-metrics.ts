/**
 * Counters and histograms for the request path whose series are bound to their labels once: a
 * series' inc() or observe() is a few array writes. prom-client hashes the label object on every call,
 * even through a labels() child: an observe() cost 0.42 µs with two labels against 0.14 µs with none
 * (measured on these machines), and a request made five such calls. Registered in the same prom-client
 * registry, which formats them as it formats its own: /metrics reads the same.
 */
import type { Registry } from 'prom-client';

type Labels = Record<string, string | number>;

interface Exported {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  values: { value: number; labels: Labels; metricName?: string }[];
}

/** What prom-client's registry needs of a metric: its name, and its values when asked. */
abstract class BoundMetric<S> {
  private readonly series = new Map<string, { labels: Labels; state: S }>();
  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
  ) {
    registry.registerMetric(this as never);
  }

  protected bind(labels: Labels, create: () => S): S {
    const key = this.labelNames.map((n) => labels[n]).join('\u0000');
    let found = this.series.get(key);
    if (!found) {
      // In label-name order, as prom-client writes them.
      found = { labels: Object.fromEntries(this.labelNames.map((n) => [n, labels[n]])), state: create() };
      this.series.set(key, found);
    }
    return found.state;
  }

  protected all(): { labels: Labels; state: S }[] {
    return [...this.series.values()];
  }

  reset(): void {
    this.series.clear();
  }
}

export class BoundCounter extends BoundMetric<{ value: number }> {
  readonly type = 'counter';
  readonly aggregator = 'sum';

  /** The series of these labels, created at the first call: keep it, and inc() it. */
  labels(labels: Labels): { inc(by?: number): void } {
    const state = this.bind(labels, () => ({ value: 0 }));
    return { inc: (by = 1) => void (state.value += by) };
  }

  get(): Exported {
    return {
      name: this.name,
      help: this.help,
      type: 'counter',
      aggregator: 'sum',
      values: this.all().map(({ labels, state }) => ({ value: state.value, labels })),
    };
  }
}

export class BoundHistogram extends BoundMetric<{ counts: Float64Array; sum: number; count: number }> {
  readonly type = 'histogram';
  readonly aggregator = 'sum';

  constructor(
    registry: Registry,
    name: string,
    help: string,
    labelNames: readonly string[],
    private readonly buckets: readonly number[],
  ) {
    super(registry, name, help, labelNames);
  }

  labels(labels: Labels): { observe(value: number): void } {
    const { buckets } = this;
    const state = this.bind(labels, () => ({ counts: new Float64Array(buckets.length), sum: 0, count: 0 }));
    return {
      observe(value: number) {
        state.sum += value;
        state.count++;
        // The first bucket it fits (le is inclusive); above them all it counts only in +Inf.
        for (let b = 0; b < buckets.length; b++) {
          if (value <= buckets[b]) {
            state.counts[b]++;
            return;
          }
        }
      },
    };
  }

  get(): Exported {
    const values: Exported['values'] = [];
    for (const { labels, state } of this.all()) {
      let cumulative = 0;
      this.buckets.forEach((le, b) => {
        cumulative += state.counts[b];
        values.push({ value: cumulative, labels: { le, ...labels }, metricName: `${this.name}_bucket` });
      });
      values.push({ value: state.count, labels: { le: '+Inf', ...labels }, metricName: `${this.name}_bucket` });
      values.push({ value: state.sum, labels, metricName: `${this.name}_sum` });
      values.push({ value: state.count, labels, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values };
  }
}
