import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyDefaults } from '../../src/config/normalize.js';
import { TARGET_DEFAULTS } from '../../src/config/defaults.js';
import { decodeRestResponse, encodeRestRequest } from '../../src/protocol/rest.js';
import { SAGEMAKER_BINARY } from '../../src/server/app.js';
import { renderInferenceService } from '../../src/targets/kserve-manifest.js';
import { configuredSampleInputs, smokeTest } from '../../src/targets/smoke.js';
import { holdoutRows, runCli } from '../helpers.js';
import { breastCancerProject, probeEngine, runImage, waitFor, type RunningContainer } from './docker.js';

const engine = await probeEngine();
const REPOSITORY = 'mlops-e2e-contracts/bc';
const { rows } = holdoutRows();
const SPEC = [{ name: 'features', datatype: 'FP32' as const }];
const feeds = (batch: number[][]) => ({ features: { data: Float32Array.from(batch.flat()), dims: [batch.length, 30] } });

/**
 * One image, built once with a port no platform uses (9000), run the way each platform runs it:
 * SageMaker (`docker run IMAGE serve`, port 8080), Vertex AI (AIP_* variables) and KServe (the
 * environment of the InferenceService mlops renders). Each answers in its platform's format.
 */
describe.skipIf(!engine.ok)(`one image under every platform's container contract${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let dir: string;
  let image: string;
  const running: RunningContainer[] = [];
  let expected: number[];

  beforeAll(async () => {
    ({ dir } = await breastCancerProject(docker, 'mlops-e2e-contracts-', (baseImage) => ({
      model: { path: 'model.onnx', name: 'bc' },
      image: { repository: REPOSITORY, base: baseImage, port: 9000 },
      test: { holdout: 'holdout.csv', labels: ['malignant', 'benign'] },
    })));
    const build = await runCli(['build'], { cwd: dir });
    expect(build.code, build.stderr).toBe(0);
    image = (JSON.parse(await readFile(path.join(dir, '.mlops', 'last-build.json'), 'utf8')) as { tags: string[] }).tags[0];
  }, 240_000);

  afterAll(async () => {
    for (const c of running) await c.remove();
    for (const i of await docker.listImages({ filters: { reference: [`${REPOSITORY}*`] } }))
      await docker
        .getImage(i.Id)
        .remove({ force: true })
        .catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const start = async (options: { env?: string[]; port: number; cmd?: string[] }, ready: string) => {
    const container = await runImage(docker, image, options);
    running.push(container);
    await waitFor(async () => (await fetch(`${container.url}${ready}`)).ok, 30_000, `the container to answer ${ready}`);
    return container;
  };

  it('KServe: the v2 protocol under the InferenceService environment, with our own OIP client', async () => {
    const service = renderInferenceService(
      'bc',
      TARGET_DEFAULTS.kserve,
      { version: '1', image, digest: null, modelName: 'bc', modelSha256: null },
      applyDefaults({ image: { port: 9000 } }),
    );
    const container = (service.spec.predictor.containers as { env: { name: string; value: string }[]; readinessProbe: { httpGet: { path: string } } }[])[0];
    const kserve = await start({ env: container.env.map((e) => `${e.name}=${e.value}`), port: 9000 }, container.readinessProbe.httpGet.path);
    await smokeTest(kserve.url, { version: '1', image, digest: null, modelName: 'bc', modelSha256: null }, configuredSampleInputs(applyDefaults({}), '/tmp'));
    const res = await fetch(`${kserve.url}/v2/models/bc/infer`, { method: 'POST', ...encodeRestRequest(SPEC, feeds(rows.slice(0, 2)), { binary: false }) });
    expect(res.status).toBe(200);
    expected = ((await res.json()) as { outputs: { data: number[] }[] }).outputs[0].data;
    expect(expected).toHaveLength(4);
  });

  it('SageMaker: `IMAGE serve` answers /ping and /invocations on port 8080, whatever port the image was built with', async () => {
    const sagemaker = await start({ port: 8080, cmd: ['serve'] }, '/ping');
    const json = await fetch(`${sagemaker.url}/invocations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ instances: rows.slice(0, 2) }),
    });
    expect(json.status).toBe(200);
    expect(((await json.json()) as { predictions: number[][] }).predictions.flat()).toEqual(expected);
    const binary = encodeRestRequest(SPEC, feeds(rows.slice(0, 2)), { binary: true });
    const res = await fetch(`${sagemaker.url}/invocations`, {
      method: 'POST',
      headers: { 'content-type': `${SAGEMAKER_BINARY};json-header-size=${binary.headers['inference-header-content-length']}` },
      body: binary.body,
    });
    const type = res.headers.get('content-type') ?? '';
    expect(type.startsWith(`${SAGEMAKER_BINARY};json-header-size=`)).toBe(true);
    const decoded = decodeRestResponse(new Uint8Array(await res.arrayBuffer()), Number(type.split('=')[1]));
    expect(Array.from(decoded.probabilities.data as Float32Array)).toEqual(expected);
    const csv = await fetch(`${sagemaker.url}/invocations`, {
      method: 'POST',
      headers: { 'content-type': 'text/csv' },
      body: rows
        .slice(0, 2)
        .map((r) => r.join(','))
        .join('\n'),
    });
    expect(((await csv.json()) as { predictions: number[][] }).predictions.flat()).toEqual(expected);
  });

  it("Vertex AI: AIP_HTTP_PORT, AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE; the image's HEALTHCHECK follows the port", async () => {
    const route = '/v1/endpoints/4242/deployedModels/77';
    const vertex = await start(
      { env: ['AIP_HTTP_PORT=7080', `AIP_HEALTH_ROUTE=${route}`, `AIP_PREDICT_ROUTE=${route}:predict`, 'AIP_MODE=PREDICTION'], port: 7080 },
      route,
    );
    const res = await fetch(`${vertex.url}${route}:predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ instances: rows.slice(0, 2), parameters: {} }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { predictions: number[][] }).predictions.flat()).toEqual(expected);
    await waitFor(async () => (await vertex.container.inspect()).State.Health?.Status === 'healthy', 30_000, 'Docker to report the container healthy');
  });
});
