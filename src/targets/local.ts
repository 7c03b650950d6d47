import type Docker from 'dockerode';
import type { LocalTarget } from '../config/defaults.js';
import { connectDocker, tail } from '../docker/client.js';
import { demultiplex, imagePorts, inspectImage } from '../docker/container.js';
import { environmentError } from '../errors.js';
import { waitForReady } from '../http/ready.js';
import { defaultModelName } from '../model/inspect.js';
import type { DeployContext, DeployOutcome, FailureReason, Release, TargetAdapter, TargetStatus } from './types.js';
import path from 'node:path';
import { cleanupOnInterrupt } from '../process/interrupt.js';

export function containerName(target: LocalTarget, ctx: Pick<DeployContext, 'config' | 'projectDir' | 'targetName'>): string {
  const model = ctx.config.model.name || defaultModelName(path.resolve(ctx.projectDir, ctx.config.model.path));
  return target.containerName || `mlops-${model}-${ctx.targetName}`;
}

function memoryBytes(size: string): number | undefined {
  const match = /^(\d+)([bkmg]?)$/i.exec(size);
  if (!match) return undefined;
  const scale = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[match[2].toLowerCase() as '' | 'b' | 'k' | 'm' | 'g'];
  return Number(match[1]) * scale;
}

async function logsOf(container: Docker.Container): Promise<string> {
  const buffer = (await container.logs({ stdout: true, stderr: true, tail: 20 }).catch(() => Buffer.alloc(0))) as Buffer;
  return demultiplex(buffer);
}

interface SwapState {
  name: string;
  next: Docker.Container;
  old: Docker.Container;
  oldInfo: Docker.ContainerInspectInfo | undefined;
  url: string;
}

/** Readiness and smoke test of the new container; then keep it, or put the old one back. */
async function gateAndSwap(target: LocalTarget, release: Release, previous: Release | null, ctx: DeployContext, state: SwapState): Promise<DeployOutcome> {
  const { name, next, old, oldInfo, url } = state;
  let failure: { reason: FailureReason; message: string } | undefined;
  try {
    await next.start();
    const ready = await waitForReady(`${url}/v2/health/ready`, {
      timeoutMs: target.readyTimeoutSeconds * 1000,
      stillWorth: async () => {
        const now = await next.inspect();
        return now.State.Running && !now.State.Restarting && now.RestartCount === 0;
      },
    });
    if (!ready.ready) {
      const state = await next.inspect();
      failure =
        !state.State.Running || state.State.Restarting || state.RestartCount > 0
          ? { reason: 'crash-loop', message: `the new container exited with code ${state.State.ExitCode}${state.RestartCount ? ` and restarted ${state.RestartCount} times` : ''}` }
          : { reason: 'health-timeout', message: `the new container was not ready after ${target.readyTimeoutSeconds} s` };
    } else {
      await ctx.smoke(url, release).catch((error: Error) => {
        failure = { reason: 'smoke-failure', message: `the smoke test failed: ${error.message}` };
      });
    }
  } catch (error) {
    failure = { reason: 'crash-loop', message: `the new container did not start: ${(error as Error).message}` };
  }

  if (!failure) {
    if (oldInfo) await old.remove({ force: true });
    await next.rename({ name });
    return { status: 'deployed', release, url, previous };
  }
  const logs = tail(await logsOf(next), 20);
  await next.remove({ force: true });
  if (oldInfo) {
    await old.start();
    const back = await waitForReady(`${url}/v2/health/ready`, { timeoutMs: target.readyTimeoutSeconds * 1000 });
    const restored: Release = { version: oldInfo.Config.Labels?.['mlops.release.version'] ?? previous?.version ?? 'unknown', image: oldInfo.Config.Image, digest: null, modelName: release.modelName, modelSha256: oldInfo.Config.Labels?.['mlops.model.sha256'] ?? null };
    if (back.ready) return { status: 'rolled-back', release, ...failure, logs, restored };
    return { status: 'failed', release, ...failure, message: `${failure.message}; and the previous container did not become ready again`, logs, restored: null };
  }
  return { status: 'failed', release, ...failure, logs, restored: null };
}

/**
 * Runs the model as one named container on the local Docker engine. A new
 * version replaces the old one on the same host port: the old container is
 * stopped (kept), the new one must become ready and pass the smoke test, and
 * only then is the old one removed; otherwise the new one goes and the old one
 * starts again.
 */
