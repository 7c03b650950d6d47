/**
 * Issue 20: no verdict passes on failure, and models with dynamic dimensions beyond the batch, an INT64
 * scalar that must hold a particular value and recurrent state can be benchmarked given only --shape
 * and --input-data (or model.shapes and model.inputData).
 * At test/'s root: a theme suite through bench, test and status (src/bench, src/evaluate, src/targets),
 * not one module; the units it began with are in model/run-error.test.ts and server/failure-log.test.ts.
 */
import { execa } from 'execa';
import { defaultAzureSeam } from '../src/targets/azure.js';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TargetConfig } from '../src/config/defaults.js';
import { applyDefaults } from '../src/config/normalize.js';
import { startServer, type RunningServer } from '../src/server/run.js';
import { createExecSeam } from '../src/targets/exec.js';
import { selectTarget } from '../src/targets/index.js';
import { configuredSampleInputs } from '../src/targets/smoke.js';
import type { DeployContext } from '../src/targets/types.js';
import { scripted } from './scripted-cli.js';
import { probeTool } from './tools.js';
import { fixture, lines, ROOT, runCli, serveOptions, withTempDir } from './helpers.js';

const kubectl = probeTool('kubectl', 'apt-get install kubernetes-client');
const FAILING = fixture('failing_reshape', 'model.onnx');
const VAD = fixture('streaming_vad', 'model.onnx');
const SHORT = ['--concurrency', '2', '--duration', '400ms', '--warmup', '0ms'];
const CAUSE = "Reshape node 'impossible_reshape': The input tensor cannot be reshaped to the requested shape";

/** The real CLI in a child process: what ONNX Runtime's native logger writes to fd 2 is seen too. */
const mlops = (args: string[], cwd: string) =>
  execa(process.execPath, [path.join(ROOT, 'bin/mlops.js'), ...args], { cwd, reject: false, env: { CI: 'true', NO_COLOR: '1' } });

describe('a model that fails on every input', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer(serveOptions('failing_reshape', { modelName: 'failing' }), () => undefined);
  });
  afterAll(() => server?.stop());

  it('bench --local: exit 1, no latency, the reason once, and a quiet stderr', async () => {
    await withTempDir(async (dir) => {
      const run = await mlops(['bench', '--model', FAILING, '--local', ...SHORT, '--gate', 'p99_ms<=50', '--json'], dir);
      expect(run.exitCode, run.stderr).toBe(1);
      const report = JSON.parse(run.stdout);
      expect(report.passed).toBe(false);
      const [result] = report.runs;
      expect(result.errors.count).toBe(result.requests);
      expect(result.errors.rate).toBe(1);
      expect(result.latencyMs).toBeNull();
      expect(result.throughputRps).toBe(0);
      expect(result.errors.reasons).toEqual([{ reason: expect.stringContaining(`inference_error: ${CAUSE}`), count: result.requests }]);
      expect(report.gates).toEqual([
        expect.objectContaining({ metric: 'p99_ms', value: null, passed: false }),
        expect.objectContaining({ metric: 'error_rate', op: '<=', threshold: 0, value: 1, passed: false }),
      ]);
      // Thousands of failed runs; ONNX Runtime's own logger would print a line for each.
      expect(lines(run.stderr).length, run.stderr).toBeLessThanOrEqual(5);
      expect(run.stderr).not.toMatch(/onnxruntime|\[E:/);
    });
  });

  it('bench --url: the server answers 500, the table shows "-" and the reason, exit 1', async () => {
    await withTempDir(async (dir) => {
      const { code, stdout } = await runCli(['bench', '--url', server.url, ...SHORT, '--model', FAILING], { cwd: dir });
      expect(code).toBe(1);
      expect(stdout).toMatch(/^c=2\s+1\s+0\s+0\s+-\s+-\s+-\s+-\s+-\s+-\s+\d+ \(100\.0%\)/m);
      expect(stdout).toContain(`x http_500: inference failed: ${CAUSE}`);
      expect(stdout).toMatch(/error_rate <= 0\s+1\.000\s+FAIL/);
      expect(stdout).toContain('FAILED');
    });
  });

  it('bench with an error_rate gate that allows every failure still fails a run where nothing succeeded', async () => {
    await withTempDir(async (dir) => {
      const { code, stdout } = await runCli(
        ['bench', '--model', FAILING, '--local', ...SHORT, '--gate', 'error_rate<=1', '--json', '--markdown', 'b.md', '--html', 'b.html'],
        { cwd: dir },
      );
      expect(code).toBe(1);
      expect(JSON.parse(stdout).gates).toEqual([
        expect.objectContaining({ metric: 'error_rate', passed: true }),
        expect.objectContaining({ metric: 'throughput_rps', op: '>', threshold: 0, value: 0, passed: false }),
      ]);
      expect(await readFile(path.join(dir, 'b.md'), 'utf8')).toContain(`inference\\_error: ${CAUSE.replace(/_/g, '\\_')}`);
      const html = await readFile(path.join(dir, 'b.html'), 'utf8');
      expect(html).toContain('no request succeeded, so there is no latency to chart');
      expect(html).toContain('Failed requests');
    });
  });

  it('test --local and --url: exit 1 naming the rows and the cause, never an internal error', async () => {
    await withTempDir(async (dir) => {
      const holdout = fixture('failing_reshape', 'holdout.csv');
      const local = await mlops(['test', '--model', FAILING, '--local', '--holdout', holdout], dir);
      expect(local.exitCode).toBe(1);
      expect(local.stderr).toContain(`error: the model failed on ${holdout} row 2 to row 21: ${CAUSE}`);
      expect(local.stderr).not.toMatch(/internal error|bug in mlops|onnxruntime_src/);
      expect(lines(local.stderr).length, local.stderr).toBeLessThanOrEqual(5);
      const remote = await runCli(['test', '--url', server.url, '--model', FAILING, '--holdout', holdout], { cwd: dir });
      expect(remote.code).toBe(1);
      expect(remote.stderr).toContain('the server answered HTTP 500 to an inference request: inference failed: ' + CAUSE);
    });
  });
});

