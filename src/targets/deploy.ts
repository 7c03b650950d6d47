import {
  MODELS_LABEL,
  MODEL_INPUTS_LABEL,
  MODEL_NAME_LABEL,
  MODEL_OUTPUTS_LABEL,
  MODEL_SHA256_LABEL,
  MODEL_TAKES_LABEL,
  RELEASE_VERSION_LABEL,
} from '../model/labels.js';
import type { Config, TargetConfig } from '../config/defaults.js';
import { connectDocker } from '../docker/client.js';
import { sharedBlobStore } from '../oci/blob-store.js';
import { imageFacts, readStoredImage } from '../oci/image.js';
import { findLocalImage } from '../project/local-images.js';
import { inspectImage } from '../docker/container.js';
import { ExitCode, inputError, isMlopsError, environmentError } from '../errors.js';
import { readLastBuild } from '../project/last-build.js';
import { RegistryClient } from '../registry/client.js';
import { pullImage } from '../release/pull.js';
import { resolveCredentials } from '../registry/credentials.js';
import { localName, parseReference } from '../registry/reference.js';
import { configuredRepository } from '../project/repository.js';
import { requireVerified } from '../supply-chain/verify.js';
import { defaultAzureSeam } from './azure.js';
import { createExecSeam, type PlannedStep, type Runner } from './exec.js';
import {
  appendHistory,
  currentRelease,
  findRelease,
  historyFile,
  previousRelease,
  readHistory,
  replaceHistory,
  setAsideHistory,
  type HistoryEntry,
} from './history.js';
import { acquireLock, thisProcess } from './lock.js';
import type { ClientSecurity } from '../protocol/client-security.js';
import { OUTPUT_TYPES, selectTarget } from './index.js';
import { configuredSampleInputs, smokeTest } from './smoke.js';
import type { AzureSeam, DeployContext, DeployOutcome, LogText, ModelSignature, Release, Replicas, TargetAdapter, TargetStatus } from './types.js';

export interface DeployOptions {
  cwd: string;
  projectDir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  target?: string;
  dryRun: boolean;
  outputDir?: string;
  log: (line: string) => void;
  /** The exec seam's runner; tests pass one that answers as kubectl or gcloud would. */
  runner?: Runner;
  /** Tests of the Azure targets pass a local ARM stand-in's CA and a fixed token. */
  azure?: AzureSeam;
  /** Tests of remote targets pass the smoke test's answer. */
  smoke?: DeployContext['smoke'];
  /** Called at each stage of a deploy; the crash tests pass one that ends the process there. Default: nothing. */
  checkpoint?: DeployContext['checkpoint'];
  /** How long to wait for another deploy's lock on the target; 0: fail at once. */
  lockTimeoutSeconds?: number;
  /** Deploy over a damaged or missing history: the damaged file is set aside and a new one starts. */
  force?: boolean;
}

export interface DeployResult {
  target: string;
  type: string;
  action: 'deploy' | 'rollback';
  outcome: DeployOutcome;
  /** Every command run, or that would run under --dry-run. */
  plan: PlannedStep[];
}

