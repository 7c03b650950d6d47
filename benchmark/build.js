// Issue 3: cold build, model-only rebuild, bytes over the base image, and how
// soon a started container answers ready; issue 26: how soon the same image,
// started as AWS Lambda starts it, answers its first invocation. Needs a Docker engine.
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { main } from '../dist/cli.js';
import { dockerEndpoint } from '../dist/docker/client.js';
import { waitForReady } from '../dist/http/ready.js';
import { fixture, median, round, table } from './lib.js';

const REPOSITORY = 'mlops-bench-build';

async function cli(argv, cwd) {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { cwd, env: { ...process.env, CI: 'true' }, stdout: { write: (s) => (stdout += s) }, stderr: { write: (s) => (stderr += s) } });
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
      return res.end(JSON.stringify({ version: '2.0', rawPath: '/v2/models/bench/infer', rawQueryString: '', headers: { 'content-type': 'application/json' }, requestContext: { http: { method: 'POST' } }, body, isBase64Encoded: false }));
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
    if (!posted || !posted.url.endsWith('/response') || posted.answer.statusCode !== 200) throw new Error(`the Lambda-mode image did not answer its first invocation: ${JSON.stringify(posted)}`);
    return (performance.now() - started) / 1000;
  } finally {
    await container.remove({ force: true });
    api.closeAllConnections();
    api.close();
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
    const results = {
      baseImage: base,
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
          ['Lambda mode: start to first invocation answered, s', results.lambdaFirstAnswerAfterStartSeconds.median, '', results.lambdaFirstAnswerAfterStartSeconds.runs.join(', ')],
        ],
      ),
    ].join('\n');
    return { results, markdown };
  } finally {
    const images = await docker.listImages({ filters: { reference: [`${REPOSITORY}*`] } });
    for (const i of images) await docker.getImage(i.Id).remove({ force: true }).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}
