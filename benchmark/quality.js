// Issue 4: mlops test throughput in-process and against the container, and
// peak memory as the holdout grows (it should not grow with it).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dockerEndpoint } from '../dist/docker/client.js';
import { fixture, median, mlopsJson, round, table, ROOT } from './lib.js';

const execFileAsync = promisify(execFile);

async function writeHoldout(file, rows) {
  const [header, ...data] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split(/\r?\n/);
  const out = createWriteStream(file);
  out.write(header + '\n');
  const block = data.join('\n') + '\n';
  for (let written = 0; written < rows; written += data.length) {
    if (!out.write(block)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((r) => out.end(r));
}

async function mlopsTest(dir, args) {
  return mlopsJson(['test', ...args], dir);
}

export async function run({ log }) {
  const dir = await mkdtemp(path.join(tmpdir(), 'mlops-bench-test-'));
  try {
    await copyFile(fixture('breast_cancer', 'model.onnx'), path.join(dir, 'model.onnx'));
    const config = { model: { path: 'model.onnx', name: 'bc' }, image: { repository: 'mlops-bench-test' }, test: { labels: ['malignant', 'benign'] } };
    const sizes = [100_000, 1_000_000, 4_600_000];
    for (const rows of sizes) await writeHoldout(path.join(dir, `h${rows}.csv`), rows);
    const local = [];
    for (let i = 0; i < 3; i++) {
      log(`in-process, 100k rows, run ${i + 1}/3`);
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify(config));
      local.push((await mlopsTest(dir, ['--local', '--holdout', 'h100000.csv'])).report.rowsPerSecond);
    }
    const memory = [];
    for (const rows of sizes) {
      log(`peak memory, ${rows} rows`);
      const { report, maxRssBytes } = await mlopsTest(dir, ['--local', '--holdout', `h${rows}.csv`]);
      memory.push({ rows: report.rows, fileBytes: (await stat(path.join(dir, `h${rows}.csv`))).size, maxRssBytes });
    }
    const image = [];
    const { docker } = dockerEndpoint(process.env);
    const engine = await docker.ping().then(
      () => true,
      () => false,
    );
    if (engine) {
      const { ensureLocalBaseImage } = await import('../scripts/local-base.js');
      config.image.base = await ensureLocalBaseImage(docker);
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify(config));
      await execFileAsync(process.execPath, [path.join(ROOT, 'bin/mlops.js'), 'build'], { cwd: dir });
      for (let i = 0; i < 3; i++) {
        log(`image mode, 100k rows, run ${i + 1}/3`);
        image.push((await mlopsTest(dir, ['--holdout', 'h100000.csv'])).report.rowsPerSecond);
      }
      for (const i of await docker.listImages({ filters: { reference: ['mlops-bench-test*'] } }))
        await docker
          .getImage(i.Id)
          .remove({ force: true })
          .catch(() => undefined);
    }
    const results = {
      model: 'breast_cancer (30 features)',
      inProcessRowsPerSecond: { median: median(local), runs: local },
      imageRowsPerSecond: engine ? { median: median(image), runs: image } : 'skipped: no Docker engine',
      peakMemory: memory,
    };
    const mb = (b) => `${round(b / 1e6, 1)} MB`;
    const markdown = [
      'Breast cancer model, CSV holdouts made by repeating the 114-row fixture; each run in its own process.',
      '',
      table(
        ['what', 'median', 'goal', 'runs'],
        [
          ['in-process rows/s (100k rows)', median(local), '>= 100,000', local.join(', ')],
          ['image mode rows/s (100k rows)', engine ? median(image) : 'skipped', '>= 20,000', image.join(', ')],
        ],
      ),
      '',
      table(
        ['holdout rows', 'file size', 'peak RSS'],
        memory.map((m) => [m.rows, mb(m.fileBytes), mb(m.maxRssBytes)]),
      ),
    ].join('\n');
    return { results, markdown };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