/** Retries while the endpoint is not yet listening (a port-forward starting), then reports the last failure. */
async function smokeWithRetry(
  url: string,
  release: Release,
  sampleInputs: DeployContext['sampleInputs'],
  headers?: Record<string, string>,
  security?: ClientSecurity,
): Promise<void> {
  const until = Date.now() + 15_000;
  for (;;) {
    try {
      return await smokeTest(url, release, sampleInputs, headers, security);
    } catch (error) {
      const refused = /fetch failed|ECONNREFUSED|socket/i.test((error as Error).message);
      if (!refused || Date.now() > until) throw error;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

function context(options: DeployOptions, name: string): DeployContext {
  const sampleInputs = configuredSampleInputs(options.config, options.projectDir);
  return {
    targetName: name,
    config: options.config,
    projectDir: options.projectDir,
    env: options.env,
    exec: createExecSeam({ dryRun: options.dryRun, runner: options.runner, onCommand: (line) => options.log(`$ ${line}`) }),
    azure: options.azure ?? defaultAzureSeam,
    dryRun: options.dryRun,
    outputDir: options.outputDir,
    log: options.log,
    sampleInputs,
    // A dry run sends no smoke request: there is nothing running to answer it.
    smoke: options.dryRun
      ? async () => undefined
      : (options.smoke ?? ((url, release, headers, security) => smokeWithRetry(url, release, sampleInputs, headers, security))),
    checkpoint: options.checkpoint ?? (() => undefined),
  };
}

/**
 * What `version` means on a target. Local: an image on this machine (the last
 * build by default). Remote: the version's digest in the registry, so the
 * target runs exactly what was pushed; an unpushed version is refused.
 */
export async function resolveRelease(options: DeployOptions, adapter: TargetAdapter, version: string | undefined): Promise<Release> {
  const repository = configuredRepository(options.config, options.projectDir);
  const ref = parseReference(repository);
  if (!adapter.needsRegistry) {
    const image = version ? `${localName(ref)}:${version}` : (await readLastBuild(options.projectDir)).tags[0];
    // A plan needs no engine: an image built here without one is read from the blob cache.
    const docker = options.dryRun ? await connectDocker(options.env).catch(() => null) : await connectDocker(options.env);
    if (!docker) {
      const stored = await storedFacts(options, image);
      if (!stored)
        throw environmentError(
          `no Docker engine answers, and ${image} was not built here without one`,
          'start an engine, or build with `mlops build --builder oci`',
        );
      return releaseOf(version ?? stored.labels[RELEASE_VERSION_LABEL] ?? image.slice(image.lastIndexOf(':') + 1), image, stored.digest, stored.labels);
    }
    // A version pushed from elsewhere (CI) and not built here comes from the registry.
    const here = await docker
      .getImage(image)
      .inspect()
      .then(
        () => true,
        () => false,
      );
    if (!here && version && ref.registry !== 'docker.io') {
      options.log(`${image} is not on this machine: pulling it from ${ref.registry}`);
      await pullImage(docker, image, options.env);
    }
    const info = await inspectImage(docker, image);
    const labels = info.Config.Labels ?? {};
    // The registry's digest when the version was pushed (or pulled): what history records.
    const digest = (info.RepoDigests ?? []).find((d) => d.startsWith(`${localName(ref)}@`))?.split('@')[1] ?? null;
    return releaseOf(version ?? labels[RELEASE_VERSION_LABEL] ?? image.slice(image.lastIndexOf(':') + 1), image, digest, labels);
  }
  if (!version)
    throw inputError(
      `target type ${adapter.type} deploys pushed versions: name one`,
      'run `mlops tag <version>` and `mlops push`, then `mlops deploy <version> --target ...`',
    );
  if (ref.registry === 'docker.io' && !repository.includes('/')) {
    throw inputError(
      `image.repository '${repository}' names no registry, so ${adapter.type} cannot pull it`,
      'set image.repository to registry.example.com/team/model and `mlops push`',
    );
  }
  const client = new RegistryClient(ref.registry, await resolveCredentials(ref.registry, options.env));
  const manifest = await client.manifest(ref.repository, version);
  if (!manifest) {
    throw inputError(
      `${localName(ref)}:${version} was never pushed to ${ref.registry}`,
      `run \`mlops push ${version}\` first: ${adapter.type} pulls from the registry`,
    );
  }
  const labels = (await client.configBlob(ref.repository, manifest.config.digest)).config?.Labels ?? {};
  return releaseOf(version, `${localName(ref)}@${manifest.digest}`, manifest.digest, labels);
}

function releaseOf(version: string, image: string, digest: string | null, labels: Record<string, string>): Release {
  return {
    version,
    image,
    digest,
    modelName: labels[MODEL_NAME_LABEL] ?? '',
    modelSha256: labels[MODEL_SHA256_LABEL] ?? null,
    signature: signatureOf(labels),
    otherModels: otherModelsOf(labels),
    ...takesOf(labels),
  };
}

/** An image built or tagged here without a daemon: its labels, config digest (the id Docker would give it) and digest. */
async function storedFacts(options: DeployOptions, image: string): Promise<{ labels: Record<string, string>; imageId: string; digest: string } | null> {
  const found = await findLocalImage(options.projectDir, image);
  if (!found) return null;
  const stored = await readStoredImage(sharedBlobStore(options.env), found.image.top);
  const { labels, imageId } = imageFacts(stored);
  return { labels, imageId, digest: found.image.top.digest };
}

/** The raw input a release's model takes, from its label. */
function takesOf(labels: Record<string, string>): Pick<Release, 'takes'> {
  const takes = labels[MODEL_TAKES_LABEL];
  return takes === 'image' || takes === 'text' ? { takes } : {};
}

/** The models of an image of several beside the one its mlops.model.* labels describe. */
function otherModelsOf(labels: Record<string, string>): string[] | undefined {
  if (!labels[MODELS_LABEL]) return undefined;
  try {
    const names = (JSON.parse(labels[MODELS_LABEL]) as { name: string }[]).map((m) => m.name);
    return [...new Set(names)].filter((n) => n !== labels[MODEL_NAME_LABEL]);
  } catch {
    return undefined;
  }
}

/** With deploy.verify.key set, the release must be signed by it (else exit 5); an image on this machine must be the signed one. */
async function verifyRelease(options: DeployOptions, adapter: TargetAdapter, release: Release): Promise<void> {
  if (!options.config.deploy.verify.key) return;
  const docker = adapter.needsRegistry ? null : await connectDocker(options.env).catch((error: Error) => (options.dryRun ? null : Promise.reject(error)));
  const localImageId = adapter.needsRegistry
    ? null
    : docker
      ? await docker
          .getImage(release.image)
          .inspect()
          .then(
            (info) => info.Id,
            () => null,
          )
      : ((await storedFacts(options, release.image))?.imageId ?? null);
  await requireVerified(options, release, localImageId);
}

/** The signature `mlops build` labels every image with; null for images without those labels. */
function signatureOf(labels: Record<string, string>): ModelSignature | null {
  try {
    const inputs = JSON.parse(labels[MODEL_INPUTS_LABEL] ?? 'null') as ModelSignature['inputs'] | null;
    const outputs = JSON.parse(labels[MODEL_OUTPUTS_LABEL] ?? 'null') as ModelSignature['outputs'] | null;
    return Array.isArray(inputs) && Array.isArray(outputs) ? { inputs, outputs } : null;
  } catch {
    return null;
  }
}

async function record(options: DeployOptions, name: string, action: 'deploy' | 'rollback', outcome: DeployOutcome): Promise<void> {
  if (outcome.status === 'planned' || outcome.status === 'written') return;
  await appendHistory(options.projectDir, name, {
    action,
    version: outcome.release.version,
    image: outcome.release.image,
    digest: outcome.release.digest,
    modelName: outcome.release.modelName,
    modelSha256: outcome.release.modelSha256,
    signature: outcome.release.signature ?? null,
    at: new Date().toISOString(),
    outcome: outcome.status,
    ...(outcome.status !== 'deployed' ? { reason: outcome.reason } : {}),
    ...(outcome.status === 'rolled-back' ? { restored: outcome.restored.version } : {}),
  });
}

/** The smoke request can be made (every dynamic dimension sized, the data file read) before anything is deployed: else exit 2. */
async function checkSampleInputs(ctx: DeployContext, release: Release): Promise<void> {
  if (release.signature && !release.takes) await ctx.sampleInputs(release.signature.inputs);
}

/** --output on a target that cannot write one would deploy for real: refused before anything runs. */
function checkOutput(options: DeployOptions, name: string, adapter: TargetAdapter): void {
  if (options.outputDir && adapter.output === null) {
    throw inputError(
      `target '${name}' (${adapter.type}) has no --output form`,
      `use --dry-run to see every command a deploy would run; --output writes files for ${OUTPUT_TYPES.join(', ')} targets`,
    );
  }
}

export async function deployVersion(options: DeployOptions, version: string | undefined): Promise<DeployResult> {
  const { name, target, adapter } = selectTarget(options.config, options.target);
  checkOutput(options, name, adapter);
  const release = await resolveRelease(options, adapter, version);
  await verifyRelease(options, adapter, release);
  const ctx = context(options, name);
  await checkSampleInputs(ctx, release);
  return underLock(options, ctx, adapter, target, `mlops deploy ${release.version}`, async (history) => {
    const previous = currentRelease(history);
    await requireHistory(options, ctx, adapter, target, history);
    const outcome = await deployOrPlan(ctx, adapter, target, release, previous);
    await record(options, name, 'deploy', outcome);
    return { target: name, type: target.type, action: 'deploy', outcome, plan: ctx.exec.steps };
  });
}

/** Back to --to <version>, or to what served before the current version. */
export async function rollbackTarget(options: DeployOptions, to: string | undefined): Promise<DeployResult> {
  const { name, target, adapter } = selectTarget(options.config, options.target);
  checkOutput(options, name, adapter);
  const ctx = context(options, name);
  return underLock(options, ctx, adapter, target, `mlops rollback${to ? ` --to ${to}` : ''}`, async (history) => {
    const current = currentRelease(history);
    let release = to ? findRelease(history, to) : previousRelease(history);
    if (!release && to) release = await resolveRelease(options, adapter, to);
    if (!release) throw inputError(`nothing to roll back to on '${name}': no earlier version was deployed there`, 'pass --to <version>');
    await verifyRelease(options, adapter, release);
    await checkSampleInputs(ctx, release);
    const outcome = await deployOrPlan(ctx, adapter, target, release, current);
    await record(options, name, 'rollback', outcome);
    return { target: name, type: target.type, action: 'rollback', outcome, plan: ctx.exec.steps };
  });
}

/** The adapter's deploy; in a dry run its plan instead, where its platform's calls cannot be recorded. */
async function deployOrPlan(
  ctx: DeployContext,
  adapter: TargetAdapter,
  target: TargetConfig,
  release: Release,
  previous: Release | null,
): Promise<DeployOutcome> {
  if (!ctx.dryRun || !adapter.plan) return adapter.deploy(target, release, previous, ctx);
  await adapter.plan(target, release, ctx);
  return { status: 'planned', release };
}

/**
 * The target's lock around a deploy or rollback, and before the work what an interrupted deploy left
 * is resolved and written down. A dry run or --output changes nothing and takes no lock.
 */
async function underLock(
  options: DeployOptions,
  ctx: DeployContext,
  adapter: TargetAdapter,
  target: TargetConfig,
  command: string,
  work: (history: HistoryEntry[]) => Promise<DeployResult>,
): Promise<DeployResult> {
  if (options.dryRun || options.outputDir) return work(await loadHistory(options, ctx.targetName));
  const lock = await acquireLock(ctx.targetName, () => adapter.lock(target, ctx, thisProcess(command)), options.lockTimeoutSeconds ?? 0, options.log);
  try {
    let history = await loadHistory(options, ctx.targetName);
    const recovery = await adapter.recover(target, ctx, currentRelease(history));
    if (recovery) {
      options.log(`warning: ${recovery.message}`);
      await appendHistory(options.projectDir, ctx.targetName, {
        action: 'deploy',
        version: recovery.candidate.version,
        image: recovery.candidate.image,
        digest: null,
        modelSha256: null,
        at: new Date().toISOString(),
        outcome: recovery.outcome === 'completed' ? 'deployed' : 'interrupted',
        reason: recovery.outcome === 'completed' ? 'finished after an interruption' : 'interrupted',
        ...(recovery.serving && recovery.outcome === 'restored' ? { restored: recovery.serving.version } : {}),
      });
      history = await readHistory(options.projectDir, ctx.targetName);
    }
    return await work(history);
  } finally {
    await lock.release();
  }
}

/** The history, or with --force over a damaged one a new one (the damaged file set aside). */
async function loadHistory(options: DeployOptions, name: string): Promise<HistoryEntry[]> {
  try {
    return await readHistory(options.projectDir, name);
  } catch (error) {
    if (!options.force || !isMlopsError(error) || error.exitCode !== ExitCode.badInput) throw error;
    const aside = await setAsideHistory(options.projectDir, name);
    options.log(`warning: --force: the damaged history was moved to ${aside}; a new one starts with this deploy`);
    return [];
  }
}

/**
 * A target that serves something the history does not know: rollback would have nothing to return
 * to, so deploying over it takes --force.
 */
async function requireHistory(
  options: DeployOptions,
  ctx: DeployContext,
  adapter: TargetAdapter,
  target: TargetConfig,
  history: HistoryEntry[],
): Promise<void> {
  if (history.length > 0 || options.force || options.dryRun || options.outputDir) return;
  const status = await adapter.status(target, ctx);
  if (!status.deployed) return;
  throw inputError(
    `target '${ctx.targetName}' serves ${status.version ?? status.image ?? 'a version'}, but ${historyFile(options.projectDir, ctx.targetName)} has no record of it: a rollback would have nothing to go back to`,
    'restore the history file (or its .bak), or pass --force to deploy and start a new history',
  );
}

/**
 * The history rebuilt from what the platform records. It replaces a damaged history (set aside) or a
 * missing one; one that reads takes --force (and stays as .bak).
 */
export async function rebuildHistory(options: DeployOptions): Promise<{ target: string; entries: HistoryEntry[]; replaced: number }> {
  const { name, target, adapter } = selectTarget(options.config, options.target);
  let existing: HistoryEntry[] = [];
  try {
    existing = await readHistory(options.projectDir, name);
  } catch (error) {
    if (!isMlopsError(error) || error.exitCode !== ExitCode.badInput) throw error;
    options.log(`the damaged history was moved to ${await setAsideHistory(options.projectDir, name)}`);
  }
  if (existing.length > 0 && !options.force) {
    throw inputError(
      `${historyFile(options.projectDir, name)} holds ${existing.length} entries; --rebuild would replace them with what the target records`,
      'pass --force to replace it (the current file is kept as .bak)',
    );
  }
  const recorded = await adapter.recordedReleases(target, context({ ...options, dryRun: false }, name));
  // The serving release goes last, so the history's current release is what serves.
  const ordered = [...recorded.filter((r) => !r.serving), ...recorded.filter((r) => r.serving)];
  const entries: HistoryEntry[] = ordered.map((r) => ({
    action: 'deploy',
    version: r.version,
    image: r.image,
    digest: /@(sha256:[0-9a-f]{64})$/.exec(r.image)?.[1] ?? null,
    modelSha256: null,
    at: r.at ?? new Date().toISOString(),
    outcome: 'deployed',
    reason: `rebuilt from ${target.type}`,
  }));
  await replaceHistory(options.projectDir, name, entries);
  return { target: name, entries, replaced: existing.length };
}

export async function targetStatus(options: DeployOptions): Promise<TargetStatus & { lastDeploy: unknown }> {
  const { name, target, adapter } = selectTarget(options.config, options.target);
  const status = await adapter.status(target, context({ ...options, dryRun: false }, name));
  const history = await readHistory(options.projectDir, name);
  const current = currentRelease(history);
  // What serves is not what the last completed deploy put there: a deploy died before its checks.
  if (status.deployed && status.image && current && status.image !== current.image) {
    status.detail.unchecked = `${status.image} serves, but the last completed deploy put ${current.version} (${current.image}) there; the next deploy or rollback puts it back`;
  }
  return { ...status, lastDeploy: history.at(-1) ?? null };
}

/** The inference log records a target's replicas printed, for `mlops monitor --labels`. */
export async function targetInferenceLogs(options: DeployOptions, since: Date | undefined): Promise<LogText[]> {
  const { name, target, adapter } = selectTarget(options.config, options.target);
  return adapter.inferenceLogs(target, context({ ...options, dryRun: false }, name), since);
}

/** Every serving replica's base URL on a target, for `mlops monitor`; close() when done. */
export async function targetReplicas(options: DeployOptions): Promise<Replicas & { target: string; type: string }> {
  const { name, target, adapter } = selectTarget(options.config, options.target);
  const replicas = await adapter.replicas(target, context({ ...options, dryRun: false }, name));
  return { ...replicas, target: name, type: target.type };
}
