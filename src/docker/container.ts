import type Docker from 'dockerode';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tar from 'tar-fs';
import { environmentError, inputError } from '../errors.js';
import { waitForReady } from '../http/ready.js';
import { cleanupOnInterrupt } from '../process/interrupt.js';
import { tail } from './client.js';

export interface ModelContainer {
  id: string;
  image: string;
  /** The image's id (sha256:...), whatever reference named it. */
  imageId: string;
  /** http://127.0.0.1:<published port> */
  url: string;
  /** 127.0.0.1:<published port> of the gRPC endpoint, when the image serves one. */
  grpcAddress?: string;
  labels: Record<string, string>;
  logs(lines?: number): Promise<string>;
  remove(): Promise<void>;
}

/** The image's config, or exit 2 when there is no such image. */
export async function inspectImage(docker: Docker, image: string) {
  try {
    return await docker.getImage(image).inspect();
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) {
      throw inputError(`image not found: ${image}`, 'run `mlops build`, or pass an image that exists locally (`docker images`)');
    }
    throw environmentError(`cannot inspect image ${image}: ${(error as Error).message}`);
  }
}

/** The image's REST and gRPC ports (`port/tcp`), from its PORT and GRPC_PORT; images from before gRPC have PORT only. */
export function imagePorts(config: { Env?: string[]; ExposedPorts?: Record<string, unknown> }): { http: string; grpc?: string } {
  const env = new Map((config.Env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  const http = env.get('PORT') ? `${env.get('PORT')}/tcp` : (Object.keys(config.ExposedPorts ?? {}).find((p) => p.endsWith('/tcp')) ?? '8080/tcp');
  const grpc = env.get('GRPC_PORT') && env.get('GRPC_PORT') !== '0' ? `${env.get('GRPC_PORT')}/tcp` : undefined;
  return { http, grpc };
}

/**
 * Runs a model image with its port published on 127.0.0.1 (a free port the
 * engine picks) and waits until it answers ready. The container is removed on
 * failure, on remove(), and on Ctrl-C.
 */
export async function startModelContainer(
  docker: Docker,
  image: string,
  options: { env?: string[]; readyTimeoutMs?: number; purpose: string },
): Promise<ModelContainer> {
  const info = await inspectImage(docker, image);
  const { http: port, grpc: grpcPort } = imagePorts(info.Config);
  const ports = [port, ...(grpcPort ? [grpcPort] : [])];
  // The cleanup is registered before the container exists: a Ctrl-C that arrives while the
  // engine is creating it still waits for the creation and removes what was made.
  let creation: Promise<Docker.Container> | undefined;
  let removal: Promise<void> | undefined;
  const remove = () =>
    (removal ??= (async () => {
      unregister();
      const made = await creation?.catch(() => undefined);
      await made?.remove({ force: true }).catch(() => undefined);
    })());
  const unregister = cleanupOnInterrupt(remove);
  creation = docker.createContainer({
    Image: image,
    Env: options.env,
    Labels: { 'mlops.purpose': options.purpose },
    ExposedPorts: Object.fromEntries(ports.map((p) => [p, {}])),
    HostConfig: { PortBindings: Object.fromEntries(ports.map((p) => [p, [{ HostIp: '127.0.0.1', HostPort: '' }]])) },
  });
  const container = await creation.catch(async (error) => {
    unregister();
    throw environmentError(`cannot create a container from ${image}: ${(error as Error).message}`);
  });
  const logs = async (lines = 20) => {
    const buffer = (await container.logs({ stdout: true, stderr: true, tail: lines }).catch(() => Buffer.alloc(0))) as Buffer;
    return demultiplex(buffer);
  };
  try {
    await container.start();
    const bound = (await container.inspect()).NetworkSettings.Ports;
    const url = `http://127.0.0.1:${bound[port]?.[0]?.HostPort}`;
    const grpcAddress = grpcPort && bound[grpcPort]?.[0]?.HostPort ? `127.0.0.1:${bound[grpcPort][0].HostPort}` : undefined;
    const ready = await waitForReady(`${url}/v2/health/ready`, {
      timeoutMs: options.readyTimeoutMs ?? 30_000,
      stillWorth: async () => (await container.inspect()).State.Running,
    });
    if (!ready.ready) {
      const state = (await container.inspect()).State;
      const why = state.Running ? `not ready after ${Math.round(ready.ms / 1000)} s` : describeExit(await container.inspect());
      throw environmentError(`the container from ${image} ${why}`, 'its log is above; fix the image or its model', tail(await logs()));
    }
    return { id: container.id, image, imageId: info.Id, url, grpcAddress, labels: info.Config.Labels ?? {}, logs, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

/** Docker's log stream without its 8-byte frame headers. */
export function demultiplex(buffer: Buffer): string {
  const parts: string[] = [];
  let offset = 0;
  while (offset + 8 <= buffer.length && (buffer[offset] === 1 || buffer[offset] === 2) && buffer[offset + 1] === 0) {
    const size = buffer.readUInt32BE(offset + 4);
    parts.push(buffer.toString('utf8', offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  return offset === 0 ? buffer.toString('utf8') : parts.join('');
}

/** Copies one file out of a container into a new temporary folder. */
export async function copyFromContainer(docker: Docker, id: string, file: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mlops-extract-'));
  const archive = await docker.getContainer(id).getArchive({ path: file });
  await new Promise<void>((resolve, reject) => {
    const extract = tar.extract(dir);
    extract.on('finish', resolve);
    extract.on('error', reject);
    archive.on('error', reject);
    archive.pipe(extract);
  });
  return path.join(dir, path.basename(file));
}

/**
 * How a container ended, from the engine's own record: "killed: out of memory (limit 256 MiB)" for
 * the kernel's OOM killer, which a bare exit code (137, or 0 once a restart policy has moved on) hides.
 */
export function describeExit(info: Pick<Docker.ContainerInspectInfo, 'State' | 'HostConfig'>): string {
  const { State: state, HostConfig: host } = info;
  if (state.OOMKilled) {
    const limit = host?.Memory ? ` (limit ${Math.round(host.Memory / 2 ** 20)} MiB)` : '';
    return `killed: out of memory${limit}`;
  }
  if (state.ExitCode === 137) return 'killed (SIGKILL, exit code 137)';
  return `exited with code ${state.ExitCode}${state.Error ? `: ${state.Error}` : ''}`;
}
