import type Docker from 'dockerode';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { tail } from '../docker/client.js';
import { environmentError, inputError } from '../errors.js';
import { inspectModel } from '../model/inspect.js';
import { PROFILE_LABEL, profileSha256 } from '../monitor/profile.js';
import { optimizedModelLabels } from '../model/optimized.js';
import { VERSION } from '../version.js';
import { assembleContext, packContext, PLATFORMS, type ImageModel, type Platform } from './context.js';
import { packageDir } from '../packages.js';
import { sharedBlobStore, type BlobStore } from '../oci/blob-store.js';
import type { StoredImage } from '../oci/image.js';
import { dockerArchive, writeDockerArchive, writeLayout } from '../oci/layout.js';
import { RegistryClient } from '../registry/client.js';
import { resolveCredentials } from '../registry/credentials.js';
import { pushStoredImage, type PushStoredResult } from '../registry/push-stored.js';
import { uploadStallMs } from '../registry/blobs.js';
import { parseReference } from '../registry/reference.js';
import { recordLocalImages } from '../project/local-images.js';
import { loadArchive } from '../docker/load.js';
import { resolveBase, type BaseImage } from './base-image.js';
import { writeOciImage, type PlatformBuild } from './oci-builder.js';
import { loadProcessing, rawInputKind, servableSignature, type ProcessingOverrides, type ProcessingPlan } from '../processing/plan.js';
import { readFileSync } from 'node:fs';
import {
  IMAGING_LABEL,
  MODELS_LABEL,
  MODEL_FILES_LABEL,
  MODEL_INPUTS_LABEL,
  MODEL_NAME_LABEL,
  MODEL_OUTPUTS_LABEL,
  MODEL_SHA256_LABEL,
  MODEL_TAKES_LABEL,
} from '../model/labels.js';
import { createHash } from 'node:crypto';
import { buildTimestamp, gitInfo } from './git.js';

/** Where a daemonless build goes besides the cache: a registry (image.repository's), an OCI layout folder, a `docker load` archive. */
export type BuildOutput = { kind: 'registry' } | { kind: 'oci'; path: string } | { kind: 'docker'; path: string };

export interface BuildImageOptions {
  /** docker: the engine's builder (needs `docker`); oci: in-process, no daemon. */
  builder: 'docker' | 'oci';
  /** The engine: the docker builder's, and for the oci builder where to load the image when one answers (null: none). */
  docker: Docker | null;
  /** oci builder: where the image goes. Absent: the registry when image.repository names one, and the engine when one answers. */
  outputs?: BuildOutput[];
  /** SOURCE_DATE_EPOCH is read from here (default: the process's). */
  env?: NodeJS.ProcessEnv;
  /** Where git is asked for the revision. */
  cwd: string;
  modelPath: string;
  modelName: string;
  modelVersion: string;
  repository: string;
  baseImage: string;
  /** One or more, comma-separated; several need the oci builder. */
  platform: string;
  port: number;
  grpcPort: number;
  /** Extra tags: "v1" (on the repository) or full references "registry/x:v1". */
  tags: string[];
  /** The reference profile's JSON (see src/monitor/reference.ts), baked in beside the model. */
  referenceProfile: string;
  /** Server settings the image carries as environment variables. */
  serverEnv: Record<string, string>;
  /** Build every layer again, ignoring the engine's cache. */
  noCache?: boolean;
  /**
   * Several models (or versions) in one image: each its own layer. The fields above then describe the
   * first, whose labels (mlops.model.*) the image carries for tools that read one; mlops.models lists all.
   */
  models?: {
    name: string;
    version: string;
    modelPath: string;
    referenceProfile: string;
    weight: number;
    shadow: boolean;
    workers: number;
    batching: { enabled: boolean; maxBatchSize: number; maxWaitMs: number };
    processing?: ProcessingOverrides;
  }[];
  /** The config's model.preprocess and model.postprocess (the model folder's files say the rest). */
  processing?: ProcessingOverrides;
  onProgress?: (line: string) => void;
}

export interface BuildResult {
  builder: 'docker' | 'oci';
  /** The engine's image id; for the oci builder the (first platform's) config digest, which is the id Docker gives it when loaded. */
  imageId: string;
  /** The manifest's digest (an index's for several platforms): the oci builder's, which the registry keeps; null from the engine's builder. */
  digest: string | null;
  /** What was written besides the cache: "registry", "docker engine", "oci:<dir>", "docker:<file>". */
  outputs: string[];
  push: PushStoredResult | null;
  tags: string[];
  sizeBytes: number;
  /** Bytes over the base image: what mlops adds (runtime, server, model). */
  addedBytes: number | null;
  baseImage: string;
  platform: string;
  seconds: number;
  labels: Record<string, string>;
  model: { path: string; name: string; version: string; sha256: string };
}

