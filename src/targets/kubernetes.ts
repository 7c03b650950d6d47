import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { stringify } from 'yaml';
import type { KubernetesTarget } from '../config/defaults.js';
import { environmentError } from '../errors.js';
import { defaultModelName } from '../model/inspect.js';
import { labelValue, manifestsYaml, renderManifests } from './kubernetes-manifests.js';
import type { DeployContext, DeployOutcome, FailureReason, TargetAdapter, TargetStatus, LogText } from './types.js';

export function resourceName(target: KubernetesTarget, ctx: Pick<DeployContext, 'config' | 'projectDir'>): string {
  return target.name || labelValue(ctx.config.model.name || defaultModelName(path.resolve(ctx.projectDir, ctx.config.model.path))).toLowerCase().replace(/[._]/g, '-');
}

const kubectlBase = (target: KubernetesTarget) => [...(target.context ? ['--context', target.context] : []), '--namespace', target.namespace];

function freePort(): Promise<number> {
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

interface PodList {
  items?: {
    metadata?: { name?: string }; status?: { containerStatuses?: { restartCount?: number; state?: { waiting?: { reason?: string } } }[] } }[];
}

/** Why a rollout did not finish: pods restarting means a crash loop, otherwise they never became ready. */
function diagnose(pods: PodList): FailureReason {
  const statuses = (pods.items ?? []).flatMap((p) => p.status?.containerStatuses ?? []);
  const crashing = statuses.some((s) => (s.restartCount ?? 0) > 0 || ['CrashLoopBackOff', 'Error'].includes(s.state?.waiting?.reason ?? ''));
  return crashing ? 'crash-loop' : 'health-timeout';
}

/**
 * kubectl through the exec seam: apply the manifests, wait for the rollout,
 * smoke-test through a port-forward, and on any failure `rollout undo`.
 */
export const kubernetesAdapter: TargetAdapter<KubernetesTarget> = {
  type: 'kubernetes',
  needsRegistry: true,

  async deploy(target, release, previous, ctx): Promise<DeployOutcome> {
    const name = resourceName(target, ctx);
    const manifests = renderManifests(name, target, release, ctx.config);
    const yaml = manifestsYaml(manifests);
    if (ctx.outputDir) {
      await mkdir(ctx.outputDir, { recursive: true });
      const files: string[] = [];
      for (const [kind, manifest] of Object.entries(manifests)) {
        const file = path.join(ctx.outputDir, `${name}-${kind}.yaml`);
        await writeFile(file, stringify(manifest.toJSON()));
        files.push(file);
      }
      return { status: 'written', release, files };
    }
    const base = kubectlBase(target);
    const { exec } = ctx;
    await exec.run('kubectl', [...base, 'apply', '-f', '-'], { input: yaml });
    const rollout = await exec.run('kubectl', [...base, 'rollout', 'status', `deployment/${name}`, `--timeout=${target.rolloutTimeoutSeconds}s`], {
      allowFailure: true,
      timeoutMs: (target.rolloutTimeoutSeconds + 30) * 1000,
    });
    let failure: { reason: FailureReason; message: string } | undefined;
    if (rollout.exitCode !== 0) {
      const pods = await exec.run('kubectl', [...base, 'get', 'pods', '-l', `app.kubernetes.io/name=${name},mlops.version=${labelValue(release.version)}`, '-o', 'json'], { allowFailure: true });
      const reason = diagnose(JSON.parse(pods.stdout || '{}') as PodList);
      failure = { reason, message: `the rollout did not finish in ${target.rolloutTimeoutSeconds} s (${reason === 'crash-loop' ? 'pods are crashing' : 'pods never became ready'}): ${rollout.stderr.trim().split('\n').at(-1) ?? ''}` };
    } else {
      const port = await freePort();
      const forward = await exec.background('kubectl', [...base, 'port-forward', `service/${name}`, `${port}:${target.port}`]);
      try {
        if (!exec.dryRun) await ctx.smoke(`http://127.0.0.1:${port}`, release);
      } catch (error) {
        failure = { reason: 'smoke-failure', message: `the smoke test failed: ${(error as Error).message}` };
      } finally {
        forward.stop();
      }
    }
    if (!failure) return exec.dryRun ? { status: 'planned', release } : { status: 'deployed', release, url: null, previous };

    const logs = (await exec.run('kubectl', [...base, 'logs', '-l', `app.kubernetes.io/name=${name},mlops.version=${labelValue(release.version)}`, '--tail=20', '--all-containers', '--prefix'], { allowFailure: true })).stdout;
    if (!previous) return { status: 'failed', release, ...failure, logs, restored: null };
    await exec.run('kubectl', [...base, 'rollout', 'undo', `deployment/${name}`]);
    const back = await exec.run('kubectl', [...base, 'rollout', 'status', `deployment/${name}`, `--timeout=${target.rolloutTimeoutSeconds}s`], { allowFailure: true });
    if (back.exitCode !== 0) return { status: 'failed', release, ...failure, message: `${failure.message}; and the undo did not finish either`, logs, restored: null };
    return { status: 'rolled-back', release, ...failure, logs, restored: previous };
  },

  /** A port-forward to each running pod: the Service would spread requests over them, and each pod counts its own rows. */
  async replicas(target, ctx) {
    const name = resourceName(target, ctx);
    const base = kubectlBase(target);
    const listed = await ctx.exec.run('kubectl', [...base, 'get', 'pods', '-l', `app.kubernetes.io/name=${name}`, '--field-selector=status.phase=Running', '-o', 'json']);
    const pods = ((JSON.parse(listed.stdout || '{}') as PodList).items ?? []).map((p) => p.metadata?.name).filter((n): n is string => Boolean(n));
    if (pods.length === 0) {
      throw environmentError(`target '${ctx.targetName}': no running pods of ${name} in namespace ${target.namespace}`, `deploy first: mlops deploy --target ${ctx.targetName}`);
    }
    const forwards: { stop: () => void; output: () => string }[] = [];
    const close = async () => forwards.forEach((f) => f.stop());
    const urls: string[] = [];
    try {
      for (const pod of pods) {
        const port = await freePort();
        const forward = await ctx.exec.background('kubectl', [...base, 'port-forward', `pod/${pod}`, `${port}:${ctx.config.image.port}`]);
        forwards.push(forward);
        if (!(await untilListening(port, 15_000))) {
          throw environmentError(`kubectl port-forward to pod ${pod} did not start listening in 15 s`, undefined, forward.output().trim().split('\n').slice(-5).join('\n'));
        }
        urls.push(`http://127.0.0.1:${port}`);
      }
    } catch (error) {
      await close();
      throw error;
    }
    return { urls, close };
  },

  async inferenceLogs(target, ctx, since) {
    const name = resourceName(target, ctx);
    const base = kubectlBase(target);
    const listed = await ctx.exec.run('kubectl', [...base, 'get', 'pods', '-l', `app.kubernetes.io/name=${name}`, '-o', 'json']);
    const pods = ((JSON.parse(listed.stdout || '{}') as PodList).items ?? []).map((p) => p.metadata?.name).filter((n): n is string => Boolean(n));
    if (pods.length === 0) throw environmentError(`target '${ctx.targetName}': no pods of ${name} in namespace ${target.namespace}`, `deploy first: mlops deploy --target ${ctx.targetName}`);
    const out: LogText[] = [];
    for (const pod of pods) {
      // Deleted pods take their logs with them: a file or HTTP sink keeps history across rollouts.
      const result = await ctx.exec.run('kubectl', [...base, 'logs', `pod/${pod}`, '-c', 'model', ...(since ? [`--since-time=${since.toISOString()}`] : [])], { allowFailure: true });
      if (result.exitCode !== 0) ctx.log(`warning: kubectl logs pod/${pod} failed: ${result.stderr.trim().split('\n').at(-1)}`);
      else out.push({ from: `pod ${pod}`, text: result.stdout });
    }
    return out;
  },

  async status(target, ctx): Promise<TargetStatus> {
    const name = resourceName(target, ctx);
    const result = await ctx.exec.run('kubectl', [...kubectlBase(target), 'get', 'deployment', name, '-o', 'json'], { allowFailure: true });
    if (result.exitCode !== 0) {
      return { target: ctx.targetName, type: 'kubernetes', deployed: false, version: null, image: null, health: 'not deployed', url: null, startedAt: null, detail: { error: result.stderr.trim() } };
    }
    const deployment = JSON.parse(result.stdout) as {
      metadata?: { labels?: Record<string, string>; creationTimestamp?: string; annotations?: Record<string, string> };
      spec?: { replicas?: number; template?: { spec?: { containers?: { image?: string }[] } } };
      status?: { readyReplicas?: number; updatedReplicas?: number; availableReplicas?: number };
    };
    const wanted = deployment.spec?.replicas ?? 0;
    const ready = deployment.status?.readyReplicas ?? 0;
    return {
      target: ctx.targetName,
      type: 'kubernetes',
      deployed: true,
      version: deployment.metadata?.labels?.['app.kubernetes.io/version'] ?? null,
      image: deployment.spec?.template?.spec?.containers?.[0]?.image ?? null,
      health: ready >= wanted && wanted > 0 ? 'ready' : `${ready}/${wanted} ready`,
      url: null,
      startedAt: deployment.metadata?.creationTimestamp ?? null,
      detail: { deployment: name, namespace: target.namespace, replicas: wanted, ready, available: deployment.status?.availableReplicas ?? 0 },
    };
  },
};
