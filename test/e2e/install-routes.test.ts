/**
 * Issue 35: the CLI installed without the GitHub Action, as docs/ci.md says: `npm pack` of the git
 * URL (which clones, installs, builds and packs it), then a global install of that tarball into an
 * empty prefix. npm works from its cache only and every proxy variable points at a closed port, so
 * any download (ONNX Runtime's install script fetches CUDA libraries from NuGet unless told not to)
 * fails the install.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixture, ROOT } from '../helpers.js';

const CLOSED = 'http://127.0.0.1:1';
const offline = {
  PATH: process.env.PATH,
  HOME: process.env.HOME,
  npm_config_offline: 'true',
  HTTPS_PROXY: CLOSED,
  HTTP_PROXY: CLOSED,
  https_proxy: CLOSED,
  http_proxy: CLOSED,
  GLOBAL_AGENT_HTTP_PROXY: CLOSED,
  GLOBAL_AGENT_HTTPS_PROXY: CLOSED,
};

describe('installing from the git URL, with no network', () => {
  it('npm pack of the URL, then npm install --global of the tarball into an empty prefix, gives a working mlops', async () => {
    const work = await mkdtemp(path.join(tmpdir(), 'mlops-install-'));
    try {
      const packed = spawnSync('npm', ['pack', '--no-audit', '--no-fund', `git+file://${ROOT}#HEAD`], {
        cwd: work,
        env: offline,
        encoding: 'utf8',
        timeout: 400_000,
      });
      expect(packed.status, packed.stderr.slice(-3000)).toBe(0);
      const tarball = (await readdir(work)).find((f) => f.endsWith('.tgz'))!;
      expect(tarball).toMatch(/^mlops-\d+\.\d+\.\d+\.tgz$/);
      // The package carries what it runs: the built CLI and server, and the lock of every dependency.
      const listing = execFileSync('tar', ['tzf', path.join(work, tarball)], { encoding: 'utf8' }).split('\n');
      expect(listing).toEqual(
        expect.arrayContaining(['package/dist/cli.js', 'package/dist/server.bundle.mjs', 'package/npm-shrinkwrap.json', 'package/bin/mlops.js']),
      );

      const prefix = path.join(work, 'prefix');
      const installed = spawnSync(
        'npm',
        ['install', '--global', '--prefix', prefix, '--onnxruntime-node-install=skip', '--no-audit', '--no-fund', path.join(work, tarball)],
        { cwd: work, env: offline, encoding: 'utf8', timeout: 300_000 },
      );
      expect(installed.status, installed.stderr.slice(-3000)).toBe(0);
      const mlops = path.join(prefix, 'bin', 'mlops');
      const version = execFileSync(mlops, ['--version'], { env: offline, encoding: 'utf8' }).trim();
      expect(version).toBe(JSON.parse(execFileSync('node', ['-p', 'JSON.stringify(require("./package.json"))'], { cwd: ROOT, encoding: 'utf8' })).version);
      // ONNX Runtime's binary came with its npm package: the model loads and runs.
      const inspected = JSON.parse(execFileSync(mlops, ['inspect', fixture('wine', 'model.onnx'), '--json'], { env: offline, encoding: 'utf8' })) as {
        inputs: { name: string }[];
      };
      expect(inspected.inputs[0].name).toBe('features');
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }, 600_000);
});
