/**
 * Every config field's default, in one place. mlops.config.example.json shows
 * the same values with a comment for each; test/config.test.ts keeps them equal.
 */
export interface Config {
  model: { path: string; name: string; version: string };
  server: {
    host: string;
    port: number;
    maxBodyBytes: number;
    shutdownTimeoutMs: number;
    intraOpThreads: number;
    batching: { enabled: boolean; maxBatchSize: number; maxWaitMs: number };
  };
  image: { repository: string; base: string; platform: 'linux/amd64' | 'linux/arm64'; port: number };
  test: {
    holdout: string;
    task: '' | 'classification' | 'regression';
    label: string;
    features: string[] | Record<string, string[]>;
    labels: string[];
    output: string;
    outputKind: 'auto' | 'probabilities' | 'logits';
    threshold: number;
    batchSize: number;
    gates: Record<string, string>;
    maxDrop: Record<string, number>;
    parity: { sample: number; tolerance: number };
  };
  bench: {
    concurrency: number[];
    rates: number[];
    batch: number[];
    durationSeconds: number;
    warmupSeconds: number;
    workers: number;
    seed: number;
    gates: Record<string, string>;
    regression: { tolerance: number; metrics: string[] };
  };
}

export const DEFAULTS: Config = {
  model: {
    /** Relative paths are resolved from the config file's folder. */
    path: 'model.onnx',
    /** Empty: derived from the file name (or its folder when the file is model.onnx). */
    name: '',
    version: '1',
  },
  server: {
    host: '127.0.0.1',
    port: 8080,
    maxBodyBytes: 16 * 1024 * 1024,
    shutdownTimeoutMs: 10_000,
    /** 0 lets ONNX Runtime choose (one thread per physical core). */
    intraOpThreads: 0,
    batching: {
      enabled: true,
      maxBatchSize: 32,
      /**
       * 0: no added wait. Requests that arrive while a batch is running form the
       * next batch, so batching costs nothing at low load (README, Benchmarks).
       */
      maxWaitMs: 0,
    },
  },
  image: {
    /** Empty: the model name. Add a registry prefix (registry.example.com/team/model) to push. */
    repository: '',
    /** An image with `node` (20 or newer, glibc) on its PATH. */
    base: 'node:20-slim',
    platform: 'linux/amd64',
    /** The port the server listens on inside the container. */
    port: 8080,
  },
  test: {
    /** The holdout file (.csv, .jsonl, .npy); --holdout overrides it. */
    holdout: '',
    /** Empty: detected from the output (a column per class means classification). */
    task: '',
    label: 'label',
    /** CSV columns for the model's inputs; empty: every other column, in file order. */
    features: [],
    /** Class index -> label as written in the holdout; empty: labels are class indices. */
    labels: [],
    /** Which output is scored; empty: the first. */
    output: '',
    outputKind: 'auto',
    /** For a single sigmoid column: the positive class when p >= threshold. */
    threshold: 0.5,
    /** Rows per inference request. */
    batchSize: 256,
    /** Metric name -> comparison, e.g. {"accuracy": ">= 0.95"}. */
    gates: {},
    /** Metric name -> the most it may fall behind --baseline. */
    maxDrop: {},
    parity: { sample: 256, tolerance: 1e-4 },
  },
  bench: {
    /** Closed-loop runs, one per concurrency (clients sending back to back). */
    concurrency: [1, 8, 32],
    /** Open-loop runs, one per arrival rate in requests a second; none by default. */
    rates: [],
    /** Rows per request; a run per value. */
    batch: [1],
    durationSeconds: 10,
    warmupSeconds: 2,
    /** Load generator threads for HTTP targets. */
    workers: 1,
    /** Seed for the random inputs. */
    seed: 1,
    /** Metric -> comparison, checked on every run, e.g. {"p95_ms": "<= 20"}. */
    gates: {},
    /** With --baseline: how much worse than the baseline a run may be, relatively, on these metrics. */
    regression: { tolerance: 0.1, metrics: ['p95_ms', 'throughput_rps'] },
  },
};
