import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // End-to-end files share one Docker engine and one registry: run files one at a time there.
    fileParallelism: false,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
