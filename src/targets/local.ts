import type Docker from 'dockerode';
import type { LocalTarget } from '../config/defaults.js';
import { connectDocker, tail } from '../docker/client.js';
import { demultiplex, describeExit, imagePorts, inspectImage } from '../docker/container.js';
import { environmentError, inputError, shownValue } from '../errors.js';
import { waitForReady } from '../http/ready.js';
import { defaultModelName } from '../model/inspect.js';
import { servingOnly, type DeployContext, type DeployOutcome, type FailureReason, type Release, type TargetAdapter, type TargetStatus } from './types.js';
import path from 'node:path';
import { cleanupOnInterrupt } from '../process/interrupt.js';
import { isStale, type LockAttempt, type LockHolder } from './lock.js';
import { rollout, type Check } from './rollout.js';
import { firstToken, type ClientSecurity } from '../protocol/client-security.js';
import { accessOf, SECRET_MOUNT, secretEnv } from './server-secrets.js';
import { readFileSync, statSync } from 'node:fs';
import { MODEL_SHA256_LABEL, RELEASE_VERSION_LABEL } from '../model/labels.js';

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

/** The candidate, tested beside the serving container, and the old one while the two swap places. */
const CANDIDATE = '-next';
const PREVIOUS = '-prev';

const baseUrl = (host: string, port: number | string, tls = false) => `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;

/** The user the server runs as in mlops images (templates/Dockerfile). */
const SERVER_UID = 10001;

/** The readiness routes need no token; over TLS the container's own certificate is not checked on loopback. */
const LOOPBACK: ClientSecurity = { insecure: true };

/**
 * The target's token file and certificates, bind-mounted read-only where the server looks for them, and
 * what mlops' own probes present: the token, the client certificate, and no check of the certificate of
 * the container it just started on loopback. A file replaced by a rename is not seen through a bind of
 * the file: rotate by writing it in place, or deploy again.
 */
function mountedSecrets(target: LocalTarget, projectDir: string): { binds: string[]; env: string[]; security: ClientSecurity } {
  const file = (p: string) => path.resolve(projectDir, p);
  const read = (p: string, field: string, mounted = true) => {
    let bytes: Buffer;
    try {
      bytes = readFileSync(file(p));
    } catch (error) {
      throw inputError(
        `targets' ${field} ${p}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
        'check the path (relative to the config file)',
      );
    }
    // The server runs as uid 10001 (templates/Dockerfile): a bind-mounted file keeps this machine's owner and mode.
    const { mode, uid } = statSync(file(p));
    if (mounted && uid !== SERVER_UID && (mode & 0o004) === 0) {
      throw inputError(
        `targets' ${field} ${p} is not readable by the server in the container (uid ${SERVER_UID}; the file is mode ${(mode & 0o777).toString(8)})`,
        `chown ${SERVER_UID} ${p} (then chmod 0400), or chmod o+r ${p} if this machine has no other users`,
      );
    }
    return bytes;
  };
  const binds: string[] = [];
  const security: ClientSecurity = {};
  if (target.auth) {
    binds.push(`${file(target.auth.tokenFile)}:${SECRET_MOUNT.tokens}:ro`);
    const token = firstToken(read(target.auth.tokenFile, 'auth.tokenFile').toString('utf8'));
    if (!token)
      throw inputError(
        `${target.auth.tokenFile} (targets' auth.tokenFile) holds no token in clear`,
        'the smoke test needs one token in clear besides any sha256: lines',
      );
    security.token = token;
  }
  if (target.tls) {
    read(target.tls.cert, 'tls.cert');
    read(target.tls.key, 'tls.key');
    binds.push(`${file(target.tls.cert)}:${SECRET_MOUNT.cert}:ro`, `${file(target.tls.key)}:${SECRET_MOUNT.key}:ro`);
    if (target.tls.clientCa) binds.push(`${file(target.tls.clientCa)}:${SECRET_MOUNT.clientCa}:ro`);
    security.insecure = true;
    if (target.tls.clientCert && target.tls.clientKey)
      Object.assign(security, { cert: read(target.tls.clientCert, 'tls.clientCert', false), key: read(target.tls.clientKey, 'tls.clientKey', false) });
  }
  const env = Object.entries(secretEnv({ auth: Boolean(target.auth), tls: Boolean(target.tls), clientCa: Boolean(target.tls?.clientCa) })).map(
    ([k, v]) => `${k}=${v}`,
  );
  return { binds, env, security };
}

