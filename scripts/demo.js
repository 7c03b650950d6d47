// `npm run demo`: the whole pipeline on the bundled breast cancer model, in .demo/:
// inspect, build, test, bench, tag, deploy to a local target, status, and
// monitor after some traffic drawn from the holdout.
// Without a Docker engine it runs what needs none (in-process test and bench).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = path.join(root, '.demo');
mkdirSync(dir, { recursive: true });
copyFileSync(path.join(root, 'fixtures/breast_cancer/model.onnx'), path.join(dir, 'model.onnx'));
// The model's own time stays with the copy: an image's created label comes from it (reproducible builds).
const modelTime = statSync(path.join(root, 'fixtures/breast_cancer/model.onnx')).mtime;
utimesSync(path.join(dir, 'model.onnx'), modelTime, modelTime);
copyFileSync(path.join(root, 'fixtures/breast_cancer/holdout.csv'), path.join(dir, 'holdout.csv'));

const mlops = (...args) => {
  process.stdout.write(`\n$ mlops ${args.join(' ')}\n`);
  const result = spawnSync(process.execPath, [path.join(root, 'bin/mlops.js'), ...args], { cwd: dir, stdio: 'inherit' });
  if (result.status !== 0) {
    process.stderr.write(`\nmlops ${args[0]} exited ${result.status}; the demo stops here.\n`);
    process.exit(result.status ?? 1);
  }
};

const docker = new Docker({ socketPath: process.env.DOCKER_HOST?.replace('unix://', '') || '/var/run/docker.sock' });
const engine = await docker.ping().then(
  () => true,
  () => false,
);

/** A port that answers nothing, from the kernel: 0 asks for any. */
const portFree = (port) =>
  new Promise((resolve) => {
    const probe = net.createServer().once('error', () => resolve(undefined));
    probe.listen(port, '127.0.0.1', () => {
      const { port: bound } = probe.address();
      probe.close(() => resolve(bound));
    });
  });
/**
 * MLOPS_DEMO_PORT, else 8080 when it is free or held by the demo's own container (a rerun replaces
 * it), else any free port: the demo never takes over something else listening on 8080.
 */
async function demoPort() {
  if (process.env.MLOPS_DEMO_PORT) return Number(process.env.MLOPS_DEMO_PORT);
  if (await portFree(8080)) return 8080;
  const own = engine
    ? await docker
        .getContainer('mlops-breast-cancer-dev')
        .inspect()
        .catch(() => undefined)
    : undefined;
  if (own?.HostConfig?.PortBindings?.['8080/tcp']?.some((b) => b.HostPort === '8080')) return 8080;
  return portFree(0);
}
const port = await demoPort();

let base = process.env.MLOPS_BASE_IMAGE ?? 'node:20-slim';
if (
  engine &&
  !(await docker
    .getImage(base)
    .inspect()
    .then(
      () => true,
      () => false,
    ))
) {
  const pulled = spawnSync('docker', ['pull', base], { stdio: 'ignore' }).status === 0;
  if (!pulled) {
    // No registry reachable (as on an offline machine): a base made from this machine's node.
    const { ensureLocalBaseImage } = await import('./local-base.js');
    base = await ensureLocalBaseImage(docker);
    process.stdout.write(`(${process.env.MLOPS_BASE_IMAGE ?? 'node:20-slim'} could not be pulled; using ${base}, built from this machine's node)\n`);
  }
}

writeFileSync(
  path.join(dir, 'mlops.config.json'),
  JSON.stringify(
    {
      model: { path: 'model.onnx', name: 'breast-cancer' },
      image: { repository: 'mlops-demo/breast-cancer', base },
      // Every request logged, so that the truth sent back later can be joined with its prediction.
      server: { inferenceLog: { sample: 1, sink: 'stdout' } },
      monitor: { maxDrop: { accuracy: 0.02 } },
      test: { holdout: 'holdout.csv', labels: ['malignant', 'benign'], gates: { accuracy: '>= 0.95', roc_auc: '>= 0.98' } },
      bench: { concurrency: [1, 8], durationSeconds: 3, warmupSeconds: 1, gates: { error_rate: '<= 0' } },
      targets: { dev: { type: 'local', port } },
    },
    null,
    2,
  ) + '\n',
);

