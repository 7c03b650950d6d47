import type Docker from 'dockerode';
import path from 'node:path';
import type { Config } from '../config/defaults.js';
import { lastBuildReference, selectModels } from '../config/models.js';
import { defaultModelName } from '../model/inspect.js';
import type { ReferenceProfile } from '../monitor/profile.js';
import { buildReferenceProfile } from '../monitor/reference.js';
import { writeLastBuild } from '../project/last-build.js';
import { writeFileAtomic } from '../report/files.js';
import { imageServerEnv } from '../server/options.js';
import { imageSbom, localImageSbom, writeSbomFile } from '../supply-chain/sbom.js';
import { absoluteBase } from './base-image.js';
import { buildModelImage, type BuildImageOptions, type BuildOutput, type BuildResult } from './build.js';

/** How a build shows its stages and warnings: the CLI passes its reporter, whose steps are spinners or plain lines. */
export interface BuildReporter {
  step<T>(title: string, work: (task: { update(line: string): void }) => Promise<T>, done: (value: T) => string): Promise<T>;
  warn(message: string): void;
}

export interface BuildModelOptions {
  /** Where the command runs: modelFile and baseImage are relative to it; the config's paths are relative to projectDir. */
  cwd: string;
  projectDir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  builder: 'docker' | 'oci';
  /** The engine: the docker builder's, and for the oci builder where to load the image when one answers (null: none). */
  docker: Docker | null;
  /** The model file or export folder (default: model.path); only for a config of one model. */
  modelFile?: string;
  /** Tags beyond the version's: "v1" (on the repository) or full references. */
  tags: string[];
  /** A base image over image.base: a reference, oci:<dir>[:<tag>] or docker-archive:<file.tar>. */
  baseImage?: string;
  /** One or more platforms, comma-separated, already checked. */
  platform: string;
  /** oci builder: where the image goes besides the cache (default: the registry image.repository names, and the engine). */
  outputs?: BuildOutput[];
  /** Build again only to compare: the digest the rebuild must have. Nothing but the cache is written. */
  expectedDigest?: string;
  /** Rebuild every layer, ignoring the caches. */
  noCache: boolean;
  reporter: BuildReporter;
}

/** A build that was recorded as the last one, or a rebuild compared with the digest it had to reproduce. */
export type BuildModelResult = { status: 'built'; image: BuildResult; sbom: string } | { status: 'checked'; image: BuildResult; reproduced: boolean };

type ImageModel = NonNullable<BuildImageOptions['models']>[number];

/**
 * What `mlops build` does: profiles the reference data of each model, builds the image, and records
 * what later commands read (the reference profiles, the SBOM, the last build).
 */
export async function buildModel(options: BuildModelOptions): Promise<BuildModelResult> {
  const { config, projectDir } = options;
  const models = await profileModels(options);
  const [first] = models.filter((m) => !m.shadow);
  const modelPath = first
    ? path.resolve(projectDir, first.modelPath)
    : options.modelFile
      ? path.resolve(options.cwd, options.modelFile)
      : path.resolve(projectDir, config.model.path);
  const modelName = first?.name ?? (config.model.name || defaultModelName(modelPath));
  let referenceProfile: string;
  if (first) referenceProfile = first.referenceProfile;
  else {
    const profile = await profileReference(options, modelPath, modelName, config);
    for (const warning of profile.warnings) options.reporter.warn(warning);
    referenceProfile = JSON.stringify(profile) + '\n';
  }
  const image = await options.reporter.step(
    `Building image for ${first ? models.map((m) => `${m.name}:${m.version}`).join(', ') : modelName}`,
    (task) =>
      buildModelImage({
        builder: options.builder,
        docker: options.docker,
        // A check writes nothing but the cache.
        outputs: options.expectedDigest ? [] : options.outputs,
        cwd: projectDir,
        env: options.env,
        modelPath: path.relative(projectDir, modelPath) || modelPath,
        modelName,
        modelVersion: first?.version ?? config.model.version,
        models: first ? models : undefined,
        repository: config.image.repository || modelName,
        // A base given as a file: the option's from where the command runs, image.base from the config's folder.
        baseImage: options.baseImage ? absoluteBase(options.baseImage, options.cwd) : absoluteBase(config.image.base, projectDir),
        platform: options.platform,
        port: config.image.port,
        grpcPort: config.image.grpcPort,
        tags: options.tags,
        referenceProfile,
        serverEnv: imageServerEnv(config),
        processing: { preprocess: config.model.preprocess, postprocess: config.model.postprocess },
        noCache: options.noCache,
        onProgress: (line) => task.update(line),
      }),
    (r) =>
      `Built ${r.tags[0]}${r.digest ? ` (${r.digest.slice(0, 19)})` : ''} in ${r.seconds} s${r.push ? `; pushed ${r.push.uploaded} blobs (${(r.push.bytesSent / 1e6).toFixed(1)} MB), ${r.push.present + r.push.mounted} already there` : ''}`,
  );
  if (options.expectedDigest) return { status: 'checked', image, reproduced: image.digest === options.expectedDigest };
  return { status: 'built', image, sbom: await recordBuild(options, image, referenceProfile, models) };
}

