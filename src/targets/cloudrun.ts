import { SECRET_MOUNT, smokeSecurity } from './server-secrets.js';
import { notFoundOrThrow } from './exec.js';
import path from 'node:path';
import type { CloudRunTarget } from '../config/defaults.js';
import { inputError } from '../errors.js';
import { defaultModelName } from '../model/inspect.js';
import { fileLock } from './lock.js';
import { cloudLoggingRecords, cloudLoggingTail } from './gcloud.js';
import { rollout, type Check } from './rollout.js';
import type { DeployContext, DeployOutcome, Release, TargetAdapter, TargetStatus } from './types.js';

interface ServiceDescription {
  status?: {
    url?: string;
    latestReadyRevisionName?: string;
    traffic?: { revisionName?: string; percent?: number; tag?: string; url?: string; latestRevision?: boolean }[];
  };
  metadata?: { labels?: Record<string, string> };
}

export function serviceName(target: CloudRunTarget, ctx: Pick<DeployContext, 'config' | 'projectDir'>): string {
  return (target.service || ctx.config.model.name || defaultModelName(path.resolve(ctx.projectDir, ctx.config.model.path)))
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-');
}

/** Cloud Run revision tags and label values: lowercase letters, digits and hyphens. */
export const revisionTag = (version: string) => `v${version.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`.slice(0, 46).replace(/-+$/, '');

const gcloudBase = (target: CloudRunTarget) => ['--project', target.project, '--region', target.region];

/** `gcloud run deploy`: a revision of the release under its tag, with no traffic where the service exists. */
function deployArgs(target: CloudRunTarget, release: Release, service: string, port: number, exists: boolean): string[] {
  return [
    'run',
    'deploy',
    service,
    '--image',
    release.image,
    ...gcloudBase(target),
    '--port',
    String(port),
    '--concurrency',
    String(target.concurrency),
    '--cpu',
    target.cpu,
    '--memory',
    target.memory,
    '--min-instances',
    String(target.minInstances),
    '--max-instances',
    String(target.maxInstances),
    '--labels',
    `mlops-version=${revisionTag(release.version).slice(1)},managed-by=mlops`,
    '--tag',
    revisionTag(release.version),
    target.allowUnauthenticated ? '--allow-unauthenticated' : '--no-allow-unauthenticated',
    // The token file from Secret Manager, mounted by Cloud Run; the server is pointed at it. TLS is Cloud Run's.
    ...(target.auth
      ? ['--set-secrets', `${SECRET_MOUNT.tokens}=${target.auth.secret}`, '--update-env-vars', `MLOPS_AUTH_TOKEN_FILE=${SECRET_MOUNT.tokens}`]
      : []),
    ...(exists ? ['--no-traffic'] : []),
    '--quiet',
    '--format=json',
  ];
}

/**
 * gcloud through the exec seam: a new revision with no traffic and a tag,
 * a smoke test through the tag's URL, then traffic in the configured steps;
 * on failure traffic goes back to the revisions that served before.
 */