const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

interface FolderProcessing {
  files: ProcessingPlan['files'];
  takes?: 'image' | 'text';
  /** The config's settings when any is set: written beside the model. */
  overrides?: ProcessingOverrides;
  /** What of the folder changes what is served: each file's sha256, and the settings. */
  identity: string[];
}

/** A model's folder as the image carries it: the files its plan reads, and the config's settings over them. */
async function folderProcessing(model: Awaited<ReturnType<typeof inspectModel>>, overrides: ProcessingOverrides | undefined): Promise<FolderProcessing> {
  const plan = await loadProcessing(model.path, servableSignature(model), overrides);
  const set = overrides && (Object.keys(overrides.preprocess ?? {}).length > 0 || Object.keys(overrides.postprocess ?? {}).length > 0) ? overrides : undefined;
  const files = plan?.files ?? [];
  return { files, takes: rawInputKind(plan), overrides: set, identity: [...files.map((f) => `${f.name}:${f.sha256}`), ...(set ? [JSON.stringify(set)] : [])] };
}

/** sharp's and libvips' versions, as the image carries them. */
function imagingVersions(): string {
  const sharp = JSON.parse(readFileSync(path.join(packageDir('sharp'), 'package.json'), 'utf8')) as { version: string; config?: { libvips?: string } };
  return `sharp ${sharp.version}${sharp.config?.libvips ? `, libvips ${sharp.config.libvips}` : ''}`;
}

/** "v1" -> "repo:v1"; "registry/x:v1" stays; anything else is refused before building. */
export function resolveTag(repository: string, tag: string): string {
  const lastSlash = tag.lastIndexOf('/');
  const colon = tag.indexOf(':', lastSlash + 1);
  if (colon === -1 && lastSlash === -1) {
    if (!TAG.test(tag)) throw inputError(`--tag ${tag}: not a valid tag`, 'use letters, digits, "_", "." and "-" (at most 128, not starting with "." or "-")');
    return `${repository}:${tag}`;
  }
  const name = colon === -1 ? tag : tag.slice(0, colon);
  const version = colon === -1 ? 'latest' : tag.slice(colon + 1);
  if (!TAG.test(version) || !/^[a-z0-9][a-z0-9._\-/:]*$/.test(name)) {
    throw inputError(`--tag ${tag}: not a valid image reference`, 'use "tag" or "repository:tag" in lowercase');
  }
  return `${name}:${version}`;
}

function splitReference(reference: string): { repo: string; tag: string } {
  const colon = reference.lastIndexOf(':');
  return { repo: reference.slice(0, colon), tag: reference.slice(colon + 1) };
}

interface BuildEvent {
  stream?: string;
  status?: string;
  error?: string;
  errorDetail?: { message?: string };
  aux?: { ID?: string };
}

async function runBuild(docker: Docker, contextDir: string, options: Record<string, unknown>, onProgress?: (line: string) => void) {
  const stream = await docker.buildImage(packContext(contextDir), options);
  let output = '';
  let imageId: string | undefined;
  let failure: string | undefined;
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (error: Error | null) => (error ? reject(error) : resolve()),
      (event: BuildEvent) => {
        if (event.stream) {
          output += event.stream;
          const line = event.stream.trim();
          if (/^Step \d+\/\d+ :/.test(line)) onProgress?.(line);
        }
        if (event.status) output += `${event.status}\n`;
        if (event.aux?.ID) imageId = event.aux.ID;
        if (event.error) {
          failure = event.errorDetail?.message ?? event.error;
          output += `${failure}\n`;
        }
      },
    );
  });
  return { output, imageId, failure };
}

/**
 * The base image as the engine has it: pulled first when missing (the build would pull it anyway),
 * so that its digest can be labelled; null when it cannot be had (the build then says why).
 */
