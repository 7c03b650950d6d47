import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { main } from '../src/cli.js';
import { serveOptionsFromConfig, type ServeOptions } from '../src/server/options.js';
import { readFileSync } from 'node:fs';
import { applyDefaults } from '../src/config/normalize.js';
import type { RawConfig } from '../src/config/schema.js';
import type { ReferenceProfile } from '../src/monitor/profile.js';
import { buildReferenceProfile } from '../src/monitor/reference.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const FIXTURES = path.join(ROOT, 'fixtures');
export const fixture = (...parts: string[]) => path.join(FIXTURES, ...parts);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in-process, as a user would from a shell, and captures its output. */
export async function runCli(argv: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, {
    cwd: options.cwd ?? ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, CI: 'true', ...options.env },
    stdout: { write: (s: string) => ((stdout += s), true) },
    stderr: { write: (s: string) => ((stderr += s), true) },
  });
  return { code, stdout, stderr };
}

export async function withTempDir<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mlops-test-'));
  try {
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Non-empty stderr lines. */
export const lines = (text: string) => text.split('\n').filter((l) => l.trim() !== '');

/** Every number in `expected` matches `actual` to within 1e-9; keys must match too. */
export function expectClose(actual: unknown, expected: unknown, at = 'metrics'): void {
  if (typeof expected === 'number') {
    expect(typeof actual, at).toBe('number');
    expect(Math.abs((actual as number) - expected), `${at}: ${String(actual)} vs ${expected}`).toBeLessThanOrEqual(1e-9);
    return;
  }
  if (Array.isArray(expected)) {
    expect((actual as unknown[]).length, at).toBe(expected.length);
    expected.forEach((e, i) => expectClose((actual as unknown[])[i], e, `${at}[${i}]`));
    return;
  }
  if (expected && typeof expected === 'object') {
    expect(Object.keys(actual as object).sort(), at).toEqual(Object.keys(expected).sort());
    for (const [key, value] of Object.entries(expected)) expectClose((actual as Record<string, unknown>)[key], value, `${at}.${key}`);
    return;
  }
  expect(actual, at).toEqual(expected);
}

/** Serve options for a fixture model on a free port, gRPC off, every other setting at its default. */
export function serveOptions(model: string, overrides: Partial<ServeOptions> = {}): ServeOptions {
  return {
    ...serveOptionsFromConfig(applyDefaults({}), ROOT),
    modelPath: fixture(model, 'model.onnx'),
    modelName: '',
    port: 0,
    grpcPort: 0,
    shutdownTimeoutMs: 5000,
    ...overrides,
  };
}

/** The reference profile `mlops build` would bake in for a fixture model under this config. */
export async function profileFor(model: string, raw: RawConfig): Promise<ReferenceProfile> {
  return buildReferenceProfile({ modelPath: fixture(model, 'model.onnx'), modelName: model, config: applyDefaults(raw), projectDir: ROOT });
}

/** The breast cancer holdout as rows of 30 numbers, in file order. */
export function holdoutRows(name = 'breast_cancer'): { header: string[]; rows: number[][] } {
  const [head, ...body] = readFileSync(fixture(name, 'holdout.csv'), 'utf8').trim().split(/\r?\n/);
  const header = head.split(',');
  const label = header.indexOf('label');
  return {
    header: header.filter((_, i) => i !== label),
    rows: body.map((line) =>
      line
        .split(',')
        .map(Number)
        .filter((_, i) => i !== label),
    ),
  };
}

/** Rows drawn (seeded) from the breast cancer holdout; `shift` changes them, as drifted traffic would. */
export function traffic(count: number, seed: number, shift: (row: number[]) => number[] = (r) => r): number[][] {
  const { rows } = holdoutRows();
  let state = seed;
  const random = () => (state = (state * 16807) % 2147483647) / 2147483647;
  return Array.from({ length: count }, () => shift([...rows[Math.floor(random() * rows.length)]]));
}

/** A free port on 127.0.0.1 (for gRPC, where 0 means "off", and for servers the test starts itself). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** A request to the slow_loop fixture that runs `iterations` rounds (about 5 µs each here). */
export const slowLoopBody = (iterations: number) =>
  JSON.stringify({
    inputs: [
      { name: 'iterations', datatype: 'INT64', shape: [], data: [iterations] },
      { name: 'x', datatype: 'FP32', shape: [1, 256], data: Array(256).fill(0.01) },
    ],
  });
