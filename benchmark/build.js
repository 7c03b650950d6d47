// Issue 3: cold build, model-only rebuild, bytes over the base image, and how
// soon a started container answers ready; issue 26: how soon the same image,
// started as AWS Lambda starts it, answers its first invocation; issue 35: the
// daemonless builder against the engine's, build and push to a local registry,
// interleaved. Needs a Docker engine (for the engine's side, and to load images).
import { execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { main } from '../dist/cli.js';
import { dockerEndpoint } from '../dist/docker/client.js';
import { waitForReady } from '../dist/http/ready.js';
import { fixture, median, round, table } from './lib.js';

const REPOSITORY = 'mlops-bench-build';

async function cli(argv, cwd, env = {}) {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, {
    cwd,
    env: { ...process.env, CI: 'true', ...env },
    stdout: { write: (s) => (stdout += s) },
    stderr: { write: (s) => (stderr += s) },
  });
  if (code !== 0) throw new Error(`mlops ${argv.join(' ')} exited ${code}: ${stderr}`);
  return JSON.parse(stdout);
}

async function readySeconds(docker, image) {
  const container = await docker.createContainer({
    Image: image,
    ExposedPorts: { '8080/tcp': {} },
    HostConfig: { PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] } },
  });
  try {
    const started = performance.now();
    await container.start();
    const port = (await container.inspect()).NetworkSettings.Ports['8080/tcp'][0].HostPort;
    const { ready } = await waitForReady(`http://127.0.0.1:${port}/v2/health/ready`, { timeoutMs: 30_000, intervalMs: 5 });
    if (!ready) throw new Error('container never became ready');
    return (performance.now() - started) / 1000;
  } finally {
    await container.remove({ force: true });
  }
}

/**
 * Container start to the first Function URL event answered, with AWS_LAMBDA_RUNTIME_API pointed at a
 * stand-in of the Runtime API on this machine (host networking, read-only root, as Lambda runs it).
 */
async function lambdaFirstAnswerSeconds(docker, image) {
  let answered;
  const done = new Promise((resolve) => (answered = resolve));
  let served = false;
  const body = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: Array(30).fill(1) }] });
  const api = http.createServer((req, res) => {
    if (req.url.endsWith('/invocation/next')) {
      if (served) return; // no second event: the call waits, as Lambda's does
      served = true;
      res.writeHead(200, { 'lambda-runtime-aws-request-id': 'bench-1', 'lambda-runtime-deadline-ms': String(Date.now() + 30_000) });
      return res.end(
        JSON.stringify({
          version: '2.0',
          rawPath: '/v2/models/bench/infer',
          rawQueryString: '',
          headers: { 'content-type': 'application/json' },
          requestContext: { http: { method: 'POST' } },
          body,
          isBase64Encoded: false,
        }),
      );
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(202).end('{}');
      answered({ url: req.url, answer: JSON.parse(Buffer.concat(chunks).toString()) });
    });
  });
  await new Promise((resolve) => api.listen(0, '127.0.0.1', resolve));
  const container = await docker.createContainer({
    Image: image,
    Env: [`AWS_LAMBDA_RUNTIME_API=127.0.0.1:${api.address().port}`, 'PORT=0'],
    HostConfig: { NetworkMode: 'host', ReadonlyRootfs: true },
  });
  try {
    const started = performance.now();
    await container.start();
    const timeout = setTimeout(() => answered(null), 30_000);
    const posted = await done;
    clearTimeout(timeout);
    if (!posted || !posted.url.endsWith('/response') || posted.answer.statusCode !== 200)
      throw new Error(`the Lambda-mode image did not answer its first invocation: ${JSON.stringify(posted)}`);
    return (performance.now() - started) / 1000;
  } finally {
    await container.remove({ force: true });
    api.closeAllConnections();
    api.close();
  }
}

const run_ = promisify(execFile);
const seconds = (started) => round((performance.now() - started) / 1000, 2);

async function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Debian's docker-registry on 127.0.0.1, storage in `dir`. */
async function startRegistry(dir) {
  const port = await freePort();
  await writeFile(
    path.join(dir, 'registry.yml'),
    `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/registry\nhttp:\n  addr: 127.0.0.1:${port}\n`,
  );
  const child = spawn('docker-registry', ['serve', path.join(dir, 'registry.yml')], { stdio: 'ignore' });
  const address = `127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if (
      await fetch(`http://${address}/v2/`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return { address, stop: () => child.kill() };
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill();
  throw new Error('docker-registry did not start');
}

/**
 * The daemonless builder against the engine's, each round both, in turn: a full build and push of a
 * new repository (the base's blobs already in the registry), a model-only rebuild and push, and for
 * the daemonless one `--output docker:` then `docker load`.
 */