export const localAdapter: TargetAdapter<LocalTarget> = {
  type: 'local',
  needsRegistry: false,
  output: null,

  async deploy(target, release, previous, ctx): Promise<DeployOutcome> {
    if (ctx.dryRun) {
      ctx.log(`would run ${release.image} as container ${containerName(target, ctx)} on ${target.host}:${target.port}`);
      return { status: 'planned', release };
    }
    const docker = await connectDocker(ctx.env);
    const name = containerName(target, ctx);
    const info = await inspectImage(docker, release.image);
    const { http: exposed, grpc } = imagePorts(info.Config);
    const published: Record<string, { HostIp: string; HostPort: string }[]> = { [exposed]: [{ HostIp: target.host, HostPort: String(target.port) }] };
    if (grpc && target.grpcPort > 0) published[grpc] = [{ HostIp: target.host, HostPort: String(target.grpcPort) }];
    const old = docker.getContainer(name);
    const oldInfo = await old.inspect().catch(() => undefined);
    if (oldInfo?.State.Running) await old.stop({ t: 15 });
    // A candidate left by an interrupted deploy would block the name.
    await docker.getContainer(`${name}-next`).remove({ force: true }).catch(() => undefined);
    const next = await docker.createContainer({
      name: `${name}-next`,
      Image: release.image,
      Labels: { 'mlops.target': ctx.targetName, 'mlops.release.version': release.version, 'mlops.model.sha256': release.modelSha256 ?? '', 'mlops.deployed-at': new Date().toISOString() },
      ExposedPorts: Object.fromEntries(Object.keys(published).map((p) => [p, {}])),
      HostConfig: {
        PortBindings: published,
        RestartPolicy: { Name: target.restart },
        ...(memoryBytes(target.memory) ? { Memory: memoryBytes(target.memory) } : {}),
        ...(target.cpus > 0 ? { NanoCpus: Math.round(target.cpus * 1e9) } : {}),
      },
    });
    const url = `http://${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
    // Ctrl-C mid-deploy must not leave the target empty: the old container comes back.
    const unregister = cleanupOnInterrupt(async () => {
      await next.remove({ force: true }).catch(() => undefined);
      if (oldInfo) await old.start().catch(() => undefined);
    });
    try {
      return await gateAndSwap(target, release, previous, ctx, { name, next, old, oldInfo, url });
    } finally {
      unregister();
    }
  },

  async replicas(target, ctx) {
    const docker = await connectDocker(ctx.env);
    const name = containerName(target, ctx);
    const info = await docker.getContainer(name).inspect().catch(() => undefined);
    if (!info?.State.Running) {
      throw environmentError(`target '${ctx.targetName}': container ${name} is ${info ? `not running (${info.State.Status})` : 'not there'}`, `deploy first: mlops deploy --target ${ctx.targetName}`);
    }
    return { urls: [`http://${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`], close: async () => undefined };
  },

  async inferenceLogs(target, ctx, since) {
    const docker = await connectDocker(ctx.env);
    const name = containerName(target, ctx);
    const container = docker.getContainer(name);
    if (!(await container.inspect().catch(() => undefined))) {
      throw environmentError(`target '${ctx.targetName}': container ${name} is not there`, `deploy first: mlops deploy --target ${ctx.targetName}`);
    }
    // Only this container's: a deploy replaces the container, and its log goes with it (a file or HTTP sink keeps history).
    const buffer = (await container.logs({ stdout: true, stderr: false, follow: false, ...(since ? { since: Math.floor(since.getTime() / 1000) } : {}) })) as Buffer;
    return [{ from: `container ${name}`, text: demultiplex(buffer) }];
  },

  async status(target, ctx): Promise<TargetStatus> {
    const docker = await connectDocker(ctx.env);
    const name = containerName(target, ctx);
    const info = await docker.getContainer(name).inspect().catch(() => undefined);
    const url = `http://${target.host}:${target.port}`;
    if (!info) return { target: ctx.targetName, type: 'local', deployed: false, version: null, image: null, health: 'not deployed', url: null, startedAt: null, detail: { container: name } };
    const ready = info.State.Running ? (await waitForReady(`${url}/v2/health/ready`, { timeoutMs: 1500 })).ready : false;
    return {
      target: ctx.targetName,
      type: 'local',
      deployed: true,
      version: info.Config.Labels?.['mlops.release.version'] ?? null,
      image: info.Config.Image,
      health: !info.State.Running ? `stopped (${info.State.Status})` : ready ? 'ready' : (info.State.Health?.Status ?? 'not ready'),
      url,
      startedAt: info.State.StartedAt,
      detail: { container: name, restarts: info.RestartCount, uptimeSeconds: info.State.Running ? Math.round((Date.now() - Date.parse(info.State.StartedAt)) / 1000) : 0 },
    };
  },
};
