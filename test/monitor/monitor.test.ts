import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyDefaults } from '../../src/config/normalize.js';
import { assessDrift, driftGates } from '../../src/monitor/compare.js';
import type { MonitorReport } from '../../src/monitor/monitor.js';
import { startServer, type RunningServer } from '../../src/server/run.js';
import { fixture, freePort, profileFor, ROOT, runCli, serveOptions, traffic, withTempDir } from '../helpers.js';
import { probeTool } from '../tools.js';

const quiet = () => undefined;
const WORK = path.join(ROOT, '.mlops', 'test-monitor');

async function send(url: string, rows: number[][]): Promise<void> {
  for (let i = 0; i < rows.length; i += 10) {
    const batch = rows.slice(i, i + 10);
    const body = { inputs: [{ name: 'features', datatype: 'FP32', shape: [batch.length, 30], data: batch.flat() }] };
    const response = await fetch(`${url}/v2/models/breast_cancer/infer`, { method: 'POST', body: JSON.stringify(body) });
    if (response.status !== 200) throw new Error(`infer: HTTP ${response.status} ${await response.text()}`);
  }
}

const scaleRadius = (row: number[]) => row.map((v, i) => (i === 0 ? v * 1.5 : v));
const GATES = { psi_max: '< 0.2', drifted_share: '< 0.3', out_of_range_rate: '<= 0.01', prediction_psi: '< 0.1' };

let profileFile: string;
let project: string;

async function monitor(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; report: MonitorReport; stderr: string }> {
  const result = await runCli(['monitor', ...args, '--json'], { cwd: project, env });
  return { code: result.code, report: JSON.parse(result.stdout) as MonitorReport, stderr: result.stderr };
}

async function serveProfiled(): Promise<RunningServer> {
  return startServer(serveOptions('breast_cancer', { profilePath: profileFile }), quiet);
}

beforeAll(async () => {
  await mkdir(WORK, { recursive: true });
  profileFile = path.join(WORK, 'profile.json');
  await writeFile(profileFile, JSON.stringify(await profileFor('breast_cancer', { test: { holdout: 'fixtures/breast_cancer/holdout.csv' } })));
  project = path.join(WORK, 'project');
  await mkdir(project, { recursive: true });
  await writeFile(
    path.join(project, 'mlops.config.json'),
    JSON.stringify({
      model: { path: fixture('breast_cancer', 'model.onnx'), name: 'breast_cancer' },
      monitor: { gates: GATES },
      targets: { prod: { type: 'kubernetes', namespace: 'ml' } },
    }),
  );
});
afterAll(async () => {
  await rm(WORK, { recursive: true, force: true });
});