function releaseOf(info: Docker.ContainerInspectInfo, modelName: string): Release {
  const labels = info.Config.Labels ?? {};
  return {
    version: labels[RELEASE_VERSION_LABEL] ?? 'unknown',
    image: info.Config.Image,
    digest: null,
    modelName,
    modelSha256: labels[MODEL_SHA256_LABEL] || null,
  };
}

type PortBindings = Record<string, { HostIp: string; HostPort: string }[]>;

/** A container of the release for the target: its labels, ports, secrets, restart policy and limits. */
function containerSpec(
  name: string,
  release: Release,
  ports: PortBindings,
  restart: LocalTarget['restart'],
  target: LocalTarget,
  targetName: string,
  secrets: { env: string[]; binds: string[] },
): Docker.ContainerCreateOptions {
  return {
    name,
    Image: release.image,
    Labels: {
      'mlops.target': targetName,
      [RELEASE_VERSION_LABEL]: release.version,
      [MODEL_SHA256_LABEL]: release.modelSha256 ?? '',
      'mlops.deployed-at': new Date().toISOString(),
    },
    ExposedPorts: Object.fromEntries(Object.keys(ports).map((p) => [p, {}])),
    ...(secrets.env.length > 0 ? { Env: secrets.env } : {}),
    HostConfig: {
      PortBindings: ports,
      ...(secrets.binds.length > 0 ? { Binds: secrets.binds } : {}),
      RestartPolicy: { Name: restart },
      ...(memoryBytes(target.memory) ? { Memory: memoryBytes(target.memory) } : {}),
      ...(target.cpus > 0 ? { NanoCpus: Math.round(target.cpus * 1e9) } : {}),
    },
  };
}

/** The candidate started on a port of its own, then ready and smoke-tested there. */
async function startChecked(
  candidate: Docker.Container,
  exposed: string,
  release: Release,
  target: LocalTarget,
  ctx: DeployContext,
  security: ClientSecurity,
): Promise<Check> {
  const started = await candidate.start().then(
    () => undefined,
    (error: Error) => error,
  );
  if (started) return { reason: 'crash-loop', message: `the new container did not start: ${started.message}` };
  const side = (await candidate.inspect()).NetworkSettings.Ports?.[exposed]?.[0]?.HostPort;
  if (!side) return { reason: 'crash-loop', message: `the new container stopped at once: ${describeExit(await candidate.inspect())}` };
  return gate(candidate, baseUrl('127.0.0.1', side, Boolean(target.tls)), release, target.readyTimeoutSeconds, ctx, security);
}

/** Readiness, then the smoke test, of a started container; what failed, or undefined. */
async function gate(
  container: Docker.Container,
  url: string,
  release: Release,
  timeoutSeconds: number,
  ctx: DeployContext,
  security: ClientSecurity,
): Promise<{ reason: FailureReason; message: string } | undefined> {
  try {
    const ready = await waitForReady(`${url}/v2/health/ready`, {
      security,
      timeoutMs: timeoutSeconds * 1000,
      stillWorth: async () => {
        const now = await container.inspect();
        return now.State.Running && !now.State.Restarting && now.RestartCount === 0;
      },
    });
    if (!ready.ready) {
      const state = await container.inspect();
      return !state.State.Running || state.State.Restarting || state.RestartCount > 0
        ? {
            reason: 'crash-loop',
            message: `the new container stopped: ${describeExit(state)}${state.RestartCount ? ` and restarted ${state.RestartCount} times` : ''}`,
          }
        : { reason: 'health-timeout', message: `the new container was not ready after ${timeoutSeconds} s` };
    }
    await ctx.smoke(url, release, {}, security);
    return undefined;
  } catch (error) {
    return { reason: 'smoke-failure', message: `the smoke test failed: ${(error as Error).message}` };
  }
}

/**
 * Runs the model as one named container on the local Docker engine. The candidate runs beside the
 * serving container on a port of its own (127.0.0.1, chosen by the engine) and must become ready and
 * pass the smoke test there while the old one keeps serving; no unchecked version ever answers on
 * the target's port. Then the two swap: the old one is renamed -prev and stopped, the checked version
 * starts under the target's name and port and is checked again, and -prev is removed (or, if that
 * check fails, started again). The target's port is unanswered only between the old one stopping and
 * the new one being ready. A deploy killed at any point leaves -next or -prev, which `recover`
 * resolves: -next was never checked and goes; -prev means the swap had begun.
 */
