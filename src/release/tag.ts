import { QUALITY_METRICS } from '../metrics/names.js';
import type Docker from 'dockerode';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import semver from 'semver';
import tar from 'tar-fs';
import { inspectImage } from '../docker/container.js';
import { inputError, environmentError, isMlopsError } from '../errors.js';
import { dockerfileString } from '../docker/dockerfile.js';
import { writeFileAtomic } from '../report/files.js';
import { imageSbom, localImageSbom, writeSbomFile } from '../supply-chain/sbom.js';
import { sharedBlobStore, type BlobStore } from '../oci/blob-store.js';
import { imageFacts, readStoredImage, relabelStored, type StoredImage } from '../oci/image.js';
import { dockerArchive } from '../oci/layout.js';
import { findLocalImage, recordLocalImages, type LocalImage } from '../project/local-images.js';
import { loadArchive } from '../docker/load.js';
import { RegistryClient } from '../registry/client.js';
import { resolveCredentials } from '../registry/credentials.js';
import { localName, parseReference, type ImageReference } from '../registry/reference.js';
import { localVersions, mergeListings, registryVersions, storedVersions, type VersionInfo, type VersionListing } from './versions.js';
import { MODEL_SHA256_LABEL, RELEASE_VERSION_LABEL } from '../model/labels.js';

export type Bump = 'patch' | 'minor' | 'major';

export interface TagOptions {
  /** The engine, where one answers; null on a runner without one (the image must then be one built daemonless). */
  docker: Docker | null;
  env: NodeJS.ProcessEnv;
  projectDir: string;
  /** The image to version: a reference or an id. */
  image: string;
  /** Where versions live: [registry/]repository. */
  repository: string;
  version?: string;
  bump?: Bump;
  aliases: string[];
  force: boolean;
  /** Moving an alias in CI needs an explicit yes. */
  ci: boolean;
  yes: boolean;
  /** Check local tags only, not the registry. */
  offline: boolean;
}

export interface TagResult {
  version: string;
  reference: string;
  imageId: string;
  /** The version's manifest (or index) digest, for an image built daemonless; null for the engine's. */
  digest: string | null;
  modelSha256: string;
  /** Where existing versions were read from. */
  checked: 'registry' | 'local';
  aliases: { alias: string; reference: string; previous: string | null }[];
  /** The test and bench results stamped on the version; absent when there was no report for this build. */
  labels: Record<string, string>;
  /** Where the version's SBOM was written, or why it was not. */
  sbom: { file: string; problem: null } | { file: null; problem: string };
}

async function readJson(file: string): Promise<Record<string, unknown> | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** mlops.test.* and mlops.bench.* labels from the latest reports, when they were made on this very image. */
export async function reportLabels(projectDir: string, imageId: string): Promise<Record<string, string>> {
  const labels: Record<string, string> = {};
  const test = await readJson(path.join(projectDir, '.mlops', 'last-test.json'));
  if (test && test.imageId === imageId) {
    labels['mlops.test.passed'] = String(test.passed);
    labels['mlops.test.rows'] = String(test.rows);
    const metrics = (test.metrics ?? {}) as Record<string, unknown>;
    // Every metric `mlops test` computes: `mlops monitor --labels` may compare live quality with any of them (monitor.maxDrop).
    for (const name of QUALITY_METRICS) if (typeof metrics[name] === 'number') labels[`mlops.test.${name}`] = String(Math.round(metrics[name] * 1e6) / 1e6);
  }
  const bench = await readJson(path.join(projectDir, '.mlops', 'last-bench.json'));
  const runs = (bench?.runs ?? []) as { latencyMs: Record<string, number> | null; throughputRps: number; concurrency?: number; rate?: number; batch: number }[];
  if (bench && (bench.target as { imageId?: string } | undefined)?.imageId === imageId && runs.length > 0) {
    // Latency at the lightest load measured; throughput at the best.
    const first = runs[0];
    labels['mlops.bench.passed'] = String(bench.passed);
    labels['mlops.bench.load'] =
      first.concurrency !== undefined ? `concurrency ${first.concurrency}, batch ${first.batch}` : `rate ${first.rate}/s, batch ${first.batch}`;
    // No latency (every request failed) stamps no latency label rather than a 0.
    if (first.latencyMs) for (const p of ['p50', 'p95', 'p99'] as const) labels[`mlops.bench.${p}_ms`] = String(first.latencyMs[p]);
    labels['mlops.bench.throughput_rps'] = String(Math.max(...runs.map((r) => r.throughputRps)));
  }
  return labels;
}