describe('drift verdicts', () => {
  const profilePromise = profileFor('breast_cancer', { test: { holdout: 'fixtures/breast_cancer/holdout.csv' } });
  const settings = (monitor: object = {}, strict = false) => ({ monitor: applyDefaults({ monitor }).monitor, gateFlags: [], strict });
  const counts = async (rows: number) => {
    const profile = await profilePromise;
    // Every feature exactly as in the reference.
    return {
      rows,
      features: Object.fromEntries(profile.features.map((f) => [f.name, [...f.shares.map((s) => s * rows), 0]])),
      prediction: [...profile.prediction!.shares!.map((s) => s * rows)],
    };
  };

  it("gates by Evidently's dataset drift rule when none are configured", async () => {
    expect(driftGates(settings())).toEqual([{ metric: 'drifted_share', op: '<', threshold: 0.5 }]);
    const result = assessDrift(await profilePromise, await counts(1000), driftGates(settings()), settings());
    expect(result.verdict).toBe('passed');
    expect(result.metrics.psi_max).toBeLessThan(1e-12);
  });

  it('warns (exit 0) with too few rows to judge, and fails under --strict', async () => {
    const live = await counts(100);
    const loose = assessDrift(await profilePromise, live, driftGates(settings()), settings());
    expect(loose).toMatchObject({ verdict: 'too-few-rows', passed: true });
    expect(loose.warning).toMatch(/too few live rows to judge: 100, fewer than monitor.minRows \(500\)/);
    expect(assessDrift(await profilePromise, live, driftGates(settings()), settings({}, true)).passed).toBe(false);
  });

  it('reports no drift, and why, for an image built without reference data', async () => {
    const empty = await profileFor('breast_cancer', {});
    const result = assessDrift(empty, { rows: 900, features: {}, prediction: [400, 500, 0] }, driftGates(settings()), settings());
    expect(result).toMatchObject({ verdict: 'no-reference', passed: true, gates: [] });
    expect(result.warning).toMatch(/no drift computed: no reference data/);
  });

  it('refuses flags that do not go together, in one line (exit 2)', async () => {
    for (const [args, message] of [
      [['--url', 'http://127.0.0.1:9', '--output', 'x.yml'], /--output goes with --emit/],
      [['--prometheus', 'http://127.0.0.1:9', '--all'], /--all goes with --target or --url/],
      [['--emit', 'prometheus-rules', '--url', 'http://127.0.0.1:9'], /--emit reads no live traffic/],
      [['--emit', 'prometheus-rules', '--html', 'x.html'], /--emit writes one file, named by --output/],
      [['--emit', 'alertmanager'], /--emit alertmanager: expected prometheus-rules or grafana-dashboard/],
    ] as const) {
      const result = await runCli(['monitor', ...args], { cwd: project });
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr, args.join(' ')).toMatch(message);
    }
  });

  it('refuses a gate on an unknown metric before reading anything (exit 2)', async () => {
    const result = await runCli(['monitor', '--url', 'http://127.0.0.1:9', '--gate', 'accuracy>0.9'], { cwd: project });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/gate on unknown metric 'accuracy' for mlops monitor/);
  });
});