async function daemonless(docker, base, dir, log) {
  const registry = await startRegistry(dir);
  try {
    const archive = path.join(dir, 'base.tar');
    await pipeline(await docker.getImage(base).get(), createWriteStream(archive));
    const registryBase = `${registry.address}/bench/base:1`;
    await run_('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `docker-archive:${archive}`, `docker://${registryBase}`]);
    const { pushImages } = await import('../dist/release/push.js');
    // The engine's side gets its base in the registry too, compressed its own way, so both start with the base's blobs there.
    const engineBase = `${registry.address}/bench/engine-base:1`;
    await docker.getImage(base).tag({ repo: engineBase.slice(0, engineBase.lastIndexOf(':')), tag: '1' });
    await pushImages({ docker, env: process.env, references: [engineBase] });
    const rows = {
      ociFull: [],
      ociModelOnly: [],
      ociUploadedOnRebuild: [],
      dockerFull: [],
      dockerModelOnly: [],
      ociDockerArchiveAndLoad: [],
      digestsEqual: [],
    };
    let ociAdded = 0;
    let dockerAdded = 0;
    const config = (repository, builder) =>
      writeFile(
        path.join(dir, 'mlops.config.json'),
        JSON.stringify({ model: { path: 'a.onnx', name: 'bench' }, image: { repository, base: builder === 'oci' ? registryBase : base, builder } }),
      );
    for (let round = 0; round < 3; round++) {
      const repository = `${registry.address}/bench/oci-${round}`;
      const cache = { MLOPS_CACHE_DIR: path.join(dir, `cache-${round}`), SOURCE_DATE_EPOCH: '1767225600' };
      await config(repository, 'oci');
      log(`daemonless: full build + push ${round + 1}/3 (empty cache)`);
      let started = performance.now();
      const full = await cli(['build', '--output', 'registry', '--json'], dir, cache);
      rows.ociFull.push(seconds(started));
      ociAdded = full.addedBytes;
      log(`daemonless: model-only rebuild + push ${round + 1}/3`);
      started = performance.now();
      const rebuilt = await cli(['build', '--model', round % 2 ? 'c.onnx' : 'b.onnx', '--output', 'registry', '--json'], dir, cache);
      rows.ociModelOnly.push(seconds(started));
      rows.ociUploadedOnRebuild.push(rebuilt.push.uploaded);
      // The same inputs on an empty cache: the same digest.
      const again = await cli(['build', '--model', round % 2 ? 'c.onnx' : 'b.onnx', '--output', `oci:${path.join(dir, `layout-${round}`)}`, '--json'], dir, {
        ...cache,
        MLOPS_CACHE_DIR: path.join(dir, `cache-again-${round}`),
      });
      rows.digestsEqual.push(again.digest === rebuilt.digest);
      log(`daemonless: --output docker: then docker load ${round + 1}/3`);
      started = performance.now();
      const tarball = path.join(dir, `image-${round}.tar`);
      await cli(['build', '--output', `docker:${tarball}`, '--json'], dir, cache);
      await run_('docker', ['load', '-q', '-i', tarball]);
      rows.ociDockerArchiveAndLoad.push(seconds(started));
      await rm(tarball, { force: true });

      const dockerRepository = `${registry.address}/bench/engine-${round}`;
      await config(dockerRepository, 'docker');
      log(`engine: full build (--no-cache) + push ${round + 1}/3`);
      started = performance.now();
      const built = await cli(['build', '--no-cache', '--json'], dir);
      await pushImages({ docker, env: process.env, references: [built.tags[0]] });
      rows.dockerFull.push(seconds(started));
      dockerAdded = built.addedBytes;
      log(`engine: model-only rebuild + push ${round + 1}/3`);
      started = performance.now();
      const second = await cli(['build', '--model', round % 2 ? 'c.onnx' : 'b.onnx', '--json'], dir);
      await pushImages({ docker, env: process.env, references: [second.tags[0]] });
      rows.dockerModelOnly.push(seconds(started));
    }
    return { rows, ociAdded, dockerAdded };
  } finally {
    registry.stop();
  }
}

export async function run({ log }) {
  const { docker } = dockerEndpoint(process.env);
  try {
    await docker.ping();
  } catch {
    return { results: { skipped: 'no Docker engine' }, markdown: 'Skipped: no Docker engine reachable.' };
  }
  const { ensureLocalBaseImage } = await import('../scripts/local-base.js');
  const base = await ensureLocalBaseImage(docker);
  const dir = await mkdtemp(path.join(tmpdir(), 'mlops-bench-build-'));
  try {
    await copyFile(fixture('breast_cancer', 'model.onnx'), path.join(dir, 'a.onnx'));
    await copyFile(fixture('wine', 'model.onnx'), path.join(dir, 'b.onnx'));
    await copyFile(fixture('diabetes', 'model.onnx'), path.join(dir, 'c.onnx'));
    await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: 'a.onnx', name: 'bench' }, image: { repository: REPOSITORY, base } }));
    const cold = [];
    const rebuild = [];
    let added = 0;
    let image = '';
    for (let i = 0; i < 3; i++) {
      log(`cold build ${i + 1}/3`);
      const first = await cli(['build', '--no-cache', '--json'], dir);
      cold.push(first.seconds);
      added = first.addedBytes;
      image = first.imageId;
      log(`model-only rebuild ${i + 1}/3`);
      const second = await cli(['build', '--model', i % 2 ? 'c.onnx' : 'b.onnx', '--json'], dir);
      rebuild.push(second.seconds);
    }
    const ready = [];
    const lambda = [];
    // Alternating, so that a busy moment on the machine slows both kinds of start.
    for (let i = 0; i < 5; i++) {
      ready.push(await readySeconds(docker, image));
      lambda.push(await lambdaFirstAnswerSeconds(docker, image));
    }
    const oci = await daemonless(docker, base, dir, log);
    const results = {
      baseImage: base,
      daemonless: {
        fullBuildAndPushSeconds: { median: median(oci.rows.ociFull), runs: oci.rows.ociFull },
        modelOnlyRebuildAndPushSeconds: { median: median(oci.rows.ociModelOnly), runs: oci.rows.ociModelOnly },
        blobsUploadedOnModelOnlyRebuild: oci.rows.ociUploadedOnRebuild,
        dockerArchiveAndLoadSeconds: { median: median(oci.rows.ociDockerArchiveAndLoad), runs: oci.rows.ociDockerArchiveAndLoad },
        sameDigestOnEmptyCache: oci.rows.digestsEqual,
        addedBytesCompressed: oci.ociAdded,
      },
      engine: {
        fullBuildAndPushSeconds: { median: median(oci.rows.dockerFull), runs: oci.rows.dockerFull },
        modelOnlyRebuildAndPushSeconds: { median: median(oci.rows.dockerModelOnly), runs: oci.rows.dockerModelOnly },
        addedBytesUncompressed: oci.dockerAdded,
      },
      coldBuildSeconds: { median: median(cold), runs: cold },
      modelOnlyRebuildSeconds: { median: median(rebuild), runs: rebuild },
      addedBytesOverBase: added,
      readyAfterStartSeconds: { median: round(median(ready), 3), runs: ready.map((s) => round(s, 3)) },
      lambdaFirstAnswerAfterStartSeconds: { median: round(median(lambda), 3), runs: lambda.map((s) => round(s, 3)) },
    };
    const markdown = [
      `Breast cancer model (3 KB) on a FROM-scratch base with this machine's node (${base}).`,
      '',
      table(
        ['what', 'median', 'goal', 'runs'],
        [
          ['cold build (--no-cache), s', results.coldBuildSeconds.median, '', cold.join(', ')],
          ['model-only rebuild, s', results.modelOnlyRebuildSeconds.median, '< 3', rebuild.join(', ')],
          ['bytes over the base image', `${round(added / 1e6, 1)} MB`, '< 60 MB', ''],
          ['container start to ready, s', results.readyAfterStartSeconds.median, '< 1', results.readyAfterStartSeconds.runs.join(', ')],
          [
            'Lambda mode: start to first invocation answered, s',
            results.lambdaFirstAnswerAfterStartSeconds.median,
            '',
            results.lambdaFirstAnswerAfterStartSeconds.runs.join(', '),
          ],
        ],
      ),
      '',
      "Daemonless (`--builder oci`) against the engine's builder, interleaved rounds, a local docker-registry holding the base. Full build: a new repository each round, the daemonless one on an empty cache (it compresses every layer), the engine's with --no-cache.",
      '',
      table(
        ['what', 'daemonless median', 'engine median', 'goal', 'daemonless runs', 'engine runs'],
        [
          [
            'full build + push, s',
            results.daemonless.fullBuildAndPushSeconds.median,
            results.engine.fullBuildAndPushSeconds.median,
            '≤ 5 (daemonless)',
            oci.rows.ociFull.join(', '),
            oci.rows.dockerFull.join(', '),
          ],
          [
            'model-only rebuild + push, s',
            results.daemonless.modelOnlyRebuildAndPushSeconds.median,
            results.engine.modelOnlyRebuildAndPushSeconds.median,
            '≤ 2 (daemonless)',
            oci.rows.ociModelOnly.join(', '),
            oci.rows.dockerModelOnly.join(', '),
          ],
          ['blobs uploaded by a model-only push', oci.rows.ociUploadedOnRebuild.join(', '), '', 'the model layer, config', '', ''],
          [
            '--output docker: then docker load, s',
            results.daemonless.dockerArchiveAndLoadSeconds.median,
            '',
            '',
            oci.rows.ociDockerArchiveAndLoad.join(', '),
            '',
          ],
          ['same digest on an empty cache', oci.rows.digestsEqual.every(Boolean) ? 'yes' : 'NO', '', 'yes', oci.rows.digestsEqual.join(', '), ''],
          ['bytes over the base', `${round(oci.ociAdded / 1e6, 1)} MB gzip`, `${round(oci.dockerAdded / 1e6, 1)} MB unpacked`, '≤ 60 MB', '', ''],
        ],
      ),
    ].join('\n');
    return { results, markdown };
  } finally {
    const images = await docker.listImages({ filters: { reference: [`${REPOSITORY}*`] } });
    for (const i of images)
      await docker
        .getImage(i.Id)
        .remove({ force: true })
        .catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}