async function localBaseImage(docker: Docker, reference: string): Promise<{ id: string; digest: string | null; size: number } | null> {
  const inspect = () => docker.getImage(reference).inspect();
  const info = await inspect().catch(async () => {
    await new Promise<void>((resolve, reject) => {
      void docker.pull(reference, (error: Error | null, stream: NodeJS.ReadableStream) =>
        error ? reject(error) : docker.modem.followProgress(stream, (e: Error | null) => (e ? reject(e) : resolve())),
      );
    }).catch(() => undefined);
    return inspect().catch(() => null);
  });
  if (!info) return null;
  const name = reference.replace(/@.*$/, '').replace(/:[^/:]+$/, '');
  const digest =
    (info.RepoDigests ?? [])
      .find((d) => d.startsWith(`${name}@`) || d.startsWith(`docker.io/${name}@`) || d.startsWith(`docker.io/library/${name}@`))
      ?.split('@')[1] ?? null;
  return { id: info.Id, digest, size: info.Size };
}

interface Prepared {
  model: Awaited<ReturnType<typeof inspectModel>>;
  own: FolderProcessing;
  repository: (ImageModel & { folder: FolderProcessing })[] | undefined;
  imaging: boolean;
  primary: string;
  extra: string[];
  /** Every label but the base's, which each builder adds from the base it found. */
  labels: Record<string, string>;
  created: string;
}

async function prepare(options: BuildImageOptions): Promise<Prepared> {
  const model = await inspectModel(options.modelPath, { cwd: options.cwd });
  const own = await folderProcessing(model, options.processing);
  const repository: (ImageModel & { folder: FolderProcessing })[] | undefined = options.models
    ? await Promise.all(
        options.models.map(async (m) => {
          const info = await inspectModel(m.modelPath, { cwd: options.cwd });
          const folder = await folderProcessing(info, m.processing);
          return {
            ...m,
            modelPath: info.path,
            externalData: info.externalData,
            sha256: info.sha256,
            modelFiles: folder.files.map((f) => f.path),
            processing: folder.overrides,
            folder,
          };
        }),
      )
    : undefined;
  // Several models: the tag names them all (each name, version, file and profile), so a change to any is a new tag.
  // A model folder's processing files and settings are part of what is served: a change to them is a new tag too.
  const digest = repository
    ? createHash('sha256')
        .update(
          JSON.stringify(repository.map((m) => [m.name, m.version, m.sha256, profileSha256(m.referenceProfile), m.weight, m.shadow, ...m.folder.identity])),
        )
        .digest('hex')
    : own.identity.length > 0
      ? createHash('sha256')
          .update(JSON.stringify([model.sha256, ...own.identity]))
          .digest('hex')
      : model.sha256;
  const imaging = own.takes === 'image' || (repository ?? []).some((m) => m.folder.takes === 'image');
  const primary = `${options.repository}:sha-${digest.slice(0, 12)}`;
  const extra = [...new Set(options.tags.map((t) => resolveTag(options.repository, t)))].filter((t) => t !== primary);
  const git = await gitInfo(options.cwd);
  // Symbolic dimension names go along where the model has them: sample requests size a shared `batch` together.
  const signature = (specs: typeof model.inputs) =>
    JSON.stringify(specs.map(({ name, datatype, shape, dims }) => ({ name, datatype, shape, ...(dims?.some((d) => typeof d === 'string') ? { dims } : {}) })));
  // Not the clock: a rebuild of an unchanged model must hit the cache and give the same image id.
  const created = (await buildTimestamp(options.cwd, model.path, options.env ?? process.env)).toISOString();
  const labels: Record<string, string> = {
    'org.opencontainers.image.title': options.modelName,
    'org.opencontainers.image.version': options.modelVersion,
    'org.opencontainers.image.created': created,
    'org.opencontainers.image.base.name': options.baseImage,
    // The OCI spec wants a URL here: without a git remote the label is left out, never "unknown".
    ...(git.source ? { 'org.opencontainers.image.source': git.source } : {}),
    ...(git.revision ? { 'org.opencontainers.image.revision': git.revision } : {}),
    [MODEL_NAME_LABEL]: options.modelName,
    'mlops.model.version': options.modelVersion,
    [MODEL_SHA256_LABEL]: model.sha256,
    ...(model.opset !== null ? { 'mlops.model.opset': String(model.opset) } : {}),
    'mlops.model.ir_version': String(model.irVersion),
    // A model `mlops optimize` made says so, and names the model it came from.
    ...optimizedModelLabels(model.metadata),
    ...(model.producer.name ? { 'mlops.model.producer': `${model.producer.name}${model.producer.version ? ` ${model.producer.version}` : ''}` } : {}),
    [MODEL_INPUTS_LABEL]: signature(model.inputs),
    [MODEL_OUTPUTS_LABEL]: signature(model.outputs),
    [PROFILE_LABEL]: profileSha256(options.referenceProfile),
    // The model folder's files the server reads (their sha256), and what the model takes raw.
    ...(own.files.length > 0 ? { [MODEL_FILES_LABEL]: JSON.stringify(own.files.map((f) => ({ name: f.name, sha256: f.sha256 }))) } : {}),
    ...(own.takes ? { [MODEL_TAKES_LABEL]: own.takes } : {}),
    ...(imaging ? { [IMAGING_LABEL]: imagingVersions() } : {}),
    ...(repository
      ? { [MODELS_LABEL]: JSON.stringify(repository.map((m) => ({ name: m.name, version: m.version, sha256: m.sha256, weight: m.weight, shadow: m.shadow }))) }
      : {}),
    'mlops.version': VERSION,
  };
  return { model, own, repository, imaging, primary, extra, labels, created };
}

