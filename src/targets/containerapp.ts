import { createHash } from 'node:crypto';
import path from 'node:path';
import type { ContainerApp, ContainerAppsAPIClient, RegistryCredentials, Revision, TrafficWeight } from '@azure/arm-appcontainers';
import type { ContainerAppTarget } from '../config/defaults.js';
import { environmentError, inputError } from '../errors.js';
import { defaultModelName } from '../model/inspect.js';
import { armClientOptions, armCredential, azureError, orNull, servingOne } from './azure.js';
import { rollout, type Check, type FallBack } from './rollout.js';
import { fileLock } from './lock.js';
import { smokeSecurity } from './server-secrets.js';
import type { ClientSecurity } from '../protocol/client-security.js';
import type { DeployContext, DeployOutcome, RecordedRelease, Release, TargetAdapter, TargetStatus } from './types.js';

const PORT = 8080;
/** The label that gives the new revision its own URL (<app>---candidate.<domain>) while it has no traffic. */
const CANDIDATE = 'candidate';
/** The server reports it as the model version; status reads it back from the revision. */
const VERSION_ENV = 'MLOPS_MODEL_VERSION';

export function appName(target: ContainerAppTarget, ctx: Pick<DeployContext, 'config' | 'projectDir'>): string {
  const name = (target.app || ctx.config.model.name || defaultModelName(path.resolve(ctx.projectDir, ctx.config.model.path))).toLowerCase();
  const cleaned = name
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^[^a-z]+|-+$/g, '')
    .slice(0, 32)
    .replace(/-+$/, '');
  return cleaned.length >= 2 ? cleaned : `mlops-${cleaned}`;
}

