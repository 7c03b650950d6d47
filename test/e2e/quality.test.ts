import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, fixture, lines, runCli } from '../helpers.js';
import { ensureLocalBaseImage, probeEngine, waitFor } from './docker.js';

const engine = await probeEngine();
const REPOSITORY = 'mlops-e2e-test';

describe.skipIf(!engine.ok)(`mlops test and mlops bench against the built image${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let project: string;
  const testContainers = async (purpose = 'test') => docker.listContainers({ all: true, filters: { label: [`mlops.purpose=${purpose}`] } });

  beforeAll(async () => {
    const base = await ensureLocalBaseImage(docker);
    project = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-test-'));
    await copyFile(fixture('breast_cancer', 'model.onnx'), path.join(project, 'model.onnx'));
    await writeFile(
      path.join(project, 'mlops.config.json'),
      JSON.stringify({
        model: { path: 'model.onnx', name: 'bc' },
        image: { repository: REPOSITORY, base },
        test: { holdout: fixture('breast_cancer', 'holdout.csv'), labels: ['malignant', 'benign'], gates: { accuracy: '>= 0.95' } },
      }),
    );
    const built = await runCli(['build'], { cwd: project });
    expect(built.code, built.stderr).toBe(0);
  });

  afterAll(async () => {
    for (const c of await testContainers()) await docker.getContainer(c.Id).remove({ force: true });
    for (const image of await docker.listImages({ filters: { reference: [`${REPOSITORY}*`] } }))
      await docker
        .getImage(image.Id)
        .remove({ force: true })
        .catch(() => undefined);
    await rm(project, { recursive: true, force: true });
  });

  it('scores through the container, checks parity with in-process ONNX Runtime, and removes the container', async () => {
    const { code, stdout, stderr } = await runCli(['test', '--json'], { cwd: project });
    expect(code, stderr).toBe(0);
    const report = JSON.parse(stdout);
    const local = JSON.parse((await runCli(['test', '--local', '--json'], { cwd: project })).stdout);
    expect(report).toMatchObject({ model: 'bc', mode: 'image', rows: 114, passed: true });
    expect(report.image).toMatch(new RegExp(`^${REPOSITORY}:sha-`));
    expect(report.parity).toMatchObject({ rows: 114, passed: true });
    expect(report.parity.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    expect(report.metrics).toEqual(local.metrics);
    expect(await testContainers()).toEqual([]);
  });

  it('scores the same over every protocol: binary tensors by default, JSON, and gRPC', async () => {
    const reports = await Promise.all(
      [[], ['--protocol', 'rest-json'], ['--protocol', 'grpc']].map(async (flags) => {
        const { code, stdout, stderr } = await runCli(['test', ...flags, '--json'], { cwd: project });
        expect(code, stderr).toBe(0);
        return JSON.parse(stdout);
      }),
    );
    expect(reports.map((r) => r.protocol)).toEqual(['rest-binary', 'rest-json', 'grpc']);
    expect(reports[1].metrics).toEqual(reports[0].metrics);
    expect(reports[2].metrics).toEqual(reports[0].metrics);
    expect(await testContainers()).toEqual([]);
  });

  it('benchmarks the image over gRPC', async () => {
    const { code, stdout, stderr } = await runCli(
      ['bench', '--protocol', 'grpc', '--concurrency', '4', '--duration', '1500ms', '--warmup', '200ms', '--json'],
      { cwd: project },
    );
    expect(code, stderr).toBe(0);
    const report = JSON.parse(stdout);
    expect(report.target.protocol).toBe('grpc');
    expect(report.runs[0].errors.count).toBe(0);
    expect(report.runs[0].requests).toBeGreaterThan(100);
    // The server counted them as gRPC calls.
    expect(report.runs[0].server.times.inferenceMeanMs).toBeGreaterThan(0);
  });

  it('exits 1 on a failed gate and still removes the container', async () => {
    const { code, stdout } = await runCli(['test', '--gate', 'accuracy>=0.999', '--json'], { cwd: project });
    expect(code).toBe(1);
    expect(JSON.parse(stdout).gates.find((g: { metric: string; threshold: number }) => g.threshold === 0.999).passed).toBe(false);
    expect(await testContainers()).toEqual([]);
  });

  it('exits 2 for an image that does not exist', async () => {
    const { code, stderr } = await runCli(['test', '--image', 'mlops-no-such-image:1'], { cwd: project });
    expect(code).toBe(2);
    expect(lines(stderr).find((l) => l.startsWith('error:'))).toBe('error: image not found: mlops-no-such-image:1');
  });

  it("benchmarks the image with the container's CPU and memory and the server's own timings", async () => {
    const { code, stdout, stderr } = await runCli(['bench', '--concurrency', '2', '--duration', '2500ms', '--warmup', '200ms', '--json'], { cwd: project });
    expect(code, stderr).toBe(0);
    const report = JSON.parse(stdout);
    expect(report.target.mode).toBe('image');
    expect(report.model).toBe('bc');
    const [run] = report.runs;
    expect(run.errors.count).toBe(0);
    expect(run.throughputRps).toBeGreaterThan(50);
    expect(run.server.container.samples).toBeGreaterThanOrEqual(1);
    expect(run.server.container.cpuPercent.mean).toBeGreaterThan(0);
    expect(run.server.container.memoryBytes.max).toBeGreaterThan(1e6);
    expect(run.server.times.inferenceMeanMs).toBeGreaterThan(0);
    expect(await testContainers('bench')).toEqual([]);
  });

  it('removes the container on Ctrl-C', async () => {
    // A holdout long enough that the run is still going when it is interrupted.
    const big = path.join(project, 'big.csv');
    const [header, ...rows] = (await readFile(fixture('breast_cancer', 'holdout.csv'), 'utf8')).trim().split(/\r?\n/);
    const out = createWriteStream(big);
    out.write(header + '\n');
    for (let i = 0; i < 2000; i++) out.write(rows.join('\n') + '\n');
    await new Promise((resolve) => out.end(resolve));
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/mlops.js'), 'test', '--holdout', big], { cwd: project, env: { ...process.env, CI: 'true' } });
    const exited = new Promise<string>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? `exit ${code}`)));
    await waitFor(async () => (await testContainers()).length === 1, 20_000, 'the test container to start');
    child.kill('SIGINT');
    // Killed by the signal itself, or exit 130 when a request was cut off first.
    expect(['SIGINT', 'exit 130']).toContain(await exited);
    expect(await testContainers()).toEqual([]);
  });
});