/** The labels that name the base: its manifest digest where it came from a registry, its config digest (image id) always. */
function baseLabels(digest: string | null, id: string | null): Record<string, string> {
  return { ...(digest ? { 'org.opencontainers.image.base.digest': digest } : {}), ...(id ? { 'mlops.base.id': id } : {}) };
}

/** The context for one platform: the files each layer copies, and the recipe both builders follow. */
async function assemble(dir: string, options: BuildImageOptions, prepared: Prepared, platform: Platform, labels: Record<string, string>) {
  return assembleContext(dir, {
    modelPath: prepared.model.path,
    externalData: prepared.model.externalData,
    modelSha256: prepared.model.sha256,
    modelName: options.modelName,
    modelVersion: options.modelVersion,
    baseImage: options.baseImage,
    platform,
    port: options.port,
    grpcPort: options.grpcPort,
    labels,
    referenceProfile: options.referenceProfile,
    serverEnv: options.serverEnv,
    repository: prepared.repository,
    modelFiles: prepared.own.files.map((f) => f.path),
    processing: prepared.own.overrides,
    imaging: prepared.imaging,
  });
}

/** "linux/amd64,linux/arm64" -> each, checked. */
export function parsePlatforms(value: string): Platform[] {
  const platforms = [
    ...new Set(
      value
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean),
    ),
  ];
  for (const p of platforms)
    if (!(p in PLATFORMS)) throw inputError(`--platform ${p}: unsupported`, `use one of ${Object.keys(PLATFORMS).join(', ')}, or both comma-separated`);
  if (platforms.length === 0) throw inputError('--platform: no platform given', `use one of ${Object.keys(PLATFORMS).join(', ')}`);
  return platforms as Platform[];
}

/**
 * Builds the image: through the Engine API (builder docker), or in-process with no daemon (builder
 * oci). Either way, on a failure no tag is left behind.
 */
export async function buildModelImage(options: BuildImageOptions): Promise<BuildResult> {
  const started = performance.now();
  const platforms = parsePlatforms(options.platform);
  if (options.builder === 'docker' && platforms.length > 1)
    throw inputError(
      `--platform ${options.platform}: the Docker builder makes one platform at a time`,
      'use --builder oci for an index of several platforms (no emulation needed)',
    );
  const prepared = await prepare(options);
  const result = options.builder === 'docker' ? await dockerBuild(options, prepared, platforms[0]) : await ociBuild(options, prepared, platforms);
  return {
    ...result,
    tags: [prepared.primary, ...prepared.extra],
    baseImage: options.baseImage,
    platform: platforms.join(','),
    seconds: Math.round((performance.now() - started) / 10) / 100,
    model: { path: prepared.model.path, name: options.modelName, version: options.modelVersion, sha256: prepared.model.sha256 },
  };
}

type BuilderResult = Pick<BuildResult, 'builder' | 'imageId' | 'digest' | 'sizeBytes' | 'addedBytes' | 'labels' | 'outputs' | 'push'>;

/** Whether a repository names its registry (registry.example.com/team/model, localhost:5000/model), so a build can push there. */
export function namesRegistry(repository: string): boolean {
  const first = repository.split('/')[0];
  return repository.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
}

/**
 * Each platform's context, in its own folder (added to `dirs`, which the caller removes), with its base
 * resolved; and the labels the image gets.
 */
