/** What the kubectl-driven adapters (kubernetes, kserve) share: pods, port-forwards and logs. */
import net from 'node:net';
import { environmentError } from '../errors.js';
import { isStale, type LockAttempt, type LockHolder } from './lock.js';
import type { DeployContext, LogText, Replicas } from './types.js';

export const kubectlBase = (target: { context: string; namespace: string }) => [
  ...(target.context ? ['--context', target.context] : []),
  '--namespace',
  target.namespace,
];

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Until a port-forward accepts connections (kubectl prints "Forwarding from" a moment before). */
async function untilListening(port: number, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => (socket.destroy(), resolve(true)));
      socket.on('error', () => resolve(false));
    });
    if (open) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

export interface PodList {
  items?: {
    metadata?: { name?: string; labels?: Record<string, string> };
    spec?: { containers?: { name?: string; image?: string }[] };
    status?: { phase?: string; containerStatuses?: { name?: string; restartCount?: number; ready?: boolean; state?: { waiting?: { reason?: string } } }[] };
  }[];
}

export async function listPods(ctx: DeployContext, base: string[], selector: string, running = false): Promise<PodList> {
  const listed = await ctx.exec.run('kubectl', [
    ...base,
    'get',
    'pods',
    '-l',
    selector,
    ...(running ? ['--field-selector=status.phase=Running'] : []),
    '-o',
    'json',
  ]);
  return JSON.parse(listed.stdout || '{}') as PodList;
}

export const podNames = (pods: PodList) => (pods.items ?? []).map((p) => p.metadata?.name).filter((n): n is string => Boolean(n));

/** A port-forward to each pod: a Service would spread requests over them, and each pod counts its own rows. */
export async function forwardToPods(ctx: DeployContext, base: string[], pods: string[], containerPort: number, tls = false): Promise<Replicas> {
  const forwards: { stop: () => void; output: () => string }[] = [];
  const close = async () => forwards.forEach((f) => f.stop());
  const urls: string[] = [];
  try {
    for (const pod of pods) {
      const port = await freePort();
      const forward = await ctx.exec.background('kubectl', [...base, 'port-forward', `pod/${pod}`, `${port}:${containerPort}`]);
      forwards.push(forward);
      if (!(await untilListening(port, 15_000))) {
        throw environmentError(
          `kubectl port-forward to pod ${pod} did not start listening in 15 s`,
          undefined,
          forward.output().trim().split('\n').slice(-5).join('\n'),
        );
      }
      urls.push(`${tls ? 'https' : 'http'}://127.0.0.1:${port}`);
    }
  } catch (error) {
    await close();
    throw error;
  }
  return { urls, close, loopbackTls: tls };
}

/** Each pod's stdout from one container; a pod whose logs cannot be read is named, not fatal. */
export async function podLogs(ctx: DeployContext, base: string[], pods: string[], container: string, since: Date | undefined): Promise<LogText[]> {
  const out: LogText[] = [];
  for (const pod of pods) {
    // Deleted pods take their logs with them: a file or HTTP sink keeps history across rollouts.
    const result = await ctx.exec.run('kubectl', [...base, 'logs', `pod/${pod}`, '-c', container, ...(since ? [`--since-time=${since.toISOString()}`] : [])], {
      allowFailure: true,
    });
    if (result.exitCode !== 0) ctx.log(`warning: kubectl logs pod/${pod} failed: ${result.stderr.trim().split('\n').at(-1)}`);
    else out.push({ from: `pod ${pod}`, text: result.stdout });
  }
  return out;
}

interface LeaseState {
  metadata?: { resourceVersion?: string };
  spec?: { holderIdentity?: string; leaseDurationSeconds?: number; renewTime?: string; acquireTime?: string };
}

/**
 * The target's lock as a coordination.k8s.io Lease, mlops-deploy-<name>: `kubectl create` succeeds
 * once, the API server refusing the second. Its holderIdentity names the holder; a Lease past its
 * duration, or whose holder's process on this host has ended, is taken over with `kubectl replace`
 * at the resourceVersion read, so two takers cannot both win.
 */
export async function leaseLock(
  ctx: DeployContext,
  base: string[],
  name: string,
  namespace: string,
  holder: LockHolder,
  durationSeconds: number,
): Promise<LockAttempt> {
  const lease = `mlops-deploy-${name}`.slice(0, 63);
  const manifest = (resourceVersion?: string) =>
    JSON.stringify({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: lease, namespace, labels: { 'app.kubernetes.io/managed-by': 'mlops' }, ...(resourceVersion ? { resourceVersion } : {}) },
      spec: {
        holderIdentity: JSON.stringify(holder),
        leaseDurationSeconds: durationSeconds,
        acquireTime: toMicroTime(holder.since),
        renewTime: toMicroTime(new Date().toISOString()),
      },
    });
  const release = async () => void (await ctx.exec.run('kubectl', [...base, 'delete', 'lease', lease, '--ignore-not-found'], { allowFailure: true }));
  const created = await ctx.exec.run('kubectl', [...base, 'create', '-f', '-'], { input: manifest(), allowFailure: true });
  if (created.exitCode === 0) return { release };
  if (!/AlreadyExists|already exists/.test(created.stderr))
    throw environmentError(
      `kubectl could not create the deploy Lease ${lease}: ${created.stderr.trim().split('\n').at(-1) ?? ''}`,
      'the deploying identity needs create, get, update and delete on leases.coordination.k8s.io',
    );
  const got = await ctx.exec.run('kubectl', [...base, 'get', 'lease', lease, '-o', 'json'], { allowFailure: true });
  const state = JSON.parse(got.stdout || '{}') as LeaseState;
  let current: LockHolder;
  try {
    current = JSON.parse(state.spec?.holderIdentity ?? '') as LockHolder;
  } catch {
    current = { pid: 0, host: 'unknown', command: state.spec?.holderIdentity ?? 'another deployer', since: state.spec?.acquireTime ?? '' };
  }
  const renewed = Date.parse(state.spec?.renewTime ?? '');
  const expired = Number.isFinite(renewed) && renewed + (state.spec?.leaseDurationSeconds ?? 0) * 1000 < Date.now();
  if (!expired && !isStale(current)) return { holder: current };
  const replaced = await ctx.exec.run('kubectl', [...base, 'replace', '-f', '-'], { input: manifest(state.metadata?.resourceVersion), allowFailure: true });
  return replaced.exitCode === 0 ? { release } : { holder: current };
}

/** Lease times are MicroTime: RFC 3339 with microseconds. */
const toMicroTime = (iso: string) => iso.replace(/\.(\d{3})Z$/, '.$1000Z');
