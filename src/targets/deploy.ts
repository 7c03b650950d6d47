import type { Config } from '../config/defaults.js';
import { connectDocker } from '../docker/client.js';
import { inspectImage } from '../docker/container.js';
import { inputError } from '../errors.js';
import { readLastBuild } from '../image/last-build.js';
import { RegistryClient } from '../registry/client.js';
import { resolveCredentials } from '../registry/credentials.js';
import { localName, parseReference } from '../registry/reference.js';
import { configuredRepository } from '../image/repository.js';
import { createExecSeam, type PlannedStep, type Runner } from './exec.js';
import { appendHistory, currentRelease, findRelease, previousRelease, readHistory } from './history.js';
import { OUTPUT_TYPES, selectTarget } from './index.js';
import { smokeTest } from './smoke.js';
import type { DeployContext, DeployOutcome, LogText, ModelSignature, Release, Replicas, TargetAdapter, TargetStatus } from './types.js';

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
  /** Tests of remote targets pass the smoke test's answer. */
  smoke?: DeployContext['smoke'];
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
async function smokeWithRetry(url: string, release: Release, headers?: Record<string, string>): Promise<void> {
  const until = Date.now() + 15_000;
  for (;;) {
    try {
      return await smokeTest(url, release.modelName, headers);
    } catch (error) {
      const refused = /fetch failed|ECONNREFUSED|socket/i.test((error as Error).message);
      if (!refused || Date.now() > until) throw error;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

function context(options: DeployOptions, name: string): DeployContext {
  return {
    targetName: name,
    config: options.config,
    projectDir: options.projectDir,
    env: options.env,
    exec: createExecSeam({ dryRun: options.dryRun, runner: options.runner, onCommand: (line) => options.log(`$ ${line}`) }),
    dryRun: options.dryRun,
    outputDir: options.outputDir,
    log: options.log,
    smoke: options.smoke ?? smokeWithRetry,
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
    const docker = await connectDocker(options.env);
    const image = version ? `${localName(ref)}:${version}` : (await readLastBuild(options.projectDir)).tags[0];
    const info = await inspectImage(docker, image);
    const labels = info.Config.Labels ?? {};
    return {
      version: version ?? labels['mlops.release.version'] ?? image.slice(image.lastIndexOf(':') + 1),
      image,
      digest: null,
      modelName: labels['mlops.model.name'] ?? '',
      modelSha256: labels['mlops.model.sha256'] ?? null,
      signature: signatureOf(labels),
    };
  }
  if (!version) throw inputError(`target type ${adapter.type} deploys pushed versions: name one`, 'run `mlops tag <version>` and `mlops push`, then `mlops deploy <version> --target ...`');
  if (ref.registry === 'docker.io' && !repository.includes('/')) {
    throw inputError(`image.repository '${repository}' names no registry, so ${adapter.type} cannot pull it`, 'set image.repository to registry.example.com/team/model and `mlops push`');
  }
  const client = new RegistryClient(ref.registry, await resolveCredentials(ref.registry, options.env));
  const manifest = await client.manifest(ref.repository, version);
  if (!manifest) {
    throw inputError(`${localName(ref)}:${version} was never pushed to ${ref.registry}`, `run \`mlops push ${version}\` first: ${adapter.type} pulls from the registry`);
  }
  const labels = (await client.configBlob(ref.repository, manifest.config.digest)).config?.Labels ?? {};
  return {
    version,
    image: `${localName(ref)}@${manifest.digest}`,
    digest: manifest.digest,
    modelName: labels['mlops.model.name'] ?? '',
    modelSha256: labels['mlops.model.sha256'] ?? null,
    signature: signatureOf(labels),
  };
}

/** The signature `mlops build` labels every image with; null for images without those labels. */
function signatureOf(labels: Record<string, string>): ModelSignature | null {
  try {
    const inputs = JSON.parse(labels['mlops.model.inputs'] ?? 'null') as ModelSignature['inputs'] | null;
    const outputs = JSON.parse(labels['mlops.model.outputs'] ?? 'null') as ModelSignature['outputs'] | null;
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

/** --output on a target that cannot write one would deploy for real: refused before anything runs. */
function checkOutput(options: DeployOptions, name: string, adapter: TargetAdapter): void {
  if (options.outputDir && adapter.output === null) {
    throw inputError(`target '${name}' (${adapter.type}) has no --output form`, `use --dry-run to see every command a deploy would run; --output writes files for ${OUTPUT_TYPES.join(', ')} targets`);
  }
}

export async function deployVersion(options: DeployOptions, version: string | undefined): Promise<DeployResult> {
  const { name, target, adapter } = selectTarget(options.config, options.target);
  checkOutput(options, name, adapter);
  const release = await resolveRelease(options, adapter, version);
  const previous = currentRelease(await readHistory(options.projectDir, name));
  const ctx = context(options, name);
  const outcome = await adapter.deploy(target, release, previous, ctx);
  await record(options, name, 'deploy', outcome);
  return { target: name, type: target.type, action: 'deploy', outcome, plan: ctx.exec.steps };
}

/** Back to --to <version>, or to what served before the current version. */
export async function rollbackTarget(options: DeployOptions, to: string | undefined): Promise<DeployResult> {
  const { name, target, adapter } = selectTarget(options.config, options.target);
  checkOutput(options, name, adapter);
  const history = await readHistory(options.projectDir, name);
  const current = currentRelease(history);
  let release = to ? findRelease(history, to) : previousRelease(history);
  if (!release && to) release = await resolveRelease(options, adapter, to);
  if (!release) throw inputError(`nothing to roll back to on '${name}': no earlier version was deployed there`, 'pass --to <version>');
  const ctx = context(options, name);
  const outcome = await adapter.deploy(target, release, current, ctx);
  await record(options, name, 'rollback', outcome);
  return { target: name, type: target.type, action: 'rollback', outcome, plan: ctx.exec.steps };
}

export async function targetStatus(options: DeployOptions): Promise<TargetStatus & { lastDeploy: unknown }> {
  const { name, target, adapter } = selectTarget(options.config, options.target);
  const status = await adapter.status(target, context({ ...options, dryRun: false }, name));
  const history = await readHistory(options.projectDir, name);
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