/** The revision suffix of a release, from its version and image: a redeploy of it finds its revision. */
export function revisionSuffix(release: Release): string {
  const hash = createHash('sha256').update(release.image).digest('hex').slice(0, 6);
  return `${`v${release.version.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`.slice(0, 16).replace(/-+$/, '')}-${hash}`;
}

async function client(target: ContainerAppTarget, ctx: DeployContext): Promise<ContainerAppsAPIClient> {
  const { ContainerAppsAPIClient } = await import('@azure/arm-appcontainers');
  return new ContainerAppsAPIClient(armCredential(ctx), target.subscriptionId, armClientOptions(ctx, target.armEndpoint));
}

const secretName = (variable: string) => variable.toLowerCase().replace(/_/g, '-');

/** The whole app as config says, for the release: PUT takes every secret's value each time (a GET never returns them). */
function envelope(target: ContainerAppTarget, release: Release, ctx: DeployContext, traffic: TrafficWeight[]): ContainerApp {
  const secrets = Object.entries(target.secretEnv).map(([variable, source]) => {
    const value = ctx.env[source];
    if (value === undefined)
      throw inputError(
        `target '${ctx.targetName}': secretEnv.${variable} names ${source}, which is not set here`,
        `export ${source} in the deploying environment (a CI secret), or remove ${variable} from secretEnv`,
      );
    return { name: secretName(variable), value };
  });
  const server = release.image.split('/')[0];
  let registries: RegistryCredentials[] = [];
  if (target.registryIdentity) registries = [{ server, identity: target.registryIdentity }];
  else if (ctx.env.MLOPS_REGISTRY_USERNAME && ctx.env.MLOPS_REGISTRY_PASSWORD) {
    secrets.push({ name: 'registry-password', value: ctx.env.MLOPS_REGISTRY_PASSWORD });
    registries = [{ server, username: ctx.env.MLOPS_REGISTRY_USERNAME, passwordSecretRef: 'registry-password' }];
  }
  const environmentId = target.environment.startsWith('/')
    ? target.environment
    : `/subscriptions/${target.subscriptionId}/resourceGroups/${target.resourceGroup}/providers/Microsoft.App/managedEnvironments/${target.environment}`;
  const probe = (type: 'Liveness' | 'Readiness' | 'Startup', route: string, failureThreshold: number) => ({
    type,
    httpGet: { path: route, port: PORT },
    periodSeconds: 10,
    timeoutSeconds: 5,
    failureThreshold,
  });
  return {
    location: target.location,
    tags: { 'managed-by': 'mlops' },
    ...(target.registryIdentity ? { identity: { type: 'UserAssigned', userAssignedIdentities: { [target.registryIdentity]: {} } } } : {}),
    managedEnvironmentId: environmentId,
    configuration: {
      activeRevisionsMode: 'Multiple',
      ingress: { external: target.external, targetPort: PORT, transport: target.transport, allowInsecure: false, traffic },
      secrets,
      registries,
    },
    template: {
      revisionSuffix: revisionSuffix(release),
      containers: [
        {
          name: 'server',
          image: release.image,
          resources: { cpu: target.cpu, memory: target.memory },
          env: [
            { name: VERSION_ENV, value: release.version },
            ...Object.entries(target.env).map(([name, value]) => ({ name, value })),
            ...Object.keys(target.secretEnv).map((name) => ({ name, secretRef: secretName(name) })),
          ],
          // Startup allows the model ten minutes to load; liveness then only checks the process answers.
          probes: [probe('Startup', '/v2/health/ready', 60), probe('Liveness', '/v2/health/live', 3), probe('Readiness', '/v2/health/ready', 3)],
        },
      ],
      scale: {
        minReplicas: target.minReplicas,
        maxReplicas: target.maxReplicas,
        rules: [{ name: 'http-concurrency', http: { metadata: { concurrentRequests: String(target.concurrentRequests) } } }],
      },
    },
  };
}

interface Names {
  rg: string;
  app: string;
  what: string;
}

/** The revisions taking traffic, by name ("latestRevision" entries resolved). */
function live(app: ContainerApp | null): [string, number][] {
  return (app?.configuration?.ingress?.traffic ?? [])
    .filter((t) => (t.weight ?? 0) > 0)
    .map((t) => [t.revisionName ?? app?.latestRevisionName ?? '', t.weight ?? 0] as [string, number])
    .filter(([name]) => name);
}

/**
 * Azure Container Apps through Microsoft's SDK, in multiple-revision mode: the new revision (its
 * suffix derived from the release) is made with no traffic, waited for until provisioned and
 * healthy, smoke-tested through its own label URL, then given the app's traffic in steps, each
 * checked; on a failure traffic goes back to the revision that served and the new one is deactivated.
 */
export const containerAppAdapter: TargetAdapter<ContainerAppTarget> = {
  type: 'containerapp',
  needsRegistry: true,
  output: null,

  // The platform has no lock to offer mlops: a lock file in the project (best effort, docs/deploy.md).
  lock: (_target, ctx, holder) => fileLock(ctx.projectDir, ctx.targetName, holder),

  async recover(target, ctx, current) {
    const n = names(target, ctx);
    const aca = await client(target, ctx);
    const app = await orNull(aca.containerApps.get(n.rg, n.app), n.what);
    const serving = live(app);
    if (!app || serving.length <= 1 || !current) return null;
    const back = `${n.app}--${revisionSuffix(current)}`;
    if (!serving.some(([name]) => name === back)) return null;
    const candidates = serving.map(([name]) => name).filter((name) => name !== back);
    const candidate = await orNull(aca.containerAppsRevisions.getRevision(n.rg, n.app, candidates[0]), `revision ${candidates[0]}`);
    await setTraffic(aca, n, app, [{ revisionName: back, weight: 100 }]);
    for (const name of candidates) await deactivate(aca, n, name);
    return {
      candidate: { version: (candidate && versionOf(candidate)) ?? candidates[0], image: candidate?.template?.containers?.[0]?.image ?? '' },
      outcome: 'restored',
      serving: current,
      message: `app ${n.app} split its traffic with ${candidates.join(', ')}; all of it goes to ${back} again and they were deactivated`,
    };
  },

  async deploy(target, release, previous, ctx): Promise<DeployOutcome> {
    const n = names(target, ctx);
    // A server given tokens (env or secretEnv) asks the smoke test for one: MLOPS_TOKEN, checked before anything is written.
    const tokens = ['MLOPS_AUTH_TOKENS', 'MLOPS_AUTH_TOKEN_FILE'].find((v) => v in target.env || v in target.secretEnv);
    const { security } = smokeSecurity(ctx, {}, tokens);
    const aca = await client(target, ctx);
    const revision = `${n.app}--${revisionSuffix(release)}`;
    const before = await orNull(aca.containerApps.get(n.rg, n.app), n.what);
    const serving = servingRevisions(before, n);
    // The release already serving (a redeploy) is checked again in place: never "the old one", never deactivated.
    const redeploy = serving[0]?.[0] === revision;
    const old = redeploy ? undefined : serving[0]?.[0];
    if (redeploy) ctx.log(`${revision} already serves all traffic; checking it again`);
    const candidate = redeploy ? undefined : revision;

    // A revision of this release that exists (a rollback, a redeploy) is activated, not made again: a suffix is used once.
    const existing = before ? await orNull(aca.containerAppsRevisions.getRevision(n.rg, n.app, revision), `revision ${revision}`) : null;
    const traffic: TrafficWeight[] = old ? [{ revisionName: old, weight: 100 }] : [{ latestRevision: true, weight: 100 }];
    const wanted = existing ? null : envelope(target, release, ctx, traffic);
    let app: ContainerApp = before!;
    const domain = () => (app.configuration?.ingress?.fqdn ?? `${n.app}.unknown`).slice(n.app.length + 1);
    const smoke = (url: string) => smokeRevision(ctx, target, n, release, url, security);
    const candidateUrl = () => `https://${n.app}---${CANDIDATE}.${domain()}`;
    return rollout(ctx, release, previous, target, {
      serving: old !== undefined,
      describe: () => ({ candidate: revision }),
      async create() {
        try {
          if (existing) {
            if (!existing.active) await aca.containerAppsRevisions.activateRevision(n.rg, n.app, revision);
          } else {
            app = await aca.containerApps.beginCreateOrUpdateAndWait(n.rg, n.app, wanted!, {
              abortSignal: AbortSignal.timeout(target.readyTimeoutSeconds * 1000),
            });
          }
          return undefined;
        } catch (error) {
          const e = error as Error & { statusCode?: number };
          if (e.statusCode && e.statusCode < 500) throw azureError(error, `updating ${n.what}`);
          return { reason: 'rollout-failed', message: `revision ${revision} was not made: ${e.message.split('\n')[0]}` };
        }
      },
      ready: () => waitForRevision(aca, n, revision, target, ctx),
      async smoke() {
        // Its own URL first, with no traffic: a label on the new revision.
        if (old)
          app = await setTraffic(aca, n, app, [
            { revisionName: old, weight: 100 },
            { revisionName: revision, weight: 0, label: CANDIDATE },
          ]);
        const failure = await smoke(old ? candidateUrl() : `https://${n.app}.${domain()}`);
        return failure ? { reason: 'smoke-failure', message: failure } : undefined;
      },
      async shift(percent) {
        const traffic: TrafficWeight[] =
          percent === 100 || !old
            ? [{ revisionName: revision, weight: 100 }]
            : [
                { revisionName: old, weight: 100 - percent },
                { revisionName: revision, weight: percent, label: CANDIDATE },
              ];
        app = await setTraffic(aca, n, app, traffic);
        return undefined;
      },
      async watch(percent) {
        // A check that cannot be made is no pass: traffic goes back.
        const failure = await revisionProblem(aca, n, revision)
          .then((problem) => problem ?? smoke(candidateUrl()))
          .catch((error: Error) => `the revision could not be checked: ${error.message.split('\n')[0]}`);
        return failure ? { reason: 'rollout-failed', message: `at ${percent}% of traffic: ${failure}` } : undefined;
      },
      async promote() {
        // What no longer takes traffic stops costing: every other active revision is deactivated (kept, so a rollback activates it again).
        for (const other of await activeRevisions(aca, n)) if (other !== revision) await deactivate(aca, n, other);
        return app.configuration?.ingress?.fqdn ? `https://${app.configuration.ingress.fqdn}` : null;
      },
      // Traffic moves from the smoke test on (the candidate's label), so from then on it goes back.
      fallBack: async (_failure, stage) => fallBack(aca, n, ctx, previous, old, candidate, stage === 'smoke' || stage === 'traffic'),
    });
  },

  async replicas(_target, ctx) {
    throw environmentError(
      `target '${ctx.targetName}' (Container Apps): replicas cannot be reached one by one, so their live profiles cannot be summed`,
      'read the inference log with mlops monitor --labels, or use --url with a local run of the same image',
    );
  },

  async inferenceLogs(_target, ctx) {
    throw inputError(
      `target '${ctx.targetName}' (Container Apps): the server's stdout goes to the environment's Log Analytics workspace, which mlops does not read yet`,
      'export the ContainerAppConsoleLogs_CL rows to a file (az monitor log-analytics query) and pass it with mlops monitor --labels <file>',
    );
  },

  async recordedReleases(target, ctx): Promise<RecordedRelease[]> {
    const n = names(target, ctx);
    const aca = await client(target, ctx);
    const app = await orNull(aca.containerApps.get(n.rg, n.app), n.what);
    if (!app) return [];
    const out: RecordedRelease[] = [];
    for (const r of await revisions(aca, n)) {
      const version = versionOf(r);
      if (version)
        out.push({ version, image: r.template?.containers?.[0]?.image ?? '', at: r.createdTime?.toISOString() ?? null, serving: (r.trafficWeight ?? 0) > 0 });
    }
    return out.sort((a, b) => (a.at ?? '').localeCompare(b.at ?? ''));
  },

  async status(target, ctx): Promise<TargetStatus> {
    const n = names(target, ctx);
    const aca = await client(target, ctx);
    const app = await orNull(aca.containerApps.get(n.rg, n.app), n.what);
    const serving = live(app);
    const url = app?.configuration?.ingress?.fqdn ? `https://${app.configuration.ingress.fqdn}` : null;
    if (!app || serving.length === 0)
      return {
        target: ctx.targetName,
        type: 'containerapp',
        deployed: false,
        version: null,
        image: null,
        health: app ? 'no traffic' : 'not deployed',
        url,
        startedAt: null,
        detail: { app: n.app },
      };
    const [main] = [...serving].sort((a, b) => b[1] - a[1]);
    const revision = await orNull(aca.containerAppsRevisions.getRevision(n.rg, n.app, main[0]), `revision ${main[0]}`);
    return {
      target: ctx.targetName,
      type: 'containerapp',
      deployed: true,
      version: revision ? versionOf(revision) : null,
      image: revision?.template?.containers?.[0]?.image ?? null,
      health:
        revision?.healthState === 'Healthy' || (revision?.provisioningState === 'Provisioned' && revision.replicas === 0)
          ? 'ready'
          : (revision?.healthState ?? revision?.provisioningState ?? 'unknown'),
      url,
      startedAt: revision?.createdTime?.toISOString() ?? null,
      detail: {
        app: n.app,
        revision: main[0],
        traffic: Object.fromEntries(serving),
        replicas: revision?.replicas ?? null,
        runningState: revision?.runningState ?? null,
      },
    };
  },
};

function names(target: ContainerAppTarget, ctx: DeployContext): Names {
  const app = appName(target, ctx);
  return { rg: target.resourceGroup, app, what: `Container App ${app} (resource group ${target.resourceGroup})` };
}

const versionOf = (revision: Revision) => revision.template?.containers?.[0]?.env?.find((e) => e.name === VERSION_ENV)?.value ?? null;

/** The smoke test through a URL of the app; an app with internal ingress cannot be reached from here (a warning). */
async function smokeRevision(
  ctx: DeployContext,
  target: ContainerAppTarget,
  n: Names,
  release: Release,
  url: string,
  security: ClientSecurity,
): Promise<string | undefined> {
  if (!target.external) {
    ctx.log(`warning: ${n.what} has internal ingress, so ${url} cannot be smoke-tested from here`);
    return undefined;
  }
  return ctx.smoke(url, release, {}, security).then(
    () => undefined,
    (error: Error) => error.message,
  );
}

/** What serves in the app, when a deploy may change it: no change under way, traffic on one revision at most. */
function servingRevisions(before: ContainerApp | null, n: Names): [string, number][] {
  if (before?.provisioningState === 'InProgress')
    throw environmentError(`${n.what} is being changed: another change is under way`, 'wait for it to finish, then deploy again');
  return servingOne(live(before), n.what, 'revision');
}

/** Traffic back where it was (when it moved) and the new revision deactivated. */
/** `revision` undefined: the failed revision is the one serving (a redeploy), which stays. */
async function fallBack(
  aca: ContainerAppsAPIClient,
  n: Names,
  ctx: DeployContext,
  previous: Release | null,
  old: string | undefined,
  revision: string | undefined,
  restore: boolean,
): Promise<FallBack> {
  if (restore && old) {
    const app = await orNull(aca.containerApps.get(n.rg, n.app), n.what);
    if (app) await setTraffic(aca, n, app, [{ revisionName: old, weight: 100 }]);
  }
  const logs = !revision
    ? ''
    : ((await orNull(aca.containerAppsRevisions.getRevision(n.rg, n.app, revision), `revision ${revision}`).catch(() => null))?.provisioningError ?? '');
  if (revision) await deactivate(aca, n, revision);
  return { restored: old ? previous : null, logs };
}

/** Provisioned and not unhealthy, or why not, polling until readyTimeoutSeconds. */
async function waitForRevision(aca: ContainerAppsAPIClient, n: Names, revision: string, target: ContainerAppTarget, ctx: DeployContext): Promise<Check> {
  const until = Date.now() + target.readyTimeoutSeconds * 1000;
  return ctx.exec.poll<Check>(async () => {
    const r = await orNull(aca.containerAppsRevisions.getRevision(n.rg, n.app, revision), `revision ${revision}`);
    if (r?.provisioningState === 'Failed' || r?.healthState === 'Unhealthy') {
      const why = r.provisioningError ?? r.runningState ?? 'no reason given';
      return { verdict: { reason: 'rollout-failed', message: `revision ${revision} is ${r.provisioningState === 'Failed' ? 'Failed' : 'Unhealthy'}: ${why}` } };
    }
    if (r?.provisioningState === 'Provisioned' && r.healthState !== 'None') return { verdict: undefined };
    if (r?.provisioningState === 'Provisioned' && (r.replicas ?? 0) === 0 && target.minReplicas === 0) return { verdict: undefined };
    if (Date.now() <= until) return null;
    const state = `${r?.provisioningState ?? 'not found'}, ${r?.healthState ?? ''}`;
    return { verdict: { reason: 'health-timeout', message: `revision ${revision} was not ready after ${target.readyTimeoutSeconds} s (${state})` } };
  }, 5000);
}

async function revisionProblem(aca: ContainerAppsAPIClient, n: Names, revision: string): Promise<string | undefined> {
  const r = await orNull(aca.containerAppsRevisions.getRevision(n.rg, n.app, revision), `revision ${revision}`);
  if (!r) return `revision ${revision} is gone`;
  return r.healthState === 'Unhealthy' || r.provisioningState === 'Failed'
    ? `revision ${revision} is ${r.healthState === 'Unhealthy' ? 'Unhealthy' : 'Failed'}${r.provisioningError ? `: ${r.provisioningError}` : ''}`
    : undefined;
}

/** A new traffic split, by JSON merge patch of the ingress (ARM's PATCH for Container Apps): nothing else in the app changes. */
async function setTraffic(aca: ContainerAppsAPIClient, n: Names, app: ContainerApp, traffic: TrafficWeight[]): Promise<ContainerApp> {
  try {
    return await aca.containerApps.beginUpdateAndWait(n.rg, n.app, {
      location: app.location,
      configuration: { ingress: { ...withoutReadOnly(app.configuration?.ingress), traffic } },
    });
  } catch (error) {
    throw azureError(error, `moving the traffic of ${n.what}`);
  }
}

const withoutReadOnly = (ingress: NonNullable<ContainerApp['configuration']>['ingress']) => {
  if (!ingress) return {};
  const { fqdn: _fqdn, ...rest } = ingress;
  return rest;
};

async function revisions(aca: ContainerAppsAPIClient, n: Names): Promise<Revision[]> {
  const list = async () => {
    const out: Revision[] = [];
    for await (const r of aca.containerAppsRevisions.listRevisions(n.rg, n.app)) out.push(r);
    return out;
  };
  return (await orNull(list(), `the revisions of ${n.what}`)) ?? [];
}

const activeRevisions = async (aca: ContainerAppsAPIClient, n: Names) => (await revisions(aca, n)).filter((r) => r.active && r.name).map((r) => r.name!);

async function deactivate(aca: ContainerAppsAPIClient, n: Names, revision: string): Promise<void> {
  try {
    await aca.containerAppsRevisions.deactivateRevision(n.rg, n.app, revision);
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return;
    throw azureError(error, `deactivating revision ${revision} of ${n.what}`);
  }
}
