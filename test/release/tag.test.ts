import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { reportLabels } from '../../src/release/tag.js';
import { withTempDir } from '../helpers.js';

describe('result labels', () => {
  it('come only from reports made on the same image', async () => {
    await withTempDir(async (dir) => {
      await mkdir(path.join(dir, '.mlops'));
      await writeFile(
        path.join(dir, '.mlops/last-test.json'),
        JSON.stringify({ imageId: 'sha256:aaa', passed: true, rows: 10, metrics: { accuracy: 0.91234567, confusion_matrix: [[1]] } }),
      );
      await writeFile(
        path.join(dir, '.mlops/last-bench.json'),
        JSON.stringify({
          target: { imageId: 'sha256:bbb' },
          passed: true,
          runs: [{ concurrency: 1, batch: 1, throughputRps: 100, latencyMs: { p50: 1, p95: 2, p99: 3 } }],
        }),
      );
      expect(await reportLabels(dir, 'sha256:aaa')).toEqual({ 'mlops.test.passed': 'true', 'mlops.test.rows': '10', 'mlops.test.accuracy': '0.912346' });
      expect(await reportLabels(dir, 'sha256:bbb')).toEqual({
        'mlops.bench.passed': 'true',
        'mlops.bench.load': 'concurrency 1, batch 1',
        'mlops.bench.p50_ms': '1',
        'mlops.bench.p95_ms': '2',
        'mlops.bench.p99_ms': '3',
        'mlops.bench.throughput_rps': '100',
      });
      expect(await reportLabels(dir, 'sha256:ccc')).toEqual({});
    });
  });
});
