/**
 * The image's batch mode (MLOPS_MODE=batch) under a real Docker engine, as an Indexed Job's pods run it: one
 * container per shard (JOB_COMPLETION_INDEX), the input and output in a mounted folder, then the parts
 * joined, byte for byte what `runBatch` writes in-process here. No port is published.
 */
import { execFile } from 'node:child_process';
import { copyFile, chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatherBatch, runBatch, type BatchReport } from '../../src/batch/run-batch.js';
import { batchRun, writeDataset } from '../batch/datasets.js';
import { fixture, runCli } from '../helpers.js';
import { ensureLocalBaseImage, probeEngine, uniqueName } from './docker.js';

const engine = await probeEngine();
const REPOSITORY = uniqueName('batch');
const ROWS = 20_000;
const SHARDS = 4;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** `docker run --rm` to the end: its exit code and output (a non-zero exit is a result here, not an error). */
function dockerRun(args: string[]): Promise<Ran> {
  return new Promise((resolve, reject) => {
    execFile('docker', ['run', '--rm', ...args], { maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      const code: unknown = error ? error.code : 0;
      if (typeof code !== 'number') return reject(error ?? new Error('docker run: no exit code'));
      resolve({ code, stdout, stderr });
    });
  });
}

/** The container's stdout: exactly one JSON document on one line, the run's report. */
function reportOf(ran: Ran): BatchReport {
  expect(ran.code, ran.stderr).toBe(0);
  const lines = ran.stdout.split('\n');
  expect(lines, ran.stdout).toHaveLength(2);
  expect(lines[1]).toBe('');
  return JSON.parse(lines[0]) as BatchReport;
}