describe('a streaming model: a named dynamic dimension, an INT64 scalar that must be a sample rate, recurrent state', () => {
  const bench = (dir: string, ...args: string[]) =>
    runCli(['bench', '--model', VAD, '--local', '--concurrency', '1', '--duration', '300ms', '--warmup', '0ms', '--json', ...args], { cwd: dir });

  it('without a size for "samples", stops before sending anything: exit 2 naming the input, dimension and flag', async () => {
    await withTempDir(async (dir) => {
      const { code, stdout, stderr } = await bench(dir);
      expect(code).toBe(2);
      expect(JSON.parse(stdout).error.message).toBe("input 'input' [batch, samples]: dimension 1 ('samples') is dynamic and nothing gives its size");
      expect(stderr).toContain('--shape input:1,<samples> (config: model.shapes)');
    });
  });

  it('with --shape and the sample rate from --input-data, zero errors; state follows the batch, including --batch 4', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'sr.json'), JSON.stringify({ data: [{ sr: [16000] }, { sr: 8000 }] }));
      const { code, stdout } = await bench(dir, '--shape', 'input:1,512', '--input-data', 'sr.json', '--batch', '1,4');
      const report = JSON.parse(stdout);
      expect(code, JSON.stringify(report.runs?.[0]?.errors)).toBe(0);
      for (const run of report.runs) expect(run.errors.count).toBe(0);
      expect(report.runs.map((r: { batch: number }) => r.batch)).toEqual([1, 4]);
      // The shape alone leaves the sample rate random (0..9): every request fails, and says why.
      const random = await bench(dir, '--shape', 'input:1,512');
      expect(random.code).toBe(1);
      expect(JSON.parse(random.stdout).runs[0].errors.reasons[0].reason).toMatch(/^inference_error: Reshape node 'frames'/);
    });
  });

  it('with every input in a perf_analyzer data file, zero errors; config keys do the same as the flags', async () => {
    await withTempDir(async (dir) => {
      const state = Array.from({ length: 2 * 64 }, () => 0);
      const entry = {
        input: { content: Array.from({ length: 1024 }, (_, i) => Math.sin(i / 10)), shape: [1, 1024] },
        sr: [16000],
        h: { content: state, shape: [2, 1, 64] },
        c: state,
      };
      await writeFile(path.join(dir, 'vad.json'), JSON.stringify({ data: [entry] }));
      const flags = await bench(dir, '--input-data', 'vad.json');
      expect(flags.code, flags.stderr).toBe(0);
      expect(JSON.parse(flags.stdout).runs[0].errors.count).toBe(0);
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: VAD, shapes: { input: [1, 256] }, inputData: 'sr.json' } }));
      await writeFile(path.join(dir, 'sr.json'), JSON.stringify({ data: [{ sr: 16000 }] }));
      const configured = await runCli(['bench', '--local', '--concurrency', '1', '--duration', '300ms', '--warmup', '0ms', '--json'], { cwd: dir });
      expect(configured.code, configured.stderr).toBe(0);
    });
  });

  it("over --url, where the server reports only sizes, the state's dimension must be given too", async () => {
    const server = await startServer(serveOptions('streaming_vad', { modelName: 'vad' }), () => undefined);
    try {
      await withTempDir(async (dir) => {
        await writeFile(path.join(dir, 'sr.json'), JSON.stringify({ data: [{ sr: 16000 }] }));
        const args = [
          'bench',
          '--url',
          server.url,
          '--model',
          VAD,
          '--concurrency',
          '1',
          '--duration',
          '300ms',
          '--warmup',
          '0ms',
          '--input-data',
          'sr.json',
          '--shape',
          'input:1,512',
        ];
        const missing = await runCli(args, { cwd: dir });
        expect(missing.code).toBe(2);
        expect(missing.stderr).toContain("input 'h' [2, ?, 64]: dimension 1 is dynamic");
        const given = await runCli([...args, '--shape', 'h:2,1,64', '--shape', 'c:2,1,64', '--json'], { cwd: dir });
        expect(given.code, given.stderr).toBe(0);
        expect(JSON.parse(given.stdout).runs[0].errors.count).toBe(0);
      });
    } finally {
      await server.stop();
    }
  });

  it('refuses shapes and data that cannot fit, naming the file, entry and input', async () => {
    await withTempDir(async (dir) => {
      const cases: [unknown, string][] = [
        [{ data: [{ nope: [1] }] }, "--input-data bad.json: data[0].nope: the model has no input 'nope'"],
        [{ data: [{ sr: [16000, 8000] }] }, '--input-data: data[0].sr: 2 values for shape [] (1 values)'],
        [{ data: [{ sr: ['x'] }] }, '--input-data: data[0].sr: value 0 ("x") is not a whole number'],
        [{ data: [{ input: { content: [1, 2], shape: [1, 2, 3] } }] }, '--input-data: data[0].input: shape [1, 2, 3] has 3 dimensions'],
        [{ rows: [] }, '--input-data bad.json: no "data" list of requests'],
      ];
      for (const [data, message] of cases) {
        await writeFile(path.join(dir, 'bad.json'), JSON.stringify(data));
        const { code, stderr } = await bench(dir, '--shape', 'input:1,512', '--input-data', 'bad.json');
        expect(code, stderr).toBe(2);
        expect(stderr).toContain(message);
      }
      for (const [shape, message] of [
        ['h:2,1,65', "--shape h:2,1,65: dimension 2 of input 'h' is fixed at 64"],
        ['h:2,1', "--shape h:2,1: input 'h' has 3 dimensions"],
        ['input:1,0', '--shape input:1,0: expected an input name and its dimensions'],
      ]) {
        const { code, stderr } = await bench(dir, '--shape', shape);
        expect(code).toBe(2);
        expect(stderr).toContain(message);
      }
      const missing = await bench(dir, '--input-data', 'none.json');
      expect(missing.stderr).toContain('--input-data none.json: file not found');
    });
  });
});