/**
 * Existing versions and aliases: the registry's (unless offline or there is
 * none) and this machine's, the registry's winning where both have a tag.
 */
async function existing(options: TagOptions, ref: ImageReference): Promise<{ listing: VersionListing; checked: 'registry' | 'local' }> {
  const local = mergeListings(
    await storedVersions(options.projectDir, sharedBlobStore(options.env), ref),
    options.docker ? await localVersions(options.docker, ref) : { versions: [], aliases: {} },
  );
  if (options.offline || ref.registry === 'docker.io') return { listing: local, checked: 'local' };
  const client = new RegistryClient(ref.registry, await resolveCredentials(ref.registry, options.env));
  let remote: VersionListing;
  try {
    remote = await registryVersions(client, ref.repository);
  } catch (error) {
    if ((error as { exitCode?: number }).exitCode === 3) {
      throw environmentError(
        `${(error as Error).message}; cannot check which versions exist`,
        'start the registry, or pass --offline to check local tags only',
      );
    }
    throw error;
  }
  const known = new Set(remote.versions.map((v) => v.version));
  const versions = [...remote.versions, ...local.versions.filter((v) => !known.has(v.version))].sort((a, b) => semver.rcompare(a.version, b.version));
  const checked = remote.versions.length > 0 ? 'registry' : 'local';
  // "The highest version in the registry, or locally when there is none."
  const ordered = checked === 'registry' ? [...remote.versions, ...versions.filter((v) => !known.has(v.version))] : versions;
  return { listing: { versions: ordered, aliases: { ...local.aliases, ...remote.aliases } }, checked };
}

/** The image to tag: one built here without a daemon (from the blob store), else the engine's; refused unless mlops built it. */
async function imageToTag(options: TagOptions, store: BlobStore) {
  const stored = await findLocalImage(options.projectDir, options.image);
  const storedImage = stored && (await readStoredImage(store, stored.image.top).catch(() => undefined));
  if (!storedImage && !options.docker) {
    throw environmentError(
      `${options.image} is not an image built here without a daemon, and no Docker engine answers`,
      'build it with `mlops build --builder oci` in this project, or start an engine',
    );
  }
  const built = storedImage ? imageFacts(storedImage) : undefined;
  const source = built ? { Id: built.imageId, Config: { Labels: built.labels } } : await inspectImage(options.docker!, options.image);
  const modelSha256 = source.Config.Labels?.[MODEL_SHA256_LABEL];
  if (!modelSha256) throw inputError(`${options.image} was not built by mlops (no ${MODEL_SHA256_LABEL} label)`, 'run `mlops build` first');
  // The stored image with where its base lives (for the versions' records), when it was built here daemonless.
  return { stored: storedImage ? { image: storedImage, base: stored.image.base } : undefined, sourceId: source.Id, modelSha256 };
}

/** An alias is a tag name that is neither a version nor a build tag (sha-...). */
function checkAliases(aliases: string[]): void {
  for (const alias of aliases) {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(alias) || semver.valid(alias) || /^sha-[0-9a-f]{12}$/.test(alias)) {
      throw inputError(`--alias ${alias}: not a valid alias`, 'use a name such as staging or production (not a version, not sha-...)');
    }
  }
}

/** The version asked for, or the highest existing one bumped. */
function chosenVersion(options: Pick<TagOptions, 'version' | 'bump'>, listing: VersionListing): string {
  if (options.version !== undefined) {
    const clean = semver.valid(options.version);
    if (!clean) throw inputError(`${options.version} is not a semantic version`, 'use MAJOR.MINOR.PATCH, e.g. 1.2.0, or --bump patch|minor|major');
    return clean;
  }
  if (options.bump) {
    const highest = listing.versions[0]?.version ?? '0.0.0';
    return semver.inc(highest, options.bump)!;
  }
  throw inputError('no version given', 'pass a version (mlops tag 1.2.0) or --bump patch|minor|major');
}