export const cloudRunAdapter: TargetAdapter<CloudRunTarget> = {
  type: 'cloudrun',
  needsRegistry: true,
  output: null,

  // Cloud Run has no lock to offer: a lock file in the project (best effort, docs/deploy.md).
  lock: (_target, ctx, holder) => fileLock(ctx.projectDir, ctx.targetName, holder),

  /** Traffic split over several revisions, with no deploy running: a canary that was interrupted. It goes back to the serving version's tag. */
  async recover(target, ctx, current) {
    const service = serviceName(target, ctx);
    const result = await ctx.exec.run('gcloud', ['run', 'services', 'describe', service, ...gcloudBase(target), '--format=json'], { allowFailure: true });
    if (result.exitCode !== 0 || !result.stdout || !current) return null;
    const traffic = ((JSON.parse(result.stdout) as ServiceDescription).status?.traffic ?? []).filter((t) => (t.percent ?? 0) > 0);
    const tag = revisionTag(current.version);
    if (traffic.length === 1 && traffic[0].tag === tag) return null;
    if (traffic.every((t) => t.tag !== tag && t.percent === 100)) return null;
    const candidate = traffic.find((t) => t.tag && t.tag !== tag);
    await ctx.exec.run('gcloud', ['run', 'services', 'update-traffic', service, ...gcloudBase(target), `--to-tags=${tag}=100`, '--quiet']);
    return {
      candidate: { version: candidate?.tag?.replace(/^v/, '') ?? 'unknown', image: candidate?.revisionName ?? '' },
      outcome: 'restored',
      serving: current,
      message: `an interrupted canary left traffic split (${traffic.map((t) => `${t.revisionName}: ${t.percent}%`).join(', ')}); all of it went back to ${current.version} (tag ${tag})`,
    };
  },

  async deploy(target, release, previous, ctx): Promise<DeployOutcome> {
    const { exec } = ctx;
    const service = serviceName(target, ctx);
    const base = gcloudBase(target);
    const tag = revisionTag(release.version);
    // The smoke test's token (MLOPS_TOKEN), checked before anything is deployed; Cloud Run's own certificate is trusted as any.
    const smoke = { security: { ...smokeSecurity(ctx, target).security, insecure: false } };
    const describe = async () => {
      const result = await exec.run('gcloud', ['run', 'services', 'describe', service, ...base, '--format=json'], { allowFailure: true });
      return result.exitCode === 0 && result.stdout ? (JSON.parse(result.stdout) as ServiceDescription) : null;
    };
    const before = await describe();
    const serving = (before?.status?.traffic ?? []).filter((t) => (t.percent ?? 0) > 0 && t.revisionName);
    // A dry run plans the update of a serving service, the longer of the two plans.
    const exists = exec.dryRun || before !== null;
    let after: ServiceDescription | null = null;
    let tagged: NonNullable<NonNullable<ServiceDescription['status']>['traffic']>[number] | undefined;
    const headers: Record<string, string> = {};
    const check = async (): Promise<Check> => {
      if (!tagged?.url) return { reason: 'health-timeout', message: `the new revision has no URL for tag ${tag}: it never became ready` };
      try {
        await ctx.smoke(tagged.url, release, headers, smoke.security);
        return undefined;
      } catch (error) {
        return { reason: 'smoke-failure', message: `the smoke test through ${tagged.url} failed: ${(error as Error).message}` };
      }
    };
    return rollout(ctx, release, previous, target, {
      serving: exists,
      // A new service cannot start with no traffic; there is nothing to protect yet.
      startsWithTraffic: !exists,
      describe: () => ({ candidate: `tag ${tag}` }),
      async create() {
        await exec.run('gcloud', deployArgs(target, release, service, ctx.config.image.port, exists));
        after = await describe();
        tagged = after?.status?.traffic?.find((t) => t.tag === tag);
        if (!target.allowUnauthenticated) {
          const token = await exec.run('gcloud', ['auth', 'print-identity-token'], { allowFailure: true });
          // With the server's own tokens on, Authorization carries those: Cloud Run reads its IAM token from X-Serverless-Authorization.
          if (token.stdout.trim()) headers[target.auth ? 'x-serverless-authorization' : 'authorization'] = `Bearer ${token.stdout.trim()}`;
        }
        return undefined;
      },
      smoke: check,
      async shift(percent) {
        await exec.run('gcloud', ['run', 'services', 'update-traffic', service, ...base, `--to-tags=${tag}=${percent}`, '--quiet']);
        return undefined;
      },
      promote: async () => after?.status?.url ?? null,
      async fallBack() {
        const revision = tagged?.revisionName ?? after?.status?.latestReadyRevisionName ?? '';
        const logs = revision
          ? await cloudLoggingTail(ctx, target.project, ['resource.type="cloud_run_revision"', `resource.labels.revision_name="${revision}"`])
          : '';
        if (serving.length === 0 || !previous) return { restored: null, logs };
        const split = serving.map((t) => `${t.revisionName}=${t.percent}`).join(',');
        await exec.run('gcloud', ['run', 'services', 'update-traffic', service, ...base, `--to-revisions=${split}`, '--quiet']);
        return { restored: previous, logs };
      },
    });
  },

  /** Cloud Run routes every request to some instance; none can be asked for its own counts. */
  async replicas(_target, ctx) {
    throw inputError(
      `target '${ctx.targetName}' (Cloud Run): instances cannot be reached one by one, so their live profiles cannot be summed`,
      'use --prometheus with the Prometheus that scrapes them (Google Cloud Managed Service for Prometheus), or --url for one instance',
    );
  },

  async inferenceLogs(target, ctx, since) {
    const service = serviceName(target, ctx);
    const resource = ['resource.type="cloud_run_revision"', `resource.labels.service_name="${service}"`, `resource.labels.location="${target.region}"`];
    return cloudLoggingRecords(ctx, target.project, resource, since, `Cloud Logging, service ${service}`);
  },

  /** Every revision Cloud Run kept, oldest first; the version is the mlops-version label (dots as hyphens). */
  async recordedReleases(target, ctx) {
    const service = serviceName(target, ctx);
    const listed = await ctx.exec.run('gcloud', ['run', 'revisions', 'list', '--service', service, ...gcloudBase(target), '--format=json']);
    const described = await ctx.exec.run('gcloud', ['run', 'services', 'describe', service, ...gcloudBase(target), '--format=json'], { allowFailure: true });
    const live = new Set(
      ((described.exitCode === 0 ? (JSON.parse(described.stdout || '{}') as ServiceDescription) : {}).status?.traffic ?? [])
        .filter((t) => (t.percent ?? 0) > 0)
        .map((t) => t.revisionName),
    );
    const revisions = JSON.parse(listed.stdout || '[]') as {
      metadata?: { name?: string; creationTimestamp?: string; labels?: Record<string, string> };
      spec?: { containers?: { image?: string }[] };
    }[];
    return revisions
      .filter((r) => r.metadata?.labels?.['mlops-version'])
      .sort((a, b) => Date.parse(a.metadata?.creationTimestamp ?? '') - Date.parse(b.metadata?.creationTimestamp ?? ''))
      .map((r) => ({
        version: r.metadata!.labels!['mlops-version'],
        image: r.spec?.containers?.[0]?.image ?? '',
        at: r.metadata?.creationTimestamp ?? null,
        serving: live.has(r.metadata?.name),
      }));
  },

  async status(target, ctx): Promise<TargetStatus> {
    const service = serviceName(target, ctx);
    const result = await ctx.exec.run('gcloud', ['run', 'services', 'describe', service, ...gcloudBase(target), '--format=json'], { allowFailure: true });
    if (result.exitCode !== 0) {
      notFoundOrThrow(
        result,
        /Cannot find service|could not be found|NOT_FOUND/i,
        `Cloud Run service ${service} (project ${target.project}, region ${target.region})`,
        "check gcloud's credentials and project: gcloud auth list; gcloud config list",
      );
      return {
        target: ctx.targetName,
        type: 'cloudrun',
        deployed: false,
        version: null,
        image: null,
        health: 'not deployed',
        url: null,
        startedAt: null,
        detail: { service },
      };
    }
    const description = JSON.parse(result.stdout) as ServiceDescription & { spec?: { template?: { spec?: { containers?: { image?: string }[] } } } };
    const traffic = (description.status?.traffic ?? [])
      .filter((t) => (t.percent ?? 0) > 0)
      .map((t) => `${t.revisionName}${t.tag ? ` (${t.tag})` : ''}: ${t.percent}%`);
    return {
      target: ctx.targetName,
      type: 'cloudrun',
      deployed: true,
      version: description.metadata?.labels?.['mlops-version'] ?? null,
      image: description.spec?.template?.spec?.containers?.[0]?.image ?? null,
      health: description.status?.latestReadyRevisionName ? 'ready' : 'not ready',
      url: description.status?.url ?? null,
      startedAt: null,
      detail: { service, traffic },
    };
  },
};