describe('mlops monitor against running servers', () => {
  it('passes on traffic drawn from the holdout, and fails naming the feature that was scaled (--url)', async () => {
    const server = await serveProfiled();
    try {
      await send(server.url, traffic(1000, 1));
      const same = await monitor(['--url', server.url]);
      expect(same.code).toBe(0);
      expect(same.report).toMatchObject({ verdict: 'passed', rows: 1000 });
      expect(same.report.features.filter((f) => f.drifted)).toEqual([]);

      // The window holds the last 10,000 rows: 1,000 more, shifted, make half of it.
      await send(server.url, traffic(1000, 2, scaleRadius));
      const shifted = await monitor(['--url', server.url]);
      expect(shifted.code).toBe(1);
      expect(shifted.report.features.filter((f) => f.drifted).map((f) => f.name)).toEqual(['mean_radius']);
      expect(shifted.report.gates.find((g) => g.metric === 'psi_max')).toMatchObject({ passed: false });
      expect(shifted.report.gates.find((g) => g.metric === 'out_of_range_rate')).toMatchObject({ passed: false });
    } finally {
      await server.stop();
    }
  });

  it('sums replicas: two servers sharing the traffic give what one server that saw all of it gives', async () => {
    const [a, b, all] = await Promise.all([serveProfiled(), serveProfiled(), serveProfiled()]);
    try {
      const rows = traffic(1200, 3, (r) => (r[1] > 20 ? r.map((v, i) => (i === 1 ? v * 1.3 : v)) : r));
      await send(a.url, rows.slice(0, 500));
      await send(b.url, rows.slice(500));
      await send(all.url, rows);
      const summed = await monitor(['--url', a.url, '--url', b.url, '--all']);
      const single = await monitor(['--url', all.url, '--all']);
      expect(summed.report.rows).toBe(1200);
      expect(summed.code).toBe(single.code);
      expect(summed.report.verdict).toBe(single.report.verdict);
      expect(summed.report.metrics).toEqual(single.report.metrics);
      expect(summed.report.features.map((f) => f.liveShares)).toEqual(single.report.features.map((f) => f.liveShares));
    } finally {
      await Promise.all([a.stop(), b.stop(), all.stop()]);
    }
  });

  it("sums every Kubernetes pod's counts through kubectl port-forward (--target)", async () => {
    const [a, b, all] = await Promise.all([serveProfiled(), serveProfiled(), serveProfiled()]);
    const bin = path.join(WORK, 'bin');
    const log = path.join(WORK, 'kubectl.log');
    await mkdir(bin, { recursive: true });
    await writeFile(path.join(bin, 'kubectl'), `#!/bin/sh\nexec node ${path.join(ROOT, 'test', 'bin', 'fake-kubectl.mjs')} "$@"\n`, { mode: 0o755 });
    await writeFile(log, '');
    const saved = { PATH: process.env.PATH, pods: process.env.FAKE_KUBECTL_PODS, log: process.env.FAKE_KUBECTL_LOG };
    // The exec seam runs kubectl with this process's environment.
    process.env.PATH = `${bin}:${process.env.PATH}`;
    process.env.FAKE_KUBECTL_PODS = `bc-7d9-a=${a.port},bc-7d9-b=${b.port}`;
    process.env.FAKE_KUBECTL_LOG = log;
    try {
      const rows = traffic(800, 4, scaleRadius);
      await send(a.url, rows.slice(0, 300));
      await send(b.url, rows.slice(300));
      await send(all.url, rows);
      const viaPods = await monitor(['--target', 'prod']);
      const single = await monitor(['--url', all.url]);
      expect(viaPods.code).toBe(1);
      expect(viaPods.report.source).toMatchObject({ kind: 'target', target: 'prod' });
      expect(viaPods.report.source.from).toHaveLength(2);
      expect(viaPods.report.metrics).toEqual(single.report.metrics);
      const calls = (await readFile(log, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as string[]);
      expect(calls[0]).toEqual([
        '--namespace',
        'ml',
        'get',
        'pods',
        '-l',
        'app.kubernetes.io/name=breast-cancer',
        '--field-selector=status.phase=Running',
        '-o',
        'json',
      ]);
      expect(calls.slice(1).map((c) => c.slice(0, 4))).toEqual([
        ['--namespace', 'ml', 'port-forward', 'pod/bc-7d9-a'],
        ['--namespace', 'ml', 'port-forward', 'pod/bc-7d9-b'],
      ]);
      expect(calls.slice(1).every((c) => c[4].endsWith(':8080'))).toBe(true);
    } finally {
      process.env.PATH = saved.PATH;
      process.env.FAKE_KUBECTL_PODS = saved.pods;
      process.env.FAKE_KUBECTL_LOG = saved.log;
      await Promise.all([a.stop(), b.stop(), all.stop()]);
    }
  });

  it('exits 2 in one line for a server without profiles (an image built before mlops monitor), and for a profile made for another model', async () => {
    // What an older mlops server answers for a route it does not have.
    const old = http.createServer((req, res) => {
      if (req.url === '/v2/repository/index') return res.writeHead(200).end(JSON.stringify([{ name: 'breast_cancer' }]));
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `no route GET ${req.url}; see GET /v2 and /v2/models/{name}` }));
    });
    await new Promise<void>((r) => old.listen(0, '127.0.0.1', r));
    const oldUrl = `http://127.0.0.1:${(old.address() as net.AddressInfo).port}`;
    const wrong = await startServer(serveOptions('wine', { profilePath: profileFile }), quiet);
    try {
      const before = await runCli(['monitor', '--url', oldUrl], { cwd: project });
      expect(before.code).toBe(2);
      expect(before.stderr).toMatch(new RegExp(`${oldUrl} has no live profile: its image was built before \`mlops monitor\``));
      expect(before.stderr).not.toMatch(/\n\s+at /);
      const mismatch = await runCli(['monitor', '--url', wrong.url], { cwd: path.join(WORK) });
      expect(mismatch.code).toBe(2);
      expect(mismatch.stderr).toMatch(/the reference profile does not match the model: it was built for model sha256/);
    } finally {
      old.close();
      await wrong.stop();
    }
  });

  it('exits 3 naming the URL when the server is down', async () => {
    const port = await freePort();
    const result = await runCli(['monitor', '--url', `http://127.0.0.1:${port}`], { cwd: project });
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(new RegExp(`cannot reach http://127.0.0.1:${port}/v2/models/breast_cancer/profile: ECONNREFUSED`));
  });
});