/** Versions are immutable (another model's version is refused without --force), and moving an alias in CI needs --yes. */
function checkVersionAllowed(options: TagOptions, listing: VersionListing, version: string, modelSha256: string): VersionInfo | undefined {
  const taken = listing.versions.find((v) => v.version === version);
  if (taken && taken.modelSha256 !== modelSha256 && !options.force) {
    throw inputError(
      `version ${version} already exists for another model (sha256 ${taken.modelSha256?.slice(0, 12) ?? 'unknown'}, this one is ${modelSha256.slice(0, 12)}); versions are immutable`,
      'pick a new version (--bump patch), or pass --force to overwrite it',
    );
  }
  const moving = options.aliases.filter((alias) => listing.aliases[alias] !== undefined && listing.aliases[alias] !== version);
  if (moving.length > 0 && options.ci && !options.yes) {
    throw inputError(
      `refusing to move alias ${moving.map((a) => `'${a}' (now ${listing.aliases[a]})`).join(', ')} to ${version} in CI without --yes`,
      'pass --yes to confirm',
    );
  }
  return taken;
}

/** What tagging made: the new image's id (and digest, daemonless), the digest a forced tag replaces, and what its SBOM is made from. */
interface Tagged {
  imageId: string;
  digest: string | null;
  /** The digest a forced tag replaces: the one push may overwrite. */
  replaces?: string;
  sbomFacts: { labels: Record<string, string>; architecture: string } | null;
}

/**
 * Daemonless: new configs and manifests over the same layers, in the cache; the engine gets the
 * version too when there is one.
 */
async function tagStored(options: {
  tag: TagOptions;
  store: BlobStore;
  stored: { image: StoredImage; base: LocalImage['base'] };
  sourceId: string;
  version: string;
  taken: VersionInfo | undefined;
  references: string[];
  stamp: Record<string, string>;
  env: Record<string, string>;
}): Promise<Tagged> {
  const { tag, store, stored, version, taken } = options;
  const top = await relabelStored(store, stored.image, options.stamp, options.env);
  const tagged = await readStoredImage(store, top);
  // The registry's version is what was pushed and signed: another image under its name would replace it there.
  if (taken?.digest && taken.digest !== top.digest && !tag.force) {
    throw inputError(
      `version ${version} already exists as ${taken.digest}, and this image would be ${top.digest}; versions are immutable`,
      'tag a new version (--bump patch), or pass --force to replace it',
    );
  }
  const replaces = taken?.digest && taken.digest !== top.digest ? taken.digest : undefined;
  // Recorded only once the version is allowed: a refused tag leaves the project's images as they were.
  await recordLocalImages(tag.projectDir, Object.fromEntries(options.references.map((r) => [r, { top, base: stored.base }])));
  const facts = imageFacts(tagged);
  const host = tagged.platforms.find((p) => p.config.architecture === (process.arch === 'x64' ? 'amd64' : process.arch));
  if (
    tag.docker &&
    host &&
    (await tag.docker
      .getImage(options.sourceId)
      .inspect()
      .then(
        () => true,
        () => false,
      ))
  ) {
    await loadArchive(tag.docker, dockerArchive(store, { top: host.descriptor, platforms: [host] }, options.references));
  }
  return {
    imageId: facts.imageId,
    digest: top.digest,
    ...(replaces ? { replaces } : {}),
    sbomFacts: { labels: facts.labels, architecture: facts.architecture },
  };
}

/** .mlops/last-tag.json, and each alias moved in .mlops/aliases.json. */
async function recordTag(options: TagOptions, tagged: Tagged, record: { version: string; reference: string; name: string; aliases: TagResult['aliases'] }) {
  const { version, reference, name, aliases } = record;
  const { imageId, digest, replaces } = tagged;
  const at = new Date().toISOString();
  await writeFileAtomic(
    path.join(options.projectDir, '.mlops', 'last-tag.json'),
    JSON.stringify({ version, reference, imageId, digest, ...(replaces ? { replaces } : {}), repository: name, aliases: options.aliases, at }, null, 2) + '\n',
  );
  if (aliases.length > 0)
    await recordAliases(
      options.projectDir,
      aliases.map((a) => ({ ...a, version, at })),
    );
}

