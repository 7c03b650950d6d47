/**
 * src/cli.ts: help, version and unknown commands exit as they should. And the CLI's contract with CI
 * scripts (issue 21): --json prints exactly one document on stdout, for the argument parser's errors and
 * for a command a signal ended too; a signal's exit status is 128 + its number.
 */
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixture, lines, ROOT, runCli, withTempDir } from './helpers.js';

describe('--json prints one document for every failure', () => {
  it.each([
    [['--json', 'inspect', '--bogus'], "unknown option '--bogus'", 'see `mlops inspect --help`'],
    [['--json', 'bogus-command'], "unknown command 'bogus-command'", 'see `mlops --help` for the commands'],
    [['--json', 'deploy', '0.1.0'], "required option '--target <name>' not specified", 'see `mlops deploy --help`'],
    [['deploy', '--target', 'test', '--json', '--nope'], "unknown option '--nope'", 'see `mlops deploy --help`'],
  ])('mlops %j', async (argv, message, hint) => {
    const { code, stdout, stderr } = await runCli(argv);
    expect(code).toBe(2);
    expect(JSON.parse(stdout)).toEqual({ error: { message, hint, exitCode: 2 } });
    // The human lines still go to stderr, once, with the hint.
    expect(lines(stderr)).toEqual([`error: ${message}`, `hint: ${hint}`]);
  });
});

describe('a signal ends a command with 128 + its number, and --json still prints one document', () => {
  const interrupt = (signal: NodeJS.Signals) =>
    new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string }>((resolve) => {
      const child = spawn(
        process.execPath,
        [path.join(ROOT, 'bin/mlops.js'), 'bench', '--model', fixture('wine', 'model.onnx'), '--local', '--concurrency', '1', '--duration', '60s', '--json'],
        {
          env: { ...process.env, CI: 'true' },
        },
      );
      let stdout = '';
      let sent = false;
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => {
        if (!sent && String(d).includes('Benchmarking')) {
          sent = true;
          setTimeout(() => child.kill(signal), 300);
        }
      });
      child.on('exit', (code, by) => resolve({ code, signal: by, stdout }));
    });

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('%s: the process ends by the signal (exit status %i), after one JSON document', async (signal, status) => {
    const ended = await interrupt(signal);
    expect(ended.signal).toBe(signal);
    expect(JSON.parse(ended.stdout)).toEqual({
      error: { message: `interrupted (${signal}); what the command started was cleaned up`, hint: null, exitCode: status },
    });
  });
});

describe('config errors say where', () => {
  it('--json lists every problem of an invalid config; a JSON syntax error names its line and column', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: 3, name: 'BAD' }, bench: { concurrency: 'x' } }));
      const invalid = await runCli(['--json', 'inspect'], { cwd: dir });
      expect(invalid.code).toBe(2);
      expect(JSON.parse(invalid.stdout).error).toMatchObject({
        message: 'mlops.config.json has 3 problems:',
        problems: [expect.stringMatching(/^model\.path: /), expect.stringMatching(/^model\.name: /), expect.stringMatching(/^bench\.concurrency: /)],
      });
      await writeFile(path.join(dir, 'mlops.config.json'), '{\n  "model": {\n    "path": "m.onnx",\n  }\n}\n');
      const broken = await runCli(['inspect'], { cwd: dir });
      expect(broken.code).toBe(2);
      expect(lines(broken.stderr)[0]).toBe('error: could not read mlops.config.json line 4, column 3: Expected double-quoted property name');
    });
  });

  it('deploy --output says it writes files, not that it deploys', async () => {
    await withTempDir(async (dir) => {
      await writeFile(
        path.join(dir, 'mlops.config.json'),
        JSON.stringify({
          model: { path: fixture('wine', 'model.onnx'), name: 'wine' },
          image: { repository: '127.0.0.1:9/team/wine' },
          targets: { k8s: { type: 'kubernetes' } },
        }),
      );
      const { stderr } = await runCli(['deploy', '1.0.0', '--target', 'k8s', '--output', 'out'], { cwd: dir });
      expect(lines(stderr)[0]).toBe('Writing the manifests for k8s to out...');
      expect(stderr).not.toContain('Deploying');
    });
  });
});

describe('CLI', () => {
  it('prints help and version with exit 0', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('serve');
    const version = await runCli(['--version']);
    expect(version.stdout.trim()).toBe(JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')).version);
    const serveHelp = await runCli(['serve', '--help']);
    expect(serveHelp.stdout).toContain('--max-batch-size');
  });

  it('exits 2 on an unknown command or option', async () => {
    expect((await runCli(['frobnicate'])).code).toBe(2);
    expect((await runCli(['inspect', '--nope'])).code).toBe(2);
  });
});