export const localAdapter: TargetAdapter<LocalTarget> = {
  type: 'local',
  needsRegistry: false,
  output: null,

  // The Docker engine's API has no recording form here, so a dry run says what deploy would do.
  async plan(target, release, ctx) {
    ctx.log(`would run ${release.image} as container ${containerName(target, ctx)} on ${target.host}:${target.port}`);
  },

  async deploy(target, release, previous, ctx): Promise<DeployOutcome> {
    const docker = await connectDocker(ctx.env);
    const name = containerName(target, ctx);
    const info = await inspectImage(docker, release.image);
    const { http: exposed, grpc } = imagePorts(info.Config);
    const published: PortBindings = { [exposed]: [{ HostIp: target.host, HostPort: String(target.port) }] };
    const secrets = mountedSecrets(target, ctx.projectDir);
    const tls = Boolean(target.tls);
    if (grpc && target.grpcPort > 0) published[grpc] = [{ HostIp: target.host, HostPort: String(target.grpcPort) }];
    const spec = (containerName: string, ports: PortBindings, restart: LocalTarget['restart']) =>
      containerSpec(containerName, release, ports, restart, target, ctx.targetName, secrets);
    const oldInfo = await docker
      .getContainer(name)
      .inspect()
      .catch(() => undefined);
    // By id: the old container is renamed during the swap.
    const old = docker.getContainer(oldInfo?.Id ?? name);

    const url = baseUrl(target.host, target.port, tls);
    let candidate: Docker.Container | undefined;
    let serving: Docker.Container | undefined;
    let unregister = () => undefined as void;
    try {
      return await rollout(
        ctx,
        release,
        previous,
        { canary: [100], waitIntervalSeconds: 0 },
        {
          // One container serves the target's port at a time: the swap moves all traffic at once.
          serving: false,
          describe: () => ({ candidate: `${name}${CANDIDATE}` }),
          // 1. The candidate, on a port of its own, while the old container serves.
          async create() {
            candidate = await docker.createContainer(spec(`${name}${CANDIDATE}`, { [exposed]: [{ HostIp: '127.0.0.1', HostPort: '' }] }, 'no'));
            // Ctrl-C mid-deploy resolves what is left as a later deploy would.
            unregister = cleanupOnInterrupt(() => localAdapter.recover(target, ctx, previous));
            return undefined;
          },
          // Readiness and the smoke test on the candidate's own port.
          ready: () => startChecked(candidate!, exposed, release, target, ctx, secrets.security),
          // 2. The swap: the checked version takes the target's name and port, and is checked there again.
          async shift() {
            if (oldInfo) {
              await old.rename({ name: `${name}${PREVIOUS}` });
              if (oldInfo.State.Running) await old.stop({ t: 15 }).catch(() => undefined);
            }
            ctx.checkpoint('old-stopped');
            await candidate!.remove({ force: true });
            serving = await docker.createContainer(spec(name, published, target.restart));
            // Started, or the port is still held: then whatever answers there is not this container.
            const startError = await serving.start().then(
              () => undefined,
              (error: Error) => error,
            );
            if (startError)
              return { reason: 'crash-loop', message: `the checked version did not start on ${target.host}:${target.port}: ${startError.message}` };
            return gate(serving, url, release, target.readyTimeoutSeconds, ctx, secrets.security);
          },
          async promote() {
            if (oldInfo) await old.remove({ force: true });
            return url;
          },
          async fallBack(failure, stage) {
            if (stage !== 'traffic') {
              const logs = tail(await logsOf(candidate!), 20);
              await candidate!.remove({ force: true });
              // The old container never stopped: it is still what serves.
              return { restored: oldInfo?.State.Running ? previous : null, logs };
            }
            const logs = tail(await logsOf(serving!), 20);
            await serving!.remove({ force: true });
            const back = oldInfo ? await putBack(old, name, url, target) : false;
            const restored = oldInfo ? releaseOf(oldInfo, release.modelName) : null;
            if (back && restored) return { restored, logs };
            return { restored: null, logs, message: `${failure.message}${oldInfo ? '; and the previous container did not become ready again' : ''}` };
          },
        },
      );
    } finally {
      unregister();
    }
  },

  lock: (target, ctx, holder) => engineLock(target, ctx, holder),

  async recover(target, ctx) {
    const docker = await connectDocker(ctx.env);
    const name = containerName(target, ctx);
    const inspect = (suffix: string) =>
      docker
        .getContainer(`${name}${suffix}`)
        .inspect()
        .catch(() => undefined);
    const [current, candidate, previousInfo] = [await inspect(''), await inspect(CANDIDATE), await inspect(PREVIOUS)];
    if (!candidate && !previousInfo) return null;
    const url = baseUrl(target.host, target.port, Boolean(target.tls));
    const modelName = ctx.config.model.name;
    if (candidate) await docker.getContainer(`${name}${CANDIDATE}`).remove({ force: true });
    if (previousInfo) {
      // The swap had begun, so the candidate had passed its gates; finish it if the new container answers.
      const ready =
        current?.State.Running && (await waitForReady(`${url}/v2/health/ready`, { timeoutMs: target.readyTimeoutSeconds * 1000, security: LOOPBACK })).ready;
      if (current && ready) {
        await docker.getContainer(`${name}${PREVIOUS}`).remove({ force: true });
        return {
          candidate: { version: releaseOf(current, modelName).version, image: current.Config.Image },
          outcome: 'completed',
          serving: releaseOf(current, modelName),
          message: `an interrupted deploy of ${releaseOf(current, modelName).version} had passed its checks and started; its swap was finished`,
        };
      }
      const unchecked = current ? releaseOf(current, modelName) : candidate ? releaseOf(candidate, modelName) : null;
      if (current) await docker.getContainer(name).remove({ force: true });
      const back = await putBack(docker.getContainer(`${name}${PREVIOUS}`), name, url, target);
      const serving = releaseOf(previousInfo, modelName);
      return {
        candidate: { version: unchecked?.version ?? 'unknown', image: unchecked?.image ?? '' },
        outcome: 'restored',
        serving: back ? serving : null,
        message: `an interrupted deploy was swapping containers; ${serving.version} was put back${back ? '' : ', but did not become ready'}`,
      };
    }
    // Only a candidate: it was never checked. It is gone; the serving container runs again if it was stopped.
    const unchecked = releaseOf(candidate!, modelName);
    let back = Boolean(current?.State.Running);
    if (current && !current.State.Running) {
      await docker
        .getContainer(name)
        .start()
        .catch(() => undefined);
      back = (await waitForReady(`${url}/v2/health/ready`, { timeoutMs: target.readyTimeoutSeconds * 1000, security: LOOPBACK })).ready;
    }
    return {
      candidate: { version: unchecked.version, image: unchecked.image },
      outcome: 'restored',
      serving: current && back ? releaseOf(current, modelName) : null,
      message: `an interrupted deploy left ${unchecked.version} unchecked as ${name}${CANDIDATE}; it was removed${current ? `, and ${releaseOf(current, modelName).version} serves` : ''}`,
    };
  },

  async replicas(target, ctx) {
    const docker = await connectDocker(ctx.env);
    const name = containerName(target, ctx);
    // Only "no such container" means not deployed; any other failure means the engine could not tell.
    const info = await docker
      .getContainer(name)
      .inspect()
      .catch((error: { statusCode?: number; message?: string }) => {
        if (error.statusCode === 404) return undefined;
        throw environmentError(`cannot tell the state of container ${name}: ${error.message ?? shownValue(error)}`, 'check the Docker engine: docker info');
      });
    if (!info?.State.Running) {
      throw environmentError(
        `target '${ctx.targetName}': container ${name} is ${info ? `not running (${info.State.Status})` : 'not there'}`,
        `deploy first: mlops deploy --target ${ctx.targetName}`,
      );
    }
    // The serving container's own environment says whether it speaks TLS (and asks for tokens, which monitor sends).
    const tls = accessOf(info.Config.Env ?? []).tls !== 'off';
    return { urls: [baseUrl(target.host, target.port, tls)], loopbackTls: tls, close: async () => undefined };
  },

  async inferenceLogs(target, ctx, since) {
    const docker = await connectDocker(ctx.env);
    const name = containerName(target, ctx);
    const container = docker.getContainer(name);
    if (!(await container.inspect().catch(() => undefined))) {
      throw environmentError(`target '${ctx.targetName}': container ${name} is not there`, `deploy first: mlops deploy --target ${ctx.targetName}`);
    }
    // Only this container's: a deploy replaces the container, and its log goes with it (a file or HTTP sink keeps history).
    const buffer = await container.logs({
      stdout: true,
      stderr: false,
      follow: false,
      ...(since ? { since: Math.floor(since.getTime() / 1000) } : {}),
    });
    return [{ from: `container ${name}`, text: demultiplex(buffer) }];
  },

  // The platform keeps no record of earlier versions here: what serves now.
  async recordedReleases(target, ctx) {
    return servingOnly(await this.status(target, ctx));
  },

  async status(target, ctx): Promise<TargetStatus> {
    const docker = await connectDocker(ctx.env);
    const name = containerName(target, ctx);
    const info = await docker
      .getContainer(name)
      .inspect()
      .catch(() => undefined);
    const leftovers = await interruptedLeftovers(docker, name);
    if (!info)
      return {
        target: ctx.targetName,
        type: 'local',
        deployed: false,
        version: null,
        image: null,
        health: 'not deployed',
        url: null,
        startedAt: null,
        detail: { container: name, ...leftovers },
      };
    // What serves decides, not the config: its environment says whether it asks for tokens and speaks TLS.
    const access = accessOf(info.Config.Env ?? []);
    const url = baseUrl(target.host, target.port, access.tls !== 'off');
    const ready = info.State.Running ? (await waitForReady(`${url}/v2/health/ready`, { timeoutMs: 1500, security: LOOPBACK })).ready : false;
    return {
      target: ctx.targetName,
      type: 'local',
      deployed: true,
      version: info.Config.Labels?.[RELEASE_VERSION_LABEL] ?? null,
      image: info.Config.Image,
      health: !info.State.Running ? `stopped: ${describeExit(info)}` : ready ? 'ready' : (info.State.Health?.Status ?? 'not ready'),
      url,
      startedAt: info.State.StartedAt,
      detail: {
        container: name,
        restarts: info.RestartCount,
        uptimeSeconds: info.State.Running ? Math.round((Date.now() - Date.parse(info.State.StartedAt)) / 1000) : 0,
        auth: access.auth,
        tls: access.tls,
        ...leftovers,
      },
    };
  },
};