/** The SBOM again, now with the version and the test metrics in its model card; an image another mlops built has none here (push says so too). */
async function versionSbom(options: TagOptions, tagged: Tagged, name: string, version: string): Promise<TagResult['sbom']> {
  const { imageId, sbomFacts } = tagged;
  const sbomJson = sbomFacts ? imageSbom({ name, version, imageId, ...sbomFacts }) : localImageSbom(options.docker!, imageId, { name, version });
  return await sbomJson.then(
    (json) => writeSbomFile(options.projectDir, json).then((file) => ({ file, problem: null })),
    (error: unknown) => {
      if (!isMlopsError(error)) throw error;
      return { file: null, problem: error.message };
    },
  );
}

/** Gives an image a semantic version (and aliases), stamped with its test and bench results. */
export async function tagVersion(options: TagOptions): Promise<TagResult> {
  const ref = parseReference(options.repository);
  if (ref.tag || ref.digest) throw inputError(`image.repository ${options.repository}: a repository, without a tag`);
  const store = sharedBlobStore(options.env);
  const { stored, sourceId, modelSha256 } = await imageToTag(options, store);
  checkAliases(options.aliases);

  const { listing, checked } = await existing(options, ref);
  const version = chosenVersion(options, listing);
  const taken = checkVersionAllowed(options, listing, version, modelSha256);
  const name = localName(ref);

  const labels = await reportLabels(options.projectDir, sourceId);
  const reference = `${name}:${version}`;
  const stamp = { ...labels, 'org.opencontainers.image.version': version, [RELEASE_VERSION_LABEL]: version, 'mlops.model.version': version };
  // The server reports this as model_version (metadata, answers, the inference log): the release, not config's model.version.
  const env = { MLOPS_MODEL_VERSION: version };
  let tagged: Tagged;
  if (stored) {
    const references = [reference, ...options.aliases.map((a) => `${name}:${a}`)];
    tagged = await tagStored({ tag: options, store, stored, sourceId, version, taken, references, stamp, env });
  } else {
    const imageId = await relabel(options.docker!, sourceId, reference, stamp, env);
    for (const alias of options.aliases) await options.docker!.getImage(imageId).tag({ repo: name, tag: alias });
    tagged = { imageId, digest: null, sbomFacts: null };
  }
  const aliases = options.aliases.map((alias) => ({ alias, reference: `${name}:${alias}`, previous: listing.aliases[alias] ?? null }));
  await recordTag(options, tagged, { version, reference, name, aliases });
  const sbom = await versionSbom(options, tagged, name, version);
  return { version, reference, imageId: tagged.imageId, digest: tagged.digest, modelSha256, checked, aliases, labels, sbom };
}

/** A new image that is the old one plus labels and environment: a build with no layers, no context but its Dockerfile. */
async function relabel(docker: Docker, imageId: string, reference: string, labels: Record<string, string>, env: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mlops-tag-'));
  try {
    const pairs = (values: Record<string, string>) =>
      Object.entries(values)
        .map(([k, v]) => `${k}=${dockerfileString(v)}`)
        .join(' \\\n      ');
    await writeFile(path.join(dir, 'Dockerfile'), `FROM ${imageId}\nLABEL ${pairs(labels)}\nENV ${pairs(env)}\n`);
    const ref = reference.slice(0, reference.lastIndexOf(':'));
    const tag = reference.slice(reference.lastIndexOf(':') + 1);
    const stream = await docker.buildImage(tar.pack(dir) as unknown as NodeJS.ReadableStream, { t: `${ref}:${tag}`, rm: true });
    let id: string | undefined;
    let failure: string | undefined;
    await new Promise<void>((resolve, reject) =>
      docker.modem.followProgress(
        stream,
        (error: Error | null) => (error ? reject(error) : resolve()),
        (event: { aux?: { ID?: string }; error?: string }) => {
          if (event.aux?.ID) id = event.aux.ID;
          if (event.error) failure = event.error;
        },
      ),
    );
    if (failure || !id) throw environmentError(`labelling the image failed: ${failure ?? 'no image id'}`);
    return id;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Every alias move, in order, in .mlops/aliases.json. */
async function recordAliases(
  projectDir: string,
  moves: { alias: string; reference: string; previous: string | null; version: string; at: string }[],
): Promise<void> {
  const file = path.join(projectDir, '.mlops', 'aliases.json');
  const history = ((await readJson(file)) as unknown as { moves?: unknown[] } | undefined)?.moves ?? [];
  await writeFileAtomic(file, JSON.stringify({ moves: [...history, ...moves] }, null, 2) + '\n');
}