async function platformBuilds(
  options: BuildImageOptions,
  prepared: Prepared,
  platforms: Platform[],
  store: BlobStore,
  dirs: string[],
): Promise<{ builds: PlatformBuild[]; labels: Record<string, string> }> {
  const builds: PlatformBuild[] = [];
  let labels = prepared.labels;
  for (const platform of platforms) {
    const base = await resolveBase(options.baseImage, platform, options.env ?? process.env, store);
    // One platform: the base's labels as the engine's builder writes them. Several: each platform's manifest names its base in annotations.
    labels = {
      ...prepared.labels,
      'org.opencontainers.image.base.name': base.name,
      ...(platforms.length === 1 ? baseLabels(base.manifestDigest, base.configDigest) : {}),
    };
    const dir = await mkdtemp(path.join(tmpdir(), 'mlops-build-'));
    dirs.push(dir);
    builds.push({ contextDir: dir, recipe: await assemble(dir, options, prepared, platform, labels), base });
  }
  return { builds, labels };
}

/** The base's layers into the cache: an archive or a layout holds them, where a registry push may mount them. */
async function fetchBaseLayers(store: BlobStore, builds: PlatformBuild[]): Promise<void> {
  for (const b of builds) for (const layer of b.base.layers) await b.base.fetchLayer(store, layer);
}

/** The built image to each output: pushed to the registry, or written as an OCI layout or a Docker archive. Says where it went. */
async function writeOutputs(options: {
  outputs: BuildOutput[];
  env: NodeJS.ProcessEnv;
  store: BlobStore;
  image: StoredImage;
  references: string[];
  builds: PlatformBuild[];
  onProgress?: (line: string) => void;
}): Promise<{ written: string[]; push: PushStoredResult | null }> {
  const { store, image, references, builds } = options;
  const written: string[] = [];
  let push: PushStoredResult | null = null;
  for (const output of options.outputs) {
    if (output.kind === 'registry') {
      options.onProgress?.(`pushing ${references.join(', ')}`);
      push = await pushToRegistry(
        options.env,
        store,
        image,
        references,
        builds.map((b) => b.base),
        options.onProgress,
      );
      written.push('registry');
    } else {
      await fetchBaseLayers(store, builds);
      await (output.kind === 'oci' ? writeLayout(store, image, output.path, references) : writeDockerArchive(store, image, output.path, references)).catch(
        (error: NodeJS.ErrnoException) => {
          throw environmentError(
            `writing ${output.kind}:${output.path} failed: ${error.code ?? error.message}`,
            error.code === 'ENOSPC' ? 'free space on that disk, or write elsewhere' : 'check the path and its permissions',
            undefined,
            error,
          );
        },
      );
      written.push(`${output.kind}:${output.path}`);
    }
  }
  return { written, push };
}

/** The host's platform of the image, loaded into the engine; false when the image has none for this host. */
async function loadHostPlatform(options: {
  docker: Docker;
  store: BlobStore;
  image: StoredImage;
  platforms: Platform[];
  references: string[];
  builds: PlatformBuild[];
  onProgress?: (line: string) => void;
}): Promise<boolean> {
  const { store, image, platforms } = options;
  const host = platforms.find((p) => PLATFORMS[p] === process.arch);
  if (!host) return false;
  await fetchBaseLayers(store, options.builds);
  options.onProgress?.('loading the image into the Docker engine');
  const single = { top: image.platforms[platforms.indexOf(host)].descriptor, platforms: [image.platforms[platforms.indexOf(host)]] };
  await loadArchive(options.docker, dockerArchive(store, single, options.references));
  return true;
}

async function ociBuild(options: BuildImageOptions, prepared: Prepared, platforms: Platform[]): Promise<BuilderResult> {
  const env = options.env ?? process.env;
  const store = sharedBlobStore(env);
  const outputs = options.outputs ?? [...(namesRegistry(options.repository) ? [{ kind: 'registry' as const }] : [])];
  const docker = options.outputs ? null : options.docker;
  if (outputs.filter((o) => o.kind === 'docker').length > 0 && platforms.length > 1)
    throw inputError('--output docker:<file>: a Docker archive holds one platform', 'build one --platform for it, or write --output oci:<dir> for several');
  const dirs: string[] = [];
  try {
    const { builds, labels } = await platformBuilds(options, prepared, platforms, store, dirs);
    const image = await writeOciImage(store, builds, prepared.created, { reuse: !options.noCache, onProgress: options.onProgress });
    const references = [prepared.primary, ...prepared.extra];
    const [first] = builds;
    const baseRecord = { name: first.base.source, ...(first.base.origin ?? {}) };
    await recordLocalImages(options.cwd, Object.fromEntries(references.map((r) => [r, { top: image.top, base: baseRecord }])));
    const { onProgress } = options;
    const { written, push } = await writeOutputs({ outputs, env, store, image, references, builds, onProgress });
    if (docker && (await loadHostPlatform({ docker, store, image, platforms, references, builds, onProgress }))) written.push('docker engine');
    const own = (p: (typeof image.platforms)[number]) => p.manifest.layers.slice(p.manifest.layers.length - builds[0].recipe.layers.length);
    const sum = (layers: { size: number }[]) => layers.reduce((t, l) => t + l.size, 0);
    const [main] = image.platforms;
    return {
      builder: 'oci',
      imageId: main.manifest.config.digest,
      digest: image.top.digest,
      sizeBytes: sum(main.manifest.layers),
      addedBytes: sum(own(main)),
      labels,
      outputs: written,
      push,
    };
  } finally {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  }
}