/** One model's reference profile, as a step of its own. */
function profileReference(options: BuildModelOptions, modelPath: string, modelName: string, config: Config, label = ''): Promise<ReferenceProfile> {
  const { projectDir } = options;
  return options.reporter.step(
    `Profiling the reference data${label}`,
    (task) =>
      buildReferenceProfile({
        modelPath: path.relative(projectDir, modelPath) || modelPath,
        modelName,
        config,
        projectDir,
        onProgress: (rows) => task.update(`Profiling the reference data${label}: ${rows} rows`),
      }),
    (p) =>
      p.source
        ? `Profiled ${p.source.rows} reference rows${label} from ${p.source.file}: ${p.features.length} features`
        : `No reference profile${label}: ${p.unavailable}`,
  );
}

/** Several models: each version profiled against its model's own reference data, in config order. None for a config of one model. */
async function profileModels(options: BuildModelOptions): Promise<ImageModel[]> {
  const { config, projectDir } = options;
  const models: ImageModel[] = [];
  for (const { entry, config: own } of config.models.length > 0 ? selectModels(config) : []) {
    for (const v of entry!.versions) {
      const modelPath = path.resolve(projectDir, v.path);
      const profile = await profileReference(options, modelPath, entry!.name, own, ` for ${entry!.name} version ${v.version}`);
      for (const warning of profile.warnings) options.reporter.warn(`${entry!.name} version ${v.version}: ${warning}`);
      models.push({
        name: entry!.name,
        version: v.version,
        modelPath: path.relative(projectDir, modelPath) || modelPath,
        referenceProfile: JSON.stringify(profile) + '\n',
        weight: v.weight,
        shadow: v.shadow,
        workers: entry!.workers,
        batching: entry!.batching,
        processing: { preprocess: entry!.preprocess, postprocess: entry!.postprocess },
      });
    }
  }
  return models;
}

/** What later commands read of this build: the reference profiles, the SBOM and the last-build record. Returns the SBOM's path. */
async function recordBuild(options: BuildModelOptions, image: BuildResult, referenceProfile: string, models: ImageModel[]): Promise<string> {
  const { projectDir } = options;
  // `mlops monitor --prometheus` compares with this when no --reference is given.
  await writeFileAtomic(path.join(projectDir, '.mlops', 'reference-profile.json'), referenceProfile);
  // Several models: each model's own (its first serving version's), for `monitor --prometheus` and `--emit`.
  for (const m of models.filter((m, i) => !m.shadow && models.findIndex((o) => o.name === m.name && !o.shadow) === i)) {
    await writeFileAtomic(path.join(projectDir, lastBuildReference(m.name).relative), m.referenceProfile);
  }
  const [repository, buildTag] = [image.tags[0].slice(0, image.tags[0].lastIndexOf(':')), image.tags[0].slice(image.tags[0].lastIndexOf(':') + 1)];
  const sbomJson =
    image.builder === 'docker'
      ? await localImageSbom(options.docker!, image.imageId, { name: repository, version: buildTag })
      : await imageSbom({
          name: repository,
          version: buildTag,
          imageId: image.imageId,
          labels: image.labels,
          architecture: image.platform.split(',')[0].split('/')[1],
        });
  const sbom = await writeSbomFile(projectDir, sbomJson);
  await writeLastBuild(projectDir, {
    builder: image.builder,
    digest: image.digest,
    imageId: image.imageId,
    tags: image.tags,
    repository,
    baseImage: image.baseImage,
    platform: image.platform,
    sizeBytes: image.sizeBytes,
    builtAt: image.labels['org.opencontainers.image.created'],
    model: image.model,
  });
  return sbom;
}
