import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { markdownTable } from '../dist/report/files.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const fixture = (...parts) => path.join(ROOT, 'fixtures', ...parts);
export const table = markdownTable;

/** Starts `mlops serve` in its own process, so the load generator never shares its event loop. */
export async function startServeProcess(args) {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/mlops.js'), 'serve', '--port', '0', '--json', ...args], {
    env: { ...process.env, CI: 'true' },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  const started = Date.now();
  // `mlops serve --json` prints one document once it listens.
  let started_;
  while (!(started_ = parsed(stdout))) {
    if (child.exitCode !== null || Date.now() - started > 30_000) throw new Error(`mlops serve did not start: ${stdout}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const { url } = started_;
  return {
    url,
    stop: () =>
      new Promise((resolve) => {
        child.on('exit', resolve);
        child.kill('SIGTERM');
      }),
  };
}

function parsed(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const execFileAsync = promisify(execFile);

/** Runs one mlops command in a child process; returns its parsed --json report and peak memory. */
export async function mlopsJson(argv, cwd = ROOT) {
  const { stdout } = await execFileAsync(process.execPath, [path.join(ROOT, 'benchmark/cli-child.js'), JSON.stringify([...argv, '--json'])], {
    cwd,
    maxBuffer: 1 << 26,
  });
  const result = JSON.parse(stdout);
  if (result.code !== 0) throw new Error(`mlops ${argv.join(' ')} exited ${result.code}`);
  return { report: JSON.parse(result.stdout), maxRssBytes: result.maxRssBytes };
}

export const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

export const round = (value, digits = 3) => Math.round(value * 10 ** digits) / 10 ** digits;
