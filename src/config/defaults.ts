/**
 * Every config field's default, in one place. mlops.config.example.json shows
 * the same values with a comment for each; test/config.test.ts keeps them equal.
 */
export const DEFAULTS = {
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
       * next batch, so batching costs nothing at low load (benchmark/README.md).
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
    /** Metric name -> comparison, e.g. {"accuracy": ">= 0.95"}. */
    gates: {} as Record<string, string>,
  },
} as const;

type Widen<T> = T extends string
  ? string
  : T extends number
    ? number
    : T extends boolean
      ? boolean
      : T extends Record<string, string>
        ? { [K in keyof T]: Widen<T[K]> }
        : { -readonly [K in keyof T]: Widen<T[K]> };

export type Config = Widen<typeof DEFAULTS>;
