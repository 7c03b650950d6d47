import Docker from 'dockerode';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dockerEndpoint } from '../../src/docker/client.js';
import { fixture } from '../helpers.js';
import { ensureLocalBaseImage } from '../../scripts/local-base.js';
import { freePort } from './registry-process.js';

export interface Engine {
  ok: boolean;
  reason: string;
  docker: Docker;
}

/**
 * Probes the Docker engine once. In CI (MLOPS_REQUIRE_DOCKER=1) a missing
 * engine fails the run instead of skipping the end-to-end tests.
 */
export async function probeEngine(): Promise<Engine> {
  const { docker, description } = dockerEndpoint(process.env);
  try {
    await docker.ping();
    return { ok: true, reason: '', docker };
  } catch (error) {
    const reason = `no Docker engine at ${description} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
    if (process.env.MLOPS_REQUIRE_DOCKER === '1') throw new Error(`${reason}, and MLOPS_REQUIRE_DOCKER=1 requires one`, { cause: error });
    process.stderr.write(`\nSKIPPED end-to-end Docker tests: ${reason}. Start dockerd (see .ci/run) to run them.\n`);
    return { ok: false, reason, docker };
  }
}

export { ensureLocalBaseImage, LOCAL_BASE_IMAGE } from '../../scripts/local-base.js';

const RUN = randomBytes(4).toString('hex');
/** A container or repository name unique to this test run, so clean-up can never touch a user's own. */
export const uniqueName = (what: string) => `mlops-e2e-${what}-${RUN}`;

export interface RunningContainer {
  container: Docker.Container;
  url: string;
  /** 127.0.0.1:<port> published for the image's gRPC port 8081. */
  grpcAddress: string;
  remove(): Promise<void>;
}

/** Runs an image with its port published on 127.0.0.1 (a free port chosen by the engine). */
export async function runImage(
  docker: Docker,
  image: string,
  options: { env?: string[]; port?: number; cmd?: string[]; hostConfig?: Docker.HostConfig } = {},
): Promise<RunningContainer> {
  const port = `${options.port ?? 8080}/tcp`;
  const grpcPort = '8081/tcp';
  const ports = [port, grpcPort];
  const container = await docker.createContainer({
    Image: image,
    Env: options.env,
    ...(options.cmd ? { Cmd: options.cmd } : {}),
    ExposedPorts: Object.fromEntries(ports.map((p) => [p, {}])),
    HostConfig: { ...options.hostConfig, PortBindings: Object.fromEntries(ports.map((p) => [p, [{ HostIp: '127.0.0.1', HostPort: '' }]])) },
  });
  await container.start();
  const info = await container.inspect();
  const hostPort = info.NetworkSettings.Ports[port]?.[0]?.HostPort;
  return {
    container,
    url: `http://127.0.0.1:${hostPort}`,
    grpcAddress: `127.0.0.1:${info.NetworkSettings.Ports[grpcPort]?.[0]?.HostPort}`,
    remove: () => container.remove({ force: true }).catch(() => undefined),
  };
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    if (await check().catch(() => false)) return performance.now() - started;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * A project folder for the breast cancer fixture (model and holdout copied in),
 * a free port for its local target, and the test base image; `config(base, port)`
 * writes mlops.config.json.
 */
export async function breastCancerProject(
  docker: Docker,
  prefix: string,
  config: (base: string, port: number) => object,
): Promise<{ dir: string; port: number; url: string }> {
  const base = await ensureLocalBaseImage(docker);
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  const port = await freePort();
  await copyFile(fixture('breast_cancer', 'model.onnx'), path.join(dir, 'model.onnx'));
  await copyFile(fixture('breast_cancer', 'holdout.csv'), path.join(dir, 'holdout.csv'));
  await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify(config(base, port)));
  return { dir, port, url: `http://127.0.0.1:${port}` };
}