const chromium = probeTool('chromium', 'apt-get install chromium');

describe.skipIf(!chromium.ok)(`the HTML report, rendered by headless Chromium${chromium.ok ? '' : ` (skipped: ${chromium.reason})`}`, () => {
  it('draws reference and live histograms side by side for the drifted feature and the predictions, under a red banner', async () => {
    const server = await serveProfiled();
    try {
      await send(server.url, traffic(1000, 5, scaleRadius));
      const html = path.join(WORK, 'report.html');
      const markdown = path.join(WORK, 'summary.md');
      const summary = path.join(WORK, 'step-summary.md');
      const result = await runCli(['monitor', '--url', server.url, '--html', html, '--markdown', markdown], {
        cwd: project,
        env: { GITHUB_STEP_SUMMARY: summary },
      });
      expect(result.code).toBe(1);
      const page = await readFile(html, 'utf8');
      expect(page).not.toMatch(/<script|https?:\/\/(?!127\.0\.0\.1)(?!www\.w3\.org)/);
      expect(page).toMatch(/Drifted features \(1\)/);
      expect(await readFile(markdown, 'utf8')).toMatch(/^## mlops monitor: FAILED/);
      expect(await readFile(summary, 'utf8')).toMatch(/\| `mean_radius` \| \d+\.\d+ \|/);

      const png = path.join(WORK, 'report.png');
      execFileSync(
        chromium.path,
        [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          `--user-data-dir=${path.join(WORK, 'chromium-profile')}`,
          '--window-size=1400,1400',
          `--screenshot=${png}`,
          `file://${html}`,
        ],
        { stdio: 'ignore', timeout: 60_000 },
      );
      const image = PNG.sync.read(await readFile(png));
      const count = (r: number, g: number, b: number) => {
        let n = 0;
        for (let i = 0; i < image.data.length; i += 4) {
          if (Math.abs(image.data[i] - r) < 8 && Math.abs(image.data[i + 1] - g) < 8 && Math.abs(image.data[i + 2] - b) < 8) n++;
        }
        return n;
      };
      // Bars of both colours (two charts), and the failed banner, are really painted.
      expect(count(0x5b, 0x7d, 0xb1), 'reference bars').toBeGreaterThan(2000);
      expect(count(0xe8, 0x83, 0x3a), 'live bars').toBeGreaterThan(2000);
      expect(count(0xb3, 0x26, 0x1e), 'red banner').toBeGreaterThan(20_000);
    } finally {
      await server.stop();
    }
  });
});

const prometheus = probeTool('prometheus', "apt-get install prometheus (Debian's package)");

describe.skipIf(!prometheus.ok)(
  `mlops monitor --prometheus, with a real Prometheus scraping two servers${prometheus.ok ? '' : ` (skipped: ${prometheus.reason})`}`,
  () => {
    let child: ChildProcess | undefined;
    let servers: RunningServer[] = [];
    let promUrl: string;

    afterAll(async () => {
      child?.kill('SIGKILL');
      await Promise.all(servers.map((s) => s.stop()));
    });

    const query = async (promql: string) => {
      const response = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(promql)}`);
      return ((await response.json()) as { data: { result: { value: [number, string] }[] } }).data.result;
    };
    const until = async (what: string, check: () => Promise<boolean>, ms = 30_000) => {
      const deadline = Date.now() + ms;
      while (!(await check().catch(() => false))) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    };

    it('gives the verdict the summed counts of the servers give', async () => {
      servers = await Promise.all([serveProfiled(), serveProfiled()]);
      const port = await freePort();
      promUrl = `http://127.0.0.1:${port}`;
      const config = path.join(WORK, 'prometheus.yml');
      // The alerting rules mlops generates for this model, loaded by this Prometheus.
      const rules = path.join(WORK, 'rules.yml');
      const emitted = await runCli(['monitor', '--emit', 'prometheus-rules', '--reference', profileFile, '--output', rules], { cwd: project });
      expect(emitted.code, emitted.stderr).toBe(0);
      execFileSync(probeTool('promtool', 'apt-get install prometheus').path, ['check', 'rules', rules], { stdio: 'pipe' });
      await writeFile(
        config,
        [
          'global: { scrape_interval: 1s, evaluation_interval: 1s }',
          `rule_files: ['${rules}']`,
          'scrape_configs:',
          '  - job_name: mlops',
          `    static_configs: [{ targets: [${servers.map((s) => `'127.0.0.1:${s.port}'`).join(', ')}] }]`,
          '',
        ].join('\n'),
      );
      child = spawn(prometheus.path, [`--config.file=${config}`, `--storage.tsdb.path=${path.join(WORK, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`], {
        stdio: 'ignore',
      });
      // Both servers scraped at zero before the traffic, so increase() starts from their first count.
      await until('two scrapes of both servers', async () => (await query('count(count_over_time(mlops_profiled_rows_total[1m]) >= 2)'))[0]?.value[1] === '2');

      const rows = traffic(1200, 6, scaleRadius);
      await send(servers[0].url, rows.slice(0, 700));
      await send(servers[1].url, rows.slice(700));
      await until('the traffic in Prometheus', async () => (await query('sum(mlops_profiled_rows_total)'))[0]?.value[1] === '1200');
      await new Promise((r) => setTimeout(r, 2500));

      const viaPrometheus = await monitor(['--prometheus', promUrl, '--since', '5m', '--reference', profileFile]);
      const summed = await monitor(['--url', servers[0].url, '--url', servers[1].url, '--all']);
      expect(viaPrometheus.report.source.kind).toBe('prometheus');
      expect(viaPrometheus.code).toBe(summed.code);
      expect(viaPrometheus.code).toBe(1);
      expect(viaPrometheus.report.features.filter((f) => f.drifted).map((f) => f.name)).toEqual(
        summed.report.features.filter((f) => f.drifted).map((f) => f.name),
      );
      // increase() extrapolates to the ends of the range, by a factor per server: shares move a little, never the verdict.
      expect(Math.abs(viaPrometheus.report.rows - 1200) / 1200).toBeLessThan(0.25);
      for (const [i, f] of viaPrometheus.report.features.entries())
        expect(Math.abs(f.psi - summed.report.features[i].psi), f.name).toBeLessThan(0.05 + 0.1 * summed.report.features[i].psi);

      // The generated drift rule computes the same PSI inside Prometheus, and its alert is on its way for mean_radius only.
      const recorded = async (feature: string) => Number((await query(`mlops:feature_psi{feature="${feature}"}`))[0]?.value[1]);
      await until('the drift rule evaluated', async () => Number.isFinite(await recorded('mean_radius')));
      const psiOf = (name: string) => summed.report.features.find((f) => f.name === name)!.psi;
      expect(Math.abs((await recorded('mean_radius')) - psiOf('mean_radius'))).toBeLessThan(0.1 * psiOf('mean_radius'));
      expect(await recorded('mean_texture')).toBeLessThan(0.1);
      await until('the drift alert pending', async () => {
        const alerts = ((await (await fetch(`${promUrl}/api/v1/alerts`)).json()) as { data: { alerts: { labels: Record<string, string>; state: string }[] } })
          .data.alerts;
        const drift = alerts.filter((a) => a.labels.alertname === 'MlopsFeatureDrift');
        return drift.length === 1 && drift[0].labels.feature === 'mean_radius' && ['pending', 'firing'].includes(drift[0].state);
      });
    });

    it('emits a Grafana dashboard (schema 39) whose every query a real Prometheus accepts and answers', async () => {
      const file = path.join(WORK, 'dashboard.json');
      const emitted = await runCli(['monitor', '--emit', 'grafana-dashboard', '--reference', profileFile, '--output', file], { cwd: project });
      expect(emitted.code, emitted.stderr).toBe(0);
      const dashboard = JSON.parse(await readFile(file, 'utf8'));
      // Grafana's dashboard JSON model: what an import needs.
      expect(dashboard).toMatchObject({
        title: 'mlops: breast_cancer',
        uid: 'mlops-breast-cancer',
        schemaVersion: expect.any(Number),
        templating: { list: expect.any(Array) },
      });
      expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
      const panels = dashboard.panels as {
        id: number;
        type: string;
        title: string;
        gridPos: { x: number; y: number; w: number; h: number };
        targets: { expr: string }[];
      }[];
      expect(panels.map((p) => p.title)).toEqual([
        'Throughput',
        'Inference latency',
        'Errors',
        'Batch size and queue time',
        'Feature drift (PSI)',
        'Live distribution of $feature (share of rows per reference bin)',
        'Values outside the reference range',
        'Predictions by class',
      ]);
      expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
      for (const p of panels) {
        expect(['timeseries', 'barchart', 'stat']).toContain(p.type);
        expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
      }
      expect(dashboard.templating.list.find((v: { name: string }) => v.name === 'feature').query.split(',')).toHaveLength(30);
      // Grafana fills these in; with them filled, every query is one Prometheus answers.
      const filled = (expr: string) => expr.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '5m').replaceAll('$feature', 'mean_radius');
      for (const p of panels) {
        for (const target of p.targets) {
          const response = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(filled(target.expr))}`);
          expect(response.status, `${p.title}: ${target.expr}`).toBe(200);
        }
      }
      const distribution = panels.find((p) => p.type === 'barchart')!.targets[0].expr;
      const shares = (await query(filled(distribution))).map((r) => Number(r.value[1]));
      expect(shares.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
      const throughput = await query(filled(panels[0].targets[0].expr).replace('[1m]', '[5m]'));
      expect(throughput.length).toBeGreaterThan(0);
    });

    it('exits 3 naming the URL and the query when Prometheus has no series, or is not there', async () => {
      const other = path.join(WORK, 'other-profile.json');
      const profile = JSON.parse(await readFile(profileFile, 'utf8'));
      await writeFile(other, JSON.stringify({ ...profile, bins: profile.bins }) + ' ');
      const none = await runCli(['monitor', '--prometheus', promUrl, '--reference', other], { cwd: project });
      expect(none.code).toBe(3);
      expect(none.stderr).toMatch(
        new RegExp(`Prometheus at ${promUrl} has no series for sum\\(increase\\(mlops_profiled_rows_total\\{reference="[0-9a-f]{12}"\\}\\[1h\\]\\)\\)`),
      );
      const port = await freePort();
      const down = await runCli(['monitor', '--prometheus', `http://127.0.0.1:${port}`, '--reference', profileFile], { cwd: project });
      expect(down.code).toBe(3);
      expect(down.stderr).toMatch(new RegExp(`cannot reach Prometheus at http://127.0.0.1:${port}`));
    });
  },
);

describe('--prometheus needs a reference', () => {
  it('exits 2 naming the file when there is no build and no --reference', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: fixture('wine', 'model.onnx') } }));
      const result = await runCli(['monitor', '--prometheus', 'http://127.0.0.1:9'], { cwd: dir });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/\.mlops\/reference-profile.json \(the last build\): cannot be read/);
    });
  });
});