async function pushToRegistry(
  env: NodeJS.ProcessEnv,
  store: BlobStore,
  image: StoredImage,
  references: string[],
  bases: BaseImage[],
  onProgress?: (line: string) => void,
): Promise<PushStoredResult> {
  const ref = parseReference(references[0]);
  const client = new RegistryClient(ref.registry, await resolveCredentials(ref.registry, env));
  await client.ping();
  const mountFrom = [...new Set(bases.filter((b) => b.origin?.registry === ref.registry).map((b) => b.origin!.repository))];
  return pushStoredImage(
    client,
    ref.repository,
    store,
    image,
    references.map((r) => parseReference(r).tag!),
    {
      mountFrom,
      stallMs: uploadStallMs(env),
      fetchMissing: async (blob) => {
        const owner = bases.find((b) => b.layers.some((l) => l.digest === blob.digest));
        if (!owner) throw environmentError(`blob ${blob.digest} is missing from the cache`);
        await owner.fetchLayer(store, blob);
      },
      onProgress,
    },
  );
}

/** The engine's builder: the context sent to the Engine API with its Dockerfile. */
async function dockerBuild(options: BuildImageOptions, prepared: Prepared, platform: Platform): Promise<BuilderResult> {
  if (!options.docker) throw environmentError('the docker builder needs a Docker engine', 'use --builder oci to build without one');
  const docker = options.docker;
  const { primary, extra } = prepared;
  const base = await localBaseImage(docker, options.baseImage);
  const labels = { ...prepared.labels, ...baseLabels(base?.digest ?? null, base?.id ?? null) };
  const contextDir = await mkdtemp(path.join(tmpdir(), 'mlops-build-'));
  try {
    await assemble(contextDir, options, prepared, platform, labels);
    let build: Awaited<ReturnType<typeof runBuild>>;
    try {
      build = await runBuild(docker, contextDir, { t: primary, platform, rm: true, forcerm: true, nocache: Boolean(options.noCache) }, options.onProgress);
    } catch (error) {
      throw environmentError(`docker build failed: ${(error as Error).message}`, 'check the engine with `docker info`', undefined, error);
    }
    if (build.failure || !build.imageId) {
      const missingBase = /pull access denied|not found|manifest unknown|no such image|dial tcp|lookup .* on/i.test(build.failure ?? '');
      throw environmentError(
        missingBase
          ? `docker build failed: base image ${options.baseImage} is not available locally and could not be pulled`
          : `docker build failed: ${build.failure ?? 'the engine reported no image id'}`,
        missingBase
          ? `pull it first (\`docker pull ${options.baseImage}\`), or pick another with --base or image.base`
          : 'the engine output above says which step failed',
        tail(build.output),
      );
    }
    const added: string[] = [];
    try {
      for (const reference of extra) {
        const { repo, tag } = splitReference(reference);
        await docker.getImage(build.imageId).tag({ repo, tag });
        added.push(reference);
      }
    } catch (error) {
      for (const reference of [...added, primary])
        await docker
          .getImage(reference)
          .remove({ noprune: true })
          .catch(() => undefined);
      throw environmentError(`tagging the image failed: ${(error as Error).message}`, 'check the --tag values', undefined, error);
    }
    const image = await docker.getImage(build.imageId).inspect();
    return {
      builder: 'docker',
      imageId: build.imageId,
      digest: null,
      sizeBytes: image.Size,
      addedBytes: base ? image.Size - base.size : null,
      labels,
      outputs: ['docker engine'],
      push: null,
    };
  } finally {
    await rm(contextDir, { recursive: true, force: true });
  }
}