describe('status tells "cannot tell" apart from "not deployed"', () => {
  const target = (dir: string, targets: Record<string, unknown>) =>
    writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: FAILING, name: 'bc' }, targets }));

  it('an unreachable Docker engine: exit 3 naming it, not "not deployed"', async () => {
    await withTempDir(async (dir) => {
      await target(dir, { dev: { type: 'local' } });
      const { code, stdout, stderr } = await runCli(['status', '--target', 'dev', '--json'], {
        cwd: dir,
        env: { DOCKER_HOST: `unix://${dir}/no-engine.sock` },
      });
      expect(code).toBe(3);
      expect(JSON.parse(stdout).error.message).toMatch(/^cannot reach the Docker engine at unix:\/\/.*no-engine\.sock/);
      expect(stderr).not.toContain('not deployed');
    });
  });

  it.runIf(kubectl.ok)('a kubectl context that does not exist: exit 3, one "error:" prefix; a missing Deployment is "not deployed", exit 0', async () => {
    await withTempDir(async (dir) => {
      await target(dir, { prod: { type: 'kubernetes', context: 'no-such-context' } });
      // An empty kubeconfig: kubectl stops before any network.
      await writeFile(path.join(dir, 'kubeconfig'), 'apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n');
      const { code, stderr } = await runCli(['status', '--target', 'prod'], { cwd: dir, env: { KUBECONFIG: path.join(dir, 'kubeconfig') } });
      expect(code).toBe(3);
      expect(lines(stderr)[0]).toBe(
        'error: cannot tell the state of deployment bc (kubectl context no-such-context, namespace default): context "no-such-context" does not exist',
      );
      expect(stderr).not.toMatch(/error: error:|not deployed/);
    });
  });

  it('each adapter: "not found" is not deployed, anything else exits 3 (scripted CLIs)', async () => {
    const cases: [TargetConfig['type'], string, string][] = [
      [
        'kubernetes',
        'Error from server (NotFound): deployments.apps "bc" not found',
        'Unable to connect to the server: dial tcp 127.0.0.1:6443: connect: connection refused',
      ],
      [
        'cloudrun',
        'ERROR: (gcloud.run.services.describe) Cannot find service [bc]',
        'ERROR: (gcloud.run.services.describe) You do not currently have an active account selected.',
      ],
      [
        'sagemaker',
        'An error occurred (ValidationException) when calling the DescribeEndpoint operation: Could not find endpoint "bc".',
        'Unable to locate credentials. You can configure credentials by running "aws configure".',
      ],
      [
        'vertex',
        'ERROR: (gcloud.ai.endpoints.describe) NOT_FOUND: Endpoint does not exist.',
        'ERROR: (gcloud.ai.endpoints.describe) You do not currently have an active account selected.',
      ],
      [
        'kserve',
        'Error from server (NotFound): inferenceservices.serving.kserve.io "bc" not found',
        'Unable to connect to the server: dial tcp 127.0.0.1:6443: connect: connection refused',
      ],
    ];
    for (const [type, absent, unreachable] of cases) {
      const config = applyDefaults({ model: { name: 'bc' }, targets: { prod: { type, project: 'p', region: 'r' } as never } });
      const { target: settings, adapter } = selectTarget(config, 'prod');
      const context = (stderr: string): DeployContext => ({
        targetName: 'prod',
        config,
        projectDir: '/tmp',
        env: {},
        exec: createExecSeam({ dryRun: false, runner: scripted(() => ({ exitCode: 1, stderr })).runner }),
        azure: defaultAzureSeam,
        dryRun: false,
        log: () => undefined,
        sampleInputs: configuredSampleInputs(applyDefaults({}), '/tmp'),
        smoke: async () => undefined,
        checkpoint: () => undefined,
      });
      expect((await adapter.status(settings, context(absent))).deployed, type).toBe(false);
      const error = await adapter.status(settings, context(unreachable)).then(
        () => null,
        (e: { exitCode?: number; message: string }) => e,
      );
      expect(error?.exitCode, type).toBe(3);
      expect(error?.message, type).toMatch(/^(cannot tell the state of |kubectl get inferenceservice bc failed)/);
    }
  });
});
