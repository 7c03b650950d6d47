import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demultiplex } from '../../src/docker/container.js';
import { recordsInLine, type InferenceRecord } from '../../src/monitor/inference-records.js';
import type { QualityReport } from '../../src/monitor/quality.js';
import { fixture, holdoutRows, runCli } from '../helpers.js';
import { breastCancerProject, probeEngine, uniqueName, waitFor } from './docker.js';
import { freePort } from './registry-process.js';

const engine = await probeEngine();
const REPOSITORY = 'mlops-e2e-inference-log/bc';
/** Unique to this run: the clean-up removes only what this file made, never a user's mlops-bc-dev. */
const CONTAINER = uniqueName('inference-log');
const { rows } = holdoutRows();
const labelsOf = async () =>
  (await readFile(fixture('breast_cancer', 'holdout.csv'), 'utf8'))
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split(',').at(-1)!);

describe.skipIf(!engine.ok)(`the inference log in a container${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let dir: string;
  let image: string;
  let url: string;
  const containers: Docker.Container[] = [];

  const infer = async (base: string, batch: number[][], id?: string) => {
    const body = { ...(id ? { id } : {}), inputs: [{ name: 'features', datatype: 'FP32', shape: [batch.length, 30], data: batch.flat() }] };
    const response = await fetch(`${base}/v2/models/bc/infer`, { method: 'POST', body: JSON.stringify(body) });
    expect(response.status).toBe(200);
    return ((await response.json()) as { id: string }).id;
  };

  /** The built image on the host's network (so it reaches a collector on 127.0.0.1), bound to 127.0.0.1 only. */
  const runOnHost = async (env: string[], binds: string[] = []) => {
    const port = await freePort();
    const container = await docker.createContainer({
      Image: image,
      Env: [`PORT=${port}`, 'GRPC_PORT=0', 'HOST=127.0.0.1', ...env],
      HostConfig: { NetworkMode: 'host', Binds: binds },
    });
    containers.push(container);
    await container.start();
    const base = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(`${base}/v2/health/ready`)).ok, 30_000, 'the container to be ready');
    return { base, container };
  };

  const metric = async (base: string, line: RegExp) => Number(line.exec(await (await fetch(`${base}/metrics`)).text())?.[1] ?? NaN);

  beforeAll(async () => {
    ({ dir, url } = await breastCancerProject(docker, 'mlops-e2e-inference-log-', (baseImage, port) => ({
      model: { path: 'model.onnx', name: 'bc' },
      image: { repository: REPOSITORY, base: baseImage },
      server: { inferenceLog: { sample: 1, sink: 'stdout' } },
      test: { holdout: 'holdout.csv', labels: ['malignant', 'benign'], parity: { sample: 0 } },
      monitor: { minRows: 50 },
      targets: { dev: { type: 'local', containerName: CONTAINER, port, grpcPort: 0, readyTimeoutSeconds: 20 } },
    })));
    const build = await runCli(['build'], { cwd: dir });
    expect(build.code, build.stderr).toBe(0);
    image = (JSON.parse(await readFile(path.join(dir, '.mlops', 'last-build.json'), 'utf8')) as { tags: string[] }).tags[0];
    const deploy = await runCli(['deploy', '--target', 'dev'], { cwd: dir });
    expect(deploy.code, deploy.stderr).toBe(0);
  }, 240_000);

  afterAll(async () => {
    for (const c of containers) await c.remove({ force: true }).catch(() => undefined);
    for (const c of await docker.listContainers({ all: true, filters: { name: [CONTAINER] } })) await docker.getContainer(c.Id).remove({ force: true });
    for (const i of await docker.listImages({ filters: { reference: [`${REPOSITORY}*`] } }))
      await docker
        .getImage(i.Id)
        .remove({ force: true })
        .catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it("carries server.inferenceLog in the image, and mlops monitor --labels --target reads the deployed container's log", async () => {
    const info = await docker.getImage(image).inspect();
    expect(info.Config.Env).toEqual(
      expect.arrayContaining(['MLOPS_INFERENCE_LOG_SAMPLE=1', 'MLOPS_INFERENCE_LOG_SINK=stdout', 'MLOPS_INFERENCE_LOG_INPUTS=false']),
    );
    const labels = await labelsOf();
    const lines = ['id,label'];
    for (let i = 0; i < rows.length; i++) lines.push(`${await infer(url, [rows[i]])},${labels[i]}`);
    await writeFile(path.join(dir, 'labels.csv'), lines.join('\n') + '\n');
    const tested = await runCli(['test', '--local', '--json'], { cwd: dir });
    expect(tested.code, tested.stderr).toBe(0);
    let live: { code: number; stdout: string; stderr: string } | undefined;
    // The stdout sink flushes within a second.
    await waitFor(
      async () => {
        live = await runCli(['monitor', '--labels', 'labels.csv', '--target', 'dev', '--json'], { cwd: dir });
        return live.code === 0 && (JSON.parse(live.stdout) as QualityReport).join.matched === rows.length;
      },
      10_000,
      'every label to match',
    );
    const report = JSON.parse(live!.stdout) as QualityReport;
    expect(report.source.logs).toEqual([`container ${CONTAINER}`]);
    expect((report.metrics as { accuracy: number }).accuracy).toBe((JSON.parse(tested.stdout) as { metrics: { accuracy: number } }).metrics.accuracy);
  });

  it("keeps every row of a burst on stdout, where Docker's pipe fills faster than its log driver reads", async () => {
    const { base, container } = await runOnHost(['MLOPS_INFERENCE_LOG_SAMPLE=1', 'MLOPS_INFERENCE_LOG_SINK=stdout']);
    // 32 requests of 64 rows at once: about 600 KB of records in one flush, ten times the pipe's 64 KiB.
    const batch = Array.from({ length: 64 }, (_, i) => rows[i % rows.length]);
    await Promise.all(Array.from({ length: 32 }, (_, i) => infer(base, batch, `burst-${i}`)));
    await waitFor(async () => (await metric(base, /^mlops_inference_log_rows_total (\d+)/m)) === 32 * 64, 10_000, 'every row to be written');
    expect(await metric(base, /^mlops_inference_log_dropped_total\{reason="sink-error"\} (\d+)/m)).toBe(0);
    const logged = demultiplex(await container.logs({ stdout: true, stderr: false }));
    expect(
      logged
        .split('\n')
        .flatMap(recordsInLine)
        .filter((r) => r.id.startsWith('burst-')),
    ).toHaveLength(32 * 64);
  });

  it('writes the file sink to a mounted folder, and samples within statistical bounds', async () => {
    const logs = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-log-'));
    // The server runs as 10001 in the image.
    await chmod(logs, 0o777);
    const sample = 0.25;
    const requests = 800;
    const { base, container } = await runOnHost(
      [`MLOPS_INFERENCE_LOG_SAMPLE=${sample}`, 'MLOPS_INFERENCE_LOG_SINK=file:/logs/inference.jsonl'],
      [`${logs}:/logs`],
    );
    for (let i = 0; i < requests; i += 40) await Promise.all(Array.from({ length: 40 }, (_, j) => infer(base, [rows[(i + j) % rows.length]])));
    // SIGTERM: the server flushes the log before it exits.
    await container.stop({ t: 10 });
    const records = (await readFile(path.join(logs, 'inference.jsonl'), 'utf8')).split('\n').flatMap(recordsInLine);
    const sd = Math.sqrt(requests * sample * (1 - sample));
    expect(Math.abs(records.length - requests * sample), `${records.length} of ${requests} logged`).toBeLessThan(5 * sd);
    expect(new Set(records.map((r) => r.id)).size).toBe(records.length);
    await rm(logs, { recursive: true, force: true });
  });

  it('posts to a collector on the host, and when it is down, answers every request and counts the dropped rows', async () => {
    const received: InferenceRecord[] = [];
    const collector = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push(...recordsInLine(body));
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
    const live = await runOnHost([
      'MLOPS_INFERENCE_LOG_SAMPLE=1',
      `MLOPS_INFERENCE_LOG_SINK=http://127.0.0.1:${(collector.address() as AddressInfo).port}/events`,
    ]);
    const ids = new Set<string>();
    for (let i = 0; i < 50; i++) ids.add(await infer(live.base, [rows[i]]));
    await waitFor(async () => received.length >= 50, 10_000, 'the collector to receive 50 rows');
    expect(new Set(received.map((r) => r.id))).toEqual(ids);
    await new Promise((r) => collector.close(r));

    const dead = await runOnHost(['MLOPS_INFERENCE_LOG_SAMPLE=1', `MLOPS_INFERENCE_LOG_SINK=http://127.0.0.1:${await freePort()}/events`]);
    for (let i = 0; i < 50; i++) await infer(dead.base, [rows[i]]);
    await waitFor(
      async () => (await metric(dead.base, /^mlops_inference_log_dropped_total\{reason="sink-error"\} (\d+)/m)) > 0,
      10_000,
      'dropped rows to be counted',
    );
    expect(await metric(dead.base, /^mlops_inference_log_rows_total (\d+)/m)).toBe(0);
    const logs = (await dead.container.logs({ stdout: true, stderr: true })).toString();
    expect(logs).toMatch(/warning: inference log: collector http:\/\/127\.0\.0\.1:\d+\/events failed \(ECONNREFUSED\); dropping rows until it answers/);
  });
});
