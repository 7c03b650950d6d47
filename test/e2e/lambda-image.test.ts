/**
 * The image run as AWS Lambda runs it: AWS_LAMBDA_RUNTIME_API set, a read-only root filesystem, no
 * published port. It answers recorded Function URL events through a local stand-in of the Runtime
 * API exactly as the same image answers over REST.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { holdoutRows, runCli } from '../helpers.js';
import { functionUrlEvent, runtimeApi } from '../lambda-runtime-api.js';
import { breastCancerProject, probeEngine, runImage, uniqueName, waitFor } from './docker.js';

const engine = await probeEngine();
const REPOSITORY = uniqueName('lambda');

describe.skipIf(!engine.ok)(`the image in AWS Lambda mode${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let imageId: string;
  beforeAll(async () => {
    const { dir } = await breastCancerProject(docker, 'mlops-e2e-lambda-', (base) => ({
      model: { path: 'model.onnx', name: 'bc' },
      image: { repository: REPOSITORY, base },
    }));
    const built = await runCli(['build', '--json'], { cwd: dir });
    expect(built.code, built.stderr).toBe(0);
    imageId = JSON.parse(built.stdout).imageId;
  });
  afterAll(async () => {
    for (const image of await docker.listImages({ filters: { reference: [REPOSITORY] } }))
      await docker
        .getImage(image.Id)
        .remove({ force: true })
        .catch(() => undefined);
  });

  it('answers Function URL events (JSON and binary tensors, a bad body) as the REST server does, byte for byte', async () => {
    const rows = holdoutRows().rows.slice(0, 4);
    const json = Buffer.from(JSON.stringify({ id: 'l1', inputs: [{ name: 'features', datatype: 'FP32', shape: [4, 30], data: rows.flat() }] }));
    const head = Buffer.from(
      JSON.stringify({
        id: 'l2',
        inputs: [{ name: 'features', datatype: 'FP32', shape: [4, 30], parameters: { binary_data_size: 480 } }],
        outputs: [{ name: 'probabilities', parameters: { binary_data: true } }],
      }),
    );
    const binary = Buffer.concat([head, Buffer.from(Float32Array.from(rows.flat()).buffer)]);
    const cases: { headers: Record<string, string>; body: Buffer; base64: boolean }[] = [
      { headers: { 'content-type': 'application/json' }, body: json, base64: false },
      { headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length) }, body: binary, base64: true },
      { headers: { 'content-type': 'application/json' }, body: Buffer.from('[1, 2'), base64: false },
    ];
    const api = runtimeApi(cases.map((c) => functionUrlEvent('POST', '/v2/models/bc/infer', c.headers, c.body, c.base64)));
    await new Promise<void>((r) => api.server.listen(0, '127.0.0.1', r));
    // Host networking: the container reaches the stand-in on this machine's loopback, as Lambda's runtime is local to the function.
    const lambda = await docker.createContainer({
      Image: imageId,
      Env: [`AWS_LAMBDA_RUNTIME_API=127.0.0.1:${(api.server.address() as AddressInfo).port}`, 'PORT=0'],
      HostConfig: { NetworkMode: 'host', ReadonlyRootfs: true, CapDrop: ['ALL'] },
    });
    const rest = await runImage(docker, imageId);
    try {
      await lambda.start();
      await waitFor(async () => api.posted.length >= cases.length, 20_000, 'the three invocations to be answered');
      await waitFor(async () => (await fetch(`${rest.url}/v2/health/ready`)).ok, 30_000, 'the REST server');
      for (const [i, c] of cases.entries()) {
        const res = await fetch(`${rest.url}/v2/models/bc/infer`, { method: 'POST', headers: c.headers, body: c.body });
        const posted = api.posted[i];
        expect(posted.kind).toBe('response');
        expect(posted.body.statusCode).toBe(res.status);
        const body = posted.body.isBase64Encoded ? Buffer.from(posted.body.body as string, 'base64') : Buffer.from(posted.body.body as string);
        expect(body).toEqual(Buffer.from(await res.arrayBuffer()));
      }
      expect(api.posted.map((p) => p.body.statusCode)).toEqual([200, 200, 400]);
      // Only the Runtime API loop talks to the server: it listens on loopback, though the image sets HOST=0.0.0.0.
      const logs = (await lambda.logs({ stdout: true, stderr: true, follow: false })).toString('utf8');
      expect(logs).toMatch(/serving model 'bc' on http:\/\/127\.0\.0\.1:\d+ /);
    } finally {
      await lambda.remove({ force: true }).catch(() => undefined);
      await rest.remove();
      api.server.closeAllConnections();
      await new Promise((r) => api.server.close(r));
    }
  });
});
