import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server/run.js';
import { fixture, lines, runCli, serveOptions, withTempDir } from '../helpers.js';

describe('mlops bench', () => {
  let running: RunningServer;
  beforeAll(async () => {
    running = await startServer(serveOptions('breast_cancer', { modelName: 'bc', shutdownTimeoutMs: 2000 }), () => undefined);
  });
  afterAll(() => running?.stop());

  const config = (dir: string, bench: Record<string, unknown> = {}) =>
    writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: fixture('breast_cancer', 'model.onnx'), name: 'bc' }, bench }));

  it('benchmarks a running server from worker threads, with the server-side breakdown, and writes Markdown and HTML', async () => {
    await withTempDir(async (dir) => {
      await config(dir);
      const { code, stdout, stderr } = await runCli(
        [
          'bench',
          '--url',
          running.url,
          '--concurrency',
          '1,4',
          '--batch',
          '1,8',
          '--duration',
          '400ms',
          '--warmup',
          '100ms',
          '--workers',
          '2',
          '--markdown',
          'b.md',
          '--html',
          'b.html',
          '--json',
        ],
        { cwd: dir },
      );
      expect(code, stderr).toBe(0);
      const report = JSON.parse(stdout);
      expect(report.target).toEqual({ mode: 'url', image: null, imageId: null, protocol: 'rest-binary', url: running.url + '/' });
      expect(report.runs.map((r: { concurrency: number; batch: number }) => [r.concurrency, r.batch])).toEqual([
        [1, 1],
        [4, 1],
        [1, 8],
        [4, 8],
      ]);
      for (const run of report.runs) {
        expect(run).toMatchObject({ mode: 'closed', errors: { count: 0, rate: 0, byKind: {} } });
        expect(run.requests).toBeGreaterThan(10);
        expect(run.rowsPerSecond).toBeCloseTo(run.throughputRps * run.batch, -2);
        expect(run.latencyMs.p50).toBeGreaterThan(0);
        expect(run.latencyMs.p99).toBeGreaterThanOrEqual(run.latencyMs.p50);
        expect(run.server.times.inferenceMeanMs).toBeGreaterThan(0);
        expect(run.server.container).toBeNull();
      }
      expect(report.runs[3].server.times.batchSizeMean).toBeGreaterThan(8);
      expect(await readFile(path.join(dir, 'b.md'), 'utf8')).toContain('## mlops bench: passed');
      const html = await readFile(path.join(dir, 'b.html'), 'utf8');
      expect(html).toMatch(/^<!doctype html>/);
      expect(html.match(/<svg /g)).toHaveLength(2);
      expect(html).toContain('<polyline');
      expect(html).not.toMatch(/<script|\s(src|href)=/);
    });
  });

  it('exits 1 with a gate table when a latency gate fails, 0 when it holds', async () => {
    await withTempDir(async (dir) => {
      await config(dir, { gates: { error_rate: '<= 0' } });
      const args = ['bench', '--local', '--concurrency', '1', '--duration', '300ms', '--warmup', '0ms'];
      const failed = await runCli([...args, '--gate', 'p99_ms<=0.000001', '--json'], { cwd: dir });
      expect(failed.code).toBe(1);
      const gates = JSON.parse(failed.stdout).gates;
      expect(gates).toEqual([
        expect.objectContaining({ metric: 'error_rate', passed: true, run: 'concurrency 1, batch 1' }),
        expect.objectContaining({ metric: 'p99_ms', op: '<=', threshold: 0.000001, passed: false }),
      ]);
      const human = await runCli([...args, '--gate', 'p99_ms<=0.000001'], { cwd: dir });
      expect(human.stdout).toMatch(/concurrency 1, batch 1\s+p99_ms <= 0\.000001\s+\S+\s+FAIL/);
      expect(human.stdout).toContain('FAILED');
      expect((await runCli([...args, '--gate', 'throughput_rps>=1'], { cwd: dir })).code).toBe(0);
    });
  });

  it('fails a run that regressed beyond the tolerance against a baseline', async () => {
    await withTempDir(async (dir) => {
      await config(dir, { regression: { tolerance: 0.1, metrics: ['throughput_rps'] } });
      const baseline = {
        runs: [
          { mode: 'closed', concurrency: 1, batch: 1, throughputRps: 1e9, errors: { rate: 0 }, latencyMs: { p50: 1, p90: 1, p95: 1, p99: 1, max: 1, mean: 1 } },
        ],
      };
      await writeFile(path.join(dir, 'base.json'), JSON.stringify(baseline));
      const { code, stdout } = await runCli(
        ['bench', '--local', '--concurrency', '1', '--duration', '200ms', '--warmup', '0ms', '--baseline', 'base.json', '--json'],
        { cwd: dir },
      );
      expect(code).toBe(1);
      expect(JSON.parse(stdout).gates).toEqual([
        expect.objectContaining({ metric: 'error_rate', op: '<=', threshold: 0, passed: true }),
        expect.objectContaining({ metric: 'throughput_rps', op: 'max_regression', baseline: 1e9, passed: false }),
      ]);
    });
  });

  it('flags a run whose load generator fell behind its schedule', async () => {
    await withTempDir(async (dir) => {
      await config(dir);
      const { stdout } = await runCli(['bench', '--local', '--rate', '200000', '--duration', '300ms', '--warmup', '0ms', '--json'], { cwd: dir });
      const [run] = JSON.parse(stdout).runs;
      expect(run.mode).toBe('open');
      expect(run.unreliable).toBe(true);
      expect(run.unreliableReasons.join(' ')).toMatch(/fell behind its schedule|busy/);
    });
  });

  it('refuses bad flags and unknown gate metrics with exit 2', async () => {
    await withTempDir(async (dir) => {
      await config(dir);
      const bad = async (args: string[]) => {
        const r = await runCli(['bench', '--local', ...args], { cwd: dir });
        expect(r.code).toBe(2);
        return lines(r.stderr).find((l) => l.startsWith('error:'));
      };
      expect(await bad(['--concurrency', '0,8'])).toBe('error: --concurrency 0,8: expected a comma-separated list of whole numbers above 0, like 1,8,32');
      expect(await bad(['--duration', 'soon'])).toBe('error: --duration soon: expected a duration like 10s, 500ms or 2m');
      expect(await bad(['--gate', 'p42_ms<=1'])).toBe("error: gate on unknown metric 'p42_ms' for bench");
      expect(await bad(['--duration', '1s', '--requests', '10'])).toBe('error: --duration and --requests exclude each other');
    });
  });
});