describe.skipIf(!engine.ok)(`the image's batch mode under Docker${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let project: string;
  let data: string;
  let local: string;
  let imageId: string;
  let expected: Buffer;
  const containers: string[] = [];

  /** One container of the job: MLOPS_BATCH_* and JOB_COMPLETION_INDEX as the Job's pod template sets them. */
  const shardContainer = (output: string, env: Record<string, string>) => {
    const name = uniqueName(`batch-${containers.length}`);
    containers.push(name);
    const vars = { MLOPS_MODE: 'batch', MLOPS_BATCH_INPUT: '/data/in.csv', MLOPS_BATCH_OUTPUT: output, MLOPS_BATCH_SHARDS: String(SHARDS), ...env };
    return dockerRun(['--name', name, ...Object.entries(vars).flatMap(([k, v]) => ['-e', `${k}=${v}`]), '-v', `${data}:/data`, imageId]);
  };

  beforeAll(async () => {
    const base = await ensureLocalBaseImage(docker);
    project = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-batch-'));
    await copyFile(fixture('breast_cancer', 'model.onnx'), path.join(project, 'model.onnx'));
    await writeFile(
      path.join(project, 'mlops.config.json'),
      JSON.stringify({ model: { path: 'model.onnx', name: 'bc' }, image: { repository: REPOSITORY, base } }),
    );
    const built = await runCli(['build', '--json'], { cwd: project });
    expect(built.code, built.stderr).toBe(0);
    imageId = JSON.parse(built.stdout).imageId;

    // The container runs as 10001: the folder it writes to is open to it.
    data = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-batch-data-'));
    await chmod(data, 0o777);
    await writeDataset(path.join(data, 'in.csv'), ROWS, 'csv');
    local = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-batch-local-'));
    const report = await runBatch(
      batchRun(local, path.join(data, 'in.csv'), path.join(local, 'out.csv'), { model: { path: path.join(project, 'model.onnx') }, shardCount: SHARDS }),
    );
    expect(report).toMatchObject({ complete: true, passed: true, records: ROWS });
    expected = await readFile(path.join(local, 'out.csv'));
  }, 300_000);

  afterAll(async () => {
    for (const name of containers)
      await docker
        .getContainer(name)
        .remove({ force: true })
        .catch(() => undefined);
    for (const image of await docker.listImages({ filters: { reference: [REPOSITORY] } }))
      await docker
        .getImage(image.Id)
        .remove({ force: true })
        .catch(() => undefined);
    for (const folder of [project, data, local]) if (folder) await rm(folder, { recursive: true, force: true });
  });

  it('runs one shard per container (JOB_COMPLETION_INDEX 0-3), each printing one JSON report, and joins the in-process bytes', async () => {
    const reports: BatchReport[] = [];
    for (let index = 0; index < SHARDS; index++) reports.push(reportOf(await shardContainer('/data/out.csv', { JOB_COMPLETION_INDEX: String(index) })));
    reports.forEach((report, index) => {
      expect(report.shards, `container ${index}`).toMatchObject({ total: SHARDS, ran: 1, skipped: 0, done: index + 1 });
      expect(report.output).toBe('/data/out.csv');
      expect(report.passed).toBe(true);
    });
    // The last container found the other three shards done when it started, so it joined the parts itself.
    expect(reports.map((r) => r.complete)).toEqual([false, false, false, true]);
    expect(reports[3]).toMatchObject({ records: ROWS, scored: ROWS, rejected: 0, written: { bytes: expected.length } });
    // Each report counts the rows of every shard done so far.
    const counted = reports.map((r) => r.records);
    expect(counted).toEqual([...counted].sort((a, b) => a - b));
    expect(new Set(counted).size).toBe(SHARDS);
    const joined = await readFile(path.join(data, 'out.csv'));
    expect(joined.equals(expected)).toBe(true);
    await expect(stat(path.join(data, 'out.csv.parts'))).rejects.toThrow();
    expect((await readFile(path.join(data, 'out.csv.rejects.jsonl'))).length).toBe(0);
  });

  // After the test above. The manifest records where the containers wrote (/data/out.csv), so this machine,
  // which sees that folder elsewhere, finds neither the joined output nor the (removed) parts today.
  it('finds the job whole from this machine with the same --input and --output: gatherBatch and mlops batch score nothing again', async () => {
    const input = path.join(data, 'in.csv');
    const output = path.join(data, 'out.csv');
    expect((await readFile(output)).equals(expected)).toBe(true);
    const gathered = await gatherBatch({ cwd: data, env: {}, input, output, maxRejectRate: 0 });
    expect.soft(gathered, 'gatherBatch').toMatchObject({ complete: true, records: ROWS, shards: { total: SHARDS, pending: [] } });
    const cli = await runCli(['--json', 'batch', '--input', input, '--output', output, '--model', path.join(project, 'model.onnx')], { cwd: data });
    expect(cli.code, cli.stderr).toBe(0);
    const report = JSON.parse(cli.stdout) as BatchReport;
    expect(report).toMatchObject({ complete: true, passed: true, records: ROWS, shards: { total: SHARDS, done: SHARDS } });
    expect((await readFile(output)).equals(expected)).toBe(true);
    expect.soft(report.shards.ran, 'shards mlops batch scored again').toBe(0);
  });

  it('runs shard MLOPS_BATCH_INDEXES[JOB_COMPLETION_INDEX] in a retry job: indexes 2,3 and index 1 run shard 3', async () => {
    const report = reportOf(await shardContainer('/data/retry.csv', { MLOPS_BATCH_INDEXES: '2,3', JOB_COMPLETION_INDEX: '1' }));
    expect(report).toMatchObject({ complete: false, passed: true, shards: { total: SHARDS, ran: 1, done: 1, pending: [0, 1, 2] } });
    // Shard 3's part holds the last rows of the job, as the in-process run scored them.
    const part = (await readFile(path.join(data, 'retry.csv.parts', 'part-00003-of-00004.csv'), 'utf8')).split('\n');
    const whole = expected.toString('utf8').split('\n');
    expect(part[0]).toBe(whole[0]);
    const rows = part.slice(1).filter(Boolean);
    expect(rows).toHaveLength(report.records);
    expect(rows).toEqual(whole.filter(Boolean).slice(-report.records));
    for (const other of [0, 1, 2]) await expect(stat(path.join(data, 'retry.csv.parts', `part-0000${other}-of-00004.csv`))).rejects.toThrow();
    await expect(stat(path.join(data, 'retry.csv'))).rejects.toThrow();
  });

  it('scores with --image: the image in its batch mode with the folders mounted, the bytes of the in-process run', async () => {
    const out = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-batch-with-image-'));
    try {
      const ran = await runCli(['--json', 'batch', '--image', imageId, '--input', path.join(data, 'in.csv'), '--output', path.join(out, 'scores.csv')], {
        env: { DOCKER_HOST: process.env.DOCKER_HOST },
      });
      expect(ran.code, ran.stderr).toBe(0);
      const report = JSON.parse(ran.stdout) as BatchReport;
      expect(report).toMatchObject({ passed: true, complete: true, records: ROWS, output: path.join(out, 'scores.csv') });
      // Cut by size in the container (one shard for this input), the rows and their bytes are the same.
      expect((await readFile(path.join(out, 'scores.csv'))).equals(expected)).toBe(true);
      const missing = await runCli(['batch', '--image', 'mlops-no-such-image:0', '--input', path.join(data, 'in.csv'), '--output', path.join(out, 'x.csv')], {
        env: { DOCKER_HOST: process.env.DOCKER_HOST },
      });
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/--image mlops-no-such-image:0: no such image here/);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