mlops('inspect');
if (!engine) {
  process.stdout.write('\nNo Docker engine is reachable: running the model in-process only (start dockerd for build, deploy and rollback).\n');
  mlops('test', '--local', '--junit', 'junit.xml');
  mlops('bench', '--local', '--html', 'bench.html');
  process.exit(0);
}
// A fresh start every time: the demo's own container, images and project state from an earlier run go, so
// it always releases 0.1.0 with a new staging alias instead of bumping from what an earlier run left.
for (const c of await docker.listContainers({ all: true, filters: { name: ['^/mlops-breast-cancer-dev'] } }))
  await docker.getContainer(c.Id).remove({ force: true });
for (const image of await docker.listImages({ filters: { reference: ['mlops-demo/breast-cancer'] } }))
  await docker
    .getImage(image.Id)
    .remove({ force: true })
    .catch(() => undefined);
rmSync(path.join(dir, '.mlops'), { recursive: true, force: true });
mlops('build');
mlops('test', '--junit', 'junit.xml', '--markdown', 'test-summary.md');
mlops('bench', '--html', 'bench.html');
mlops('explain', '--html', 'explain.html', '--rows', '20');
mlops('tag', '0.1.0', '--alias', 'staging', '--offline');
const version = JSON.parse(readFileSync(path.join(dir, '.mlops/last-tag.json'), 'utf8')).version;
mlops('deploy', version, '--target', 'dev');
mlops('status', '--target', 'dev');

// Some traffic like the holdout, then the drift check a scheduled CI job would run.
const [header, ...rows] = readFileSync(path.join(dir, 'holdout.csv'), 'utf8').trim().split(/\r?\n/);
const label = header.split(',').indexOf('label');
const features = rows.map((line) =>
  line
    .split(',')
    .filter((_, i) => i !== label)
    .map(Number),
);
const truth = rows.map((line) => line.split(',')[label]);
const labels = ['id,row,label'];
for (let sent = 0; sent < 600; sent += 20) {
  const picked = Array.from({ length: 20 }, (_, i) => (sent + i * 7) % features.length);
  const batch = picked.map((i) => features[i]);
  const body = { inputs: [{ name: 'features', datatype: 'FP32', shape: [batch.length, batch[0].length], data: batch.flat() }] };
  const answer = await (await fetch(`http://127.0.0.1:${port}/v2/models/breast-cancer/infer`, { method: 'POST', body: JSON.stringify(body) })).json();
  // The truth as it would arrive later, under the id the server answered with.
  picked.forEach((i, row) => labels.push(`${answer.id},${row},${truth[i]}`));
}
writeFileSync(path.join(dir, 'labels.csv'), labels.join('\n') + '\n');
process.stdout.write(`\n(sent 600 rows drawn from the holdout to the deployed model, and wrote their labels to labels.csv)\n`);
mlops('monitor', '--target', 'dev', '--html', 'monitor.html');
await new Promise((resolve) => setTimeout(resolve, 1500)); // the log's stdout sink writes within a second
mlops('monitor', '--target', 'dev', '--labels', 'labels.csv');
process.stdout.write(
  `\nThe model (version ${version}) is serving on http://127.0.0.1:${port}. Try:\n` +
    `  curl -s http://127.0.0.1:${port}/v2/models/breast-cancer\n` +
    `  curl -s http://127.0.0.1:${port}/v2/models/breast-cancer/explain -d '{"inputs":[{"name":"features","datatype":"FP32","shape":[1,30],"data":[${features[0].join(',')}]}]}'\n` +
    `Reports are in .demo/ (junit.xml, test-summary.md, bench.html, explain.html, monitor.html, and .mlops/ with the image's SBOM, sbom.cdx.json). Stop it with: docker rm -f mlops-breast-cancer-dev\n`,
);