/** Starts the old container again under the target's name; true when it is ready. */
async function putBack(old: Docker.Container, name: string, url: string, target: LocalTarget): Promise<boolean> {
  await old.rename({ name }).catch(() => undefined);
  await old.start().catch(() => undefined);
  return (await waitForReady(`${url}/v2/health/ready`, { timeoutMs: target.readyTimeoutSeconds * 1000, security: LOOPBACK })).ready;
}

/** What an interrupted deploy left, said plainly for `mlops status`; the next deploy or rollback resolves it. */
async function interruptedLeftovers(docker: Docker, name: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [suffix, what] of [
    [CANDIDATE, "an unchecked candidate, never on the target's port"],
    [PREVIOUS, 'the version before, set aside mid-swap'],
  ] as const) {
    const info = await docker
      .getContainer(`${name}${suffix}`)
      .inspect()
      .catch(() => undefined);
    if (info)
      out.interrupted = `${out.interrupted ? `${out.interrupted}; ` : 'a deploy was interrupted: '}${name}${suffix} holds ${info.Config.Labels?.[RELEASE_VERSION_LABEL] ?? info.Config.Image} (${what}, ${info.State.Status}); the next deploy or rollback resolves it`;
  }
  return out;
}

/**
 * The engine enforces the lock: a container named <name>-lock (created, never started) can exist
 * once, whichever project or runner asks. Its labels name the holder.
 */
