import { readFile, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MonitorReport } from '../../src/monitor/monitor.js';
import { runCli, traffic } from '../helpers.js';
import { breastCancerProject, probeEngine, uniqueName } from './docker.js';
import { freePort } from './registry-process.js';

const engine = await probeEngine();
const REPOSITORY = 'mlops-e2e-monitor/bc';
/** Unique to this run: the clean-up removes only what this file made, never a user's mlops-bc-dev. */
const CONTAINER = uniqueName('monitor');

describe.skipIf(!engine.ok)(`mlops monitor on a deployed container${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let dir: string;
  let url: string;

  const send = async (rows: number[][]) => {
    for (let i = 0; i < rows.length; i += 25) {
      const batch = rows.slice(i, i + 25);
      const body = { inputs: [{ name: 'features', datatype: 'FP32', shape: [batch.length, 30], data: batch.flat() }] };
      const response = await fetch(`${url}/v2/models/bc/infer`, { method: 'POST', body: JSON.stringify(body) });
      expect(response.status).toBe(200);
    }
  };
  const monitor = async (...args: string[]) => {
    const result = await runCli(['monitor', ...args, '--json'], { cwd: dir });
    return { code: result.code, report: JSON.parse(result.stdout) as MonitorReport, stderr: result.stderr };
  };

  beforeAll(async () => {
    ({ dir, url } = await breastCancerProject(docker, 'mlops-e2e-monitor-', (base, port) => ({
      model: { path: 'model.onnx', name: 'bc' },
      image: { repository: REPOSITORY, base },
      test: { holdout: 'holdout.csv' },
      // A window of 1,000 rows: the shifted traffic below replaces the first.
      monitor: { windowRows: 1000, gates: { psi_max: '< 0.2', drifted_share: '< 0.3', out_of_range_rate: '<= 0.01' } },
      targets: { dev: { type: 'local', containerName: CONTAINER, port, grpcPort: 0, readyTimeoutSeconds: 20 } },
    })));
    const build = await runCli(['build'], { cwd: dir });
    expect(build.code, build.stderr).toBe(0);
    expect(build.stderr).toMatch(/Profiled 114 reference rows from holdout.csv: 30 features/);
    const deploy = await runCli(['deploy', '--target', 'dev'], { cwd: dir });
    expect(deploy.code, deploy.stderr).toBe(0);
  }, 240_000);

  afterAll(async () => {
    for (const c of await docker.listContainers({ all: true, filters: { name: [CONTAINER] } })) await docker.getContainer(c.Id).remove({ force: true });
    for (const image of await docker.listImages({ filters: { reference: [`${REPOSITORY}*`] } }))
      await docker
        .getImage(image.Id)
        .remove({ force: true })
        .catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('bakes the reference profile into the image, labelled with its sha256', async () => {
    const local = await readFile(path.join(dir, '.mlops', 'reference-profile.json'));
    const sha256 = createHash('sha256').update(local).digest('hex');
    const built = JSON.parse(await readFile(path.join(dir, '.mlops', 'last-build.json'), 'utf8')) as { tags: string[] };
    const info = await docker.getImage(built.tags[0]).inspect();
    expect(info.Config.Labels['mlops.reference-profile.sha256']).toBe(sha256);
    const served = (await (await fetch(`${url}/v2/models/bc/profile`)).json()) as { referenceSha256: string; reference: { features: unknown[] } };
    expect(served.referenceSha256).toBe(sha256);
    expect(served.reference.features).toHaveLength(30);
    expect(served.reference).not.toHaveProperty('explainBackground');
  });

  it('the image explains a prediction against the background rows baked into its profile', async () => {
    const baked = JSON.parse(await readFile(path.join(dir, '.mlops', 'reference-profile.json'), 'utf8')) as { explainBackground: { rows: number[][] } };
    expect(baked.explainBackground.rows).toHaveLength(100);
    const body = { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: baked.explainBackground.rows[0] }] };
    const res = await fetch(`${url}/v2/models/bc/explain`, { method: 'POST', body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    const answer = (await res.json()) as {
      features: string[];
      outputs: { name: string; base_values: number[]; rows: { values: number[]; attributions: number[][] }[] }[];
    };
    expect(answer.features[0]).toBe('mean_radius');
    const probabilities = answer.outputs.find((o) => o.name === 'probabilities')!;
    const [row] = probabilities.rows;
    for (let k = 0; k < 2; k++) expect(probabilities.base_values[k] + row.attributions.reduce((s, a) => s + a[k], 0)).toBeCloseTo(row.values[k], 5);
  });

  it('passes on traffic like the holdout and fails on shifted traffic, naming the feature, through --target and --url', async () => {
    await send(traffic(1000, 11));
    for (const source of [
      ['--target', 'dev'],
      ['--url', url],
    ]) {
      const same = await monitor(...source);
      expect(same.code, `${source.join(' ')}: ${same.stderr}`).toBe(0);
      expect(same.report).toMatchObject({ verdict: 'passed', rows: 1000 });
    }
    await send(traffic(1000, 12, (row) => row.map((v, i) => (i === 0 ? v * 1.5 : v))));
    for (const source of [
      ['--target', 'dev'],
      ['--url', url],
    ]) {
      const shifted = await monitor(...source);
      expect(shifted.code, `${source.join(' ')}: ${shifted.stderr}`).toBe(1);
      expect(shifted.report.features.filter((f) => f.drifted).map((f) => f.name)).toEqual(['mean_radius']);
      expect(shifted.report.source.kind).toBe(source[0] === '--target' ? 'target' : 'url');
    }
    // Only counts leave the server: its metrics name features and bins, never a value that was sent.
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/mlops_feature_bin_total\{feature="mean_radius",bin="9",reference="[0-9a-f]{12}",model="bc",version="1"\} \d+/);
  });

  it('exits 3 naming the target when nothing is deployed there', async () => {
    const config = JSON.parse(await readFile(path.join(dir, 'mlops.config.json'), 'utf8'));
    config.targets.empty = { type: 'local', port: await freePort() };
    await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify(config));
    const result = await runCli(['monitor', '--target', 'empty'], { cwd: dir });
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/target 'empty': container mlops-bc-empty is not there/);
  });
});
