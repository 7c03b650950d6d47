import { accessOf, smokeSecurity } from './server-secrets.js';
import { notFoundOrThrow } from './exec.js';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import type { KubernetesTarget } from '../config/defaults.js';
import { environmentError } from '../errors.js';
import { defaultModelName } from '../model/inspect.js';
import { labelValue, manifestsYaml, renderManifests } from './kubernetes-manifests.js';
import { rollout } from './rollout.js';
import { forwardToPods, freePort, kubectlBase, leaseLock, listPods, podLogs, podNames, type PodList } from './kubectl.js';
import type { DeployContext, DeployOutcome, FailureReason, TargetAdapter, TargetStatus } from './types.js';

export function resourceName(target: { name: string }, ctx: Pick<DeployContext, 'config' | 'projectDir'>): string {
  return (
    target.name ||
    labelValue(ctx.config.model.name || defaultModelName(path.resolve(ctx.projectDir, ctx.config.model.path)))
      .toLowerCase()
      .replace(/[._]/g, '-')
  );
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
  output: 'the Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget YAML',

  // Long enough for a rollout and its undo; a holder that dies leaves a Lease that expires.
  lock: (target, ctx, holder) =>
    leaseLock(ctx, kubectlBase(target), resourceName(target, ctx), target.namespace, holder, target.rolloutTimeoutSeconds * 2 + 300),

  /**
   * The Deployment runs an image no completed deploy recorded (mlops.image differs from the history's
   * serving release): a deploy died after `apply`, before its checks. The serving release's manifests
   * are applied again and rolled out.
   */
  async recover(target, ctx, current) {
    const name = resourceName(target, ctx);
    const base = kubectlBase(target);
    const got = await ctx.exec.run('kubectl', [...base, 'get', 'deployment', name, '-o', 'json'], { allowFailure: true });
    if (got.exitCode !== 0 || !got.stdout || !current) return null;
    const deployment = JSON.parse(got.stdout) as { metadata?: { annotations?: Record<string, string>; labels?: Record<string, string> } };
    const image = deployment.metadata?.annotations?.['mlops.image'];
    if (!image || image === current.image) return null;
    await ctx.exec.run('kubectl', [...base, 'apply', '-f', '-'], { input: manifestsYaml(renderManifests(name, target, current, ctx.config)) });
    const back = await ctx.exec.run('kubectl', [...base, 'rollout', 'status', `deployment/${name}`, `--timeout=${target.rolloutTimeoutSeconds}s`], {
      allowFailure: true,
      timeoutMs: (target.rolloutTimeoutSeconds + 30) * 1000,
    });
    const version = deployment.metadata?.labels?.['app.kubernetes.io/version'] ?? 'unknown';
    return {
      candidate: { version, image },
      outcome: 'restored',
      serving: back.exitCode === 0 ? current : null,
      message: `an interrupted deploy had applied ${version} (${image}) without checking it; ${current.version} was applied again${back.exitCode === 0 ? ' and rolled out' : ', but its rollout did not finish'}`,
    };
  },

  async deploy(target, release, previous, ctx): Promise<DeployOutcome> {
    const name = resourceName(target, ctx);
    const manifests = renderManifests(name, target, release, ctx.config);
    // What the smoke test presents, checked before anything is applied (not needed for --output).
    const smoke = smokeSecurity(ctx, target);
    const yaml = manifestsYaml(manifests);
    if (ctx.outputDir) {
      await mkdir(ctx.outputDir, { recursive: true });
      const files: string[] = [];
      for (const [kind, manifest] of Object.entries(manifests) as [string, { toJSON(): unknown }][]) {
        const file = path.join(ctx.outputDir, `${name}-${kind}.yaml`);
        await writeFile(file, stringify(manifest.toJSON()));
        files.push(file);
      }
      return { status: 'written', release, files };
    }
    const base = kubectlBase(target);
    const { exec } = ctx;
    const podsOfRelease = `app.kubernetes.io/name=${name},mlops.version=${labelValue(release.version)}`;
    const rolloutStatus = () => [...base, 'rollout', 'status', `deployment/${name}`, `--timeout=${target.rolloutTimeoutSeconds}s`];
    return rollout(
      ctx,
      release,
      previous,
      { canary: [100], waitIntervalSeconds: 0 },
      {
        // The Deployment's rolling update moves traffic pod by pod, as readiness allows.
        serving: false,
        describe: () => ({ candidate: `deployment/${name}` }),
        create: async () => void (await exec.run('kubectl', [...base, 'apply', '-f', '-'], { input: yaml })),
        async ready() {
          const rolled = await exec.run('kubectl', rolloutStatus(), { allowFailure: true, timeoutMs: (target.rolloutTimeoutSeconds + 30) * 1000 });
          if (rolled.exitCode === 0) return undefined;
          const pods = await exec.run('kubectl', [...base, 'get', 'pods', '-l', podsOfRelease, '-o', 'json'], { allowFailure: true });
          const reason = diagnose(JSON.parse(pods.stdout || '{}') as PodList);
          const why = reason === 'crash-loop' ? 'pods are crashing' : 'pods never became ready';
          return {
            reason,
            message: `the rollout did not finish in ${target.rolloutTimeoutSeconds} s (${why}): ${rolled.stderr.trim().split('\n').at(-1) ?? ''}`,
          };
        },
        async smoke() {
          const port = await freePort();
          const forward = await exec.background('kubectl', [...base, 'port-forward', `service/${name}`, `${port}:${target.port}`]);
          try {
            await ctx.smoke(`${smoke.scheme}://127.0.0.1:${port}`, release, {}, smoke.security);
            return undefined;
          } catch (error) {
            return { reason: 'smoke-failure', message: `the smoke test failed: ${(error as Error).message}` };
          } finally {
            forward.stop();
          }
        },
        promote: async () => null,
        async fallBack(failure) {
          const logs = (await exec.run('kubectl', [...base, 'logs', '-l', podsOfRelease, '--tail=20', '--all-containers', '--prefix'], { allowFailure: true }))
            .stdout;
          if (!previous) return { restored: null, logs };
          await exec.run('kubectl', [...base, 'rollout', 'undo', `deployment/${name}`]);
          const back = await exec.run('kubectl', rolloutStatus(), { allowFailure: true });
          if (back.exitCode !== 0) return { restored: null, logs, message: `${failure.message}; and the undo did not finish either` };
          return { restored: previous, logs };
        },
      },
    );
  },

  async replicas(target, ctx) {
    const name = resourceName(target, ctx);
    const base = kubectlBase(target);
    const pods = podNames(await listPods(ctx, base, `app.kubernetes.io/name=${name}`, true));
    if (pods.length === 0) {
      throw environmentError(
        `target '${ctx.targetName}': no running pods of ${name} in namespace ${target.namespace}`,
        `deploy first: mlops deploy --target ${ctx.targetName}`,
      );
    }
    return forwardToPods(ctx, base, pods, ctx.config.image.port, Boolean(target.tls));
  },

  async inferenceLogs(target, ctx, since) {
    const name = resourceName(target, ctx);
    const base = kubectlBase(target);
    const pods = podNames(await listPods(ctx, base, `app.kubernetes.io/name=${name}`));
    if (pods.length === 0)
      throw environmentError(
        `target '${ctx.targetName}': no pods of ${name} in namespace ${target.namespace}`,
        `deploy first: mlops deploy --target ${ctx.targetName}`,
      );
    return podLogs(ctx, base, pods, 'model', since);
  },

  /** Every ReplicaSet the Deployment kept (revisionHistoryLimit 10), by revision. */
  async recordedReleases(target, ctx) {
    const name = resourceName(target, ctx);
    const listed = await ctx.exec.run('kubectl', [...kubectlBase(target), 'get', 'replicasets', '-l', `app.kubernetes.io/name=${name}`, '-o', 'json']);
    const sets =
      (
        JSON.parse(listed.stdout || '{}') as {
          items?: {
            metadata?: { creationTimestamp?: string; annotations?: Record<string, string> };
            spec?: { replicas?: number; template?: { metadata?: { labels?: Record<string, string> }; spec?: { containers?: { image?: string }[] } } };
          }[];
        }
      ).items ?? [];
    return sets
      .map((rs) => ({ rs, revision: Number(rs.metadata?.annotations?.['deployment.kubernetes.io/revision'] ?? 0) }))
      .sort((a, b) => a.revision - b.revision)
      .map(({ rs }) => ({
        version: rs.spec?.template?.metadata?.labels?.['app.kubernetes.io/version'] ?? 'unknown',
        image: rs.spec?.template?.spec?.containers?.[0]?.image ?? '',
        at: rs.metadata?.creationTimestamp ?? null,
        serving: (rs.spec?.replicas ?? 0) > 0,
      }));
  },

  async status(target, ctx): Promise<TargetStatus> {
    const name = resourceName(target, ctx);
    const result = await ctx.exec.run('kubectl', [...kubectlBase(target), 'get', 'deployment', name, '-o', 'json'], { allowFailure: true });
    if (result.exitCode !== 0) {
      notFoundOrThrow(
        result,
        /\(NotFound\)/,
        `deployment ${name} (kubectl${target.context ? ` context ${target.context}` : ''}, namespace ${target.namespace})`,
        'check that the kubectl context exists and the cluster answers: kubectl config get-contexts; kubectl cluster-info',
      );
      return {
        target: ctx.targetName,
        type: 'kubernetes',
        deployed: false,
        version: null,
        image: null,
        health: 'not deployed',
        url: null,
        startedAt: null,
        detail: { deployment: name, namespace: target.namespace },
      };
    }
    const deployment = JSON.parse(result.stdout) as {
      metadata?: { labels?: Record<string, string>; creationTimestamp?: string; annotations?: Record<string, string> };
      spec?: { replicas?: number; template?: { spec?: { containers?: { image?: string; env?: { name: string; value?: string }[] }[] } } };
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
      detail: {
        deployment: name,
        namespace: target.namespace,
        replicas: wanted,
        ready,
        available: deployment.status?.availableReplicas ?? 0,
        // What serves decides: the pod template's environment.
        ...accessOf((deployment.spec?.template?.spec?.containers?.[0]?.env ?? []).map((e) => `${e.name}=${e.value ?? ''}`)),
      },
    };
  },
};