async function engineLock(target: LocalTarget, ctx: DeployContext, holder: LockHolder): Promise<LockAttempt> {
  const docker = await connectDocker(ctx.env);
  const lockName = `${containerName(target, ctx)}-lock`;
  const labels = {
    'mlops.lock.pid': String(holder.pid),
    'mlops.lock.host': holder.host,
    'mlops.lock.command': holder.command,
    'mlops.lock.since': holder.since,
  };
  for (let tries = 0; tries < 5; tries++) {
    try {
      // Any image will do for a container that never starts: the lock needs only its name.
      const image = (await docker.listImages({ filters: { label: [MODEL_SHA256_LABEL] } }))[0]?.Id;
      if (!image) return { release: async () => undefined };
      const container = await docker.createContainer({ name: lockName, Image: image, Labels: labels, Cmd: ['lock'] });
      return { release: () => container.remove({ force: true }).catch(() => undefined) };
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode !== 409) throw error;
    }
    const info = await docker
      .getContainer(lockName)
      .inspect()
      .catch(() => undefined);
    if (!info) {
      // The name is taken but the container is not inspectable yet (being created or removed this
      // instant): ask again rather than take it for stale, which would remove a live holder's lock.
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    const l = info.Config.Labels ?? {};
    const current: LockHolder = {
      pid: Number(l['mlops.lock.pid'] ?? 0),
      host: l['mlops.lock.host'] ?? 'unknown',
      command: l['mlops.lock.command'] ?? 'another mlops',
      since: l['mlops.lock.since'] ?? '',
    };
    if (!isStale(current)) return { holder: current };
    // By id: a lock taken since the inspect has another id and is not the one removed.
    await docker
      .getContainer(info.Id)
      .remove({ force: true })
      .catch(() => undefined);
  }
  return { holder: { pid: 0, host: 'unknown', command: 'another mlops', since: '' } };
}
