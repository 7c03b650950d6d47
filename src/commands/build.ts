import path from 'node:path';
import { connectDocker } from '../docker/client.js';
import { ExitCode, inputError } from '../errors.js';
import type Docker from 'dockerode';
import { buildModelImage, parsePlatforms, type BuildImageOptions, type BuildOutput } from '../image/build.js';
import { absoluteBase } from '../image/base-image.js';
import { isOciLayout } from '../oci/layout.js';
import { open, stat } from 'node:fs/promises';
import { imageServerEnv } from '../server/options.js';
import { writeLastBuild } from '../project/last-build.js';
import { defaultModelName } from '../model/inspect.js';
import { buildReferenceProfile } from '../monitor/reference.js';
import { writeFileAtomic } from '../report/files.js';
import { imageSbom, localImageSbom, writeSbomFile } from '../supply-chain/sbom.js';
import type { CommandContext } from './context.js';
import type { Config } from '../config/defaults.js';
import { lastBuildReference, selectModels } from '../config/models.js';

export interface BuildFlags {
  model?: string;
  tag: string[];
  base?: string;
  platform?: string;
  cache?: boolean;
  builder?: string;
  output?: string[];
  check?: string;
}

/**
 * --output values: registry, oci:<dir>, docker:<file.tar>; each once. A path must be in a folder that
 * exists, and must not hold anything but what the output writes: an OCI layout (added to, as skopeo
 * does) or a tar (replaced, as `docker save -o` does). A holdout or a folder of notes is never overwritten.
 */
async function parseOutputs(values: string[] | undefined, cwd: string): Promise<BuildOutput[] | undefined> {
  if (!values || values.length === 0) return undefined;
  const outputs: BuildOutput[] = [];
  for (const value of [...new Set(values)]) {
    if (value === 'registry') {
      outputs.push({ kind: 'registry' });
      continue;
    }
    const colon = value.indexOf(':');
    const kind = value.slice(0, colon);
    const where = value.slice(colon + 1);
    if ((kind !== 'oci' && kind !== 'docker') || !where) throw inputError(`--output ${value}: not an output`, 'use registry, oci:<dir> or docker:<file.tar>');
    const target = path.resolve(cwd, where);
    const folder = await stat(path.dirname(target)).catch(() => null);
    if (!folder?.isDirectory()) throw inputError(`--output ${value}: the folder ${path.dirname(target)} does not exist`, 'create it first, or write elsewhere');
    const existing = await stat(target).catch(() => null);
    if (existing && kind === 'oci' && !(await isOciLayout(target)))
      throw inputError(`--output ${value}: ${target} exists and is not an OCI image layout`, 'name a new folder, or an existing layout to add the image to');
    if (existing && kind === 'docker' && !(existing.isFile() && (await isTar(target))))
      throw inputError(`--output ${value}: ${target} exists and is not a tar archive`, 'name a new file, or an archive to replace');
    outputs.push({ kind, path: target });
  }
  return outputs;
}

async function isTar(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(512), 0, 512, 0);
    return bytesRead === 512 && buffer.toString('latin1', 257, 262) === 'ustar';
  } finally {
    await handle.close();
  }
}

/**
 * The builder asked for, and the engine when one answers. auto picks the daemonless builder when no
 * engine answers, or when the build asks what only it does (--output, --check, several platforms).
 */
async function chooseBuilder(asked: string, env: NodeJS.ProcessEnv, needsOci: boolean): Promise<{ builder: 'docker' | 'oci'; docker: Docker | null }> {
  if (!['auto', 'docker', 'oci'].includes(asked)) throw inputError(`--builder ${asked}: expected auto, docker or oci`);
  if (asked === 'docker' && needsOci)
    throw inputError("--builder docker: --output, --check and several platforms are the daemonless builder's", 'use --builder oci (or auto)');
  if (asked === 'docker') return { builder: 'docker', docker: await connectDocker(env) };
  const docker = await connectDocker(env).catch(() => null);
  return { builder: asked === 'oci' || needsOci || !docker ? 'oci' : 'docker', docker };
}

const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

export async function run(flags: BuildFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  if (flags.model && config.models.length > 0)
    throw inputError('--model: the config lists several models (models); build packages them all', 'leave out --model, or build from a config with one model');
  // Every flag is checked before the reference data is profiled: a wrong one fails at once.
  const outputs = await parseOutputs(flags.output, ctx.cwd);
  const platform = flags.platform ?? config.image.platform;
  parsePlatforms(platform);
  if (flags.check && !/^sha256:[0-9a-f]{64}$/.test(flags.check))
    throw inputError(`--check ${flags.check}: not a digest`, 'pass the digest a build printed: sha256:<64 hex>');
  const { builder, docker } = await chooseBuilder(flags.builder ?? config.image.builder, ctx.env, Boolean(outputs || flags.check || platform.includes(',')));
  const profileOf = (modelPath: string, modelName: string, own: Config, label = '') =>
    ctx.reporter.step(
      `Profiling the reference data${label}`,
      (task) =>
        buildReferenceProfile({
          modelPath: path.relative(baseDir, modelPath) || modelPath,
          modelName,
          config: own,
          projectDir: baseDir,
          onProgress: (rows) => task.update(`Profiling the reference data${label}: ${rows} rows`),
        }),
      (p) =>
        p.source
          ? `Profiled ${p.source.rows} reference rows${label} from ${p.source.file}: ${p.features.length} features`
          : `No reference profile${label}: ${p.unavailable}`,
    );
  // Several models: each version profiled against its model's own reference data, in config order.
  const models: NonNullable<BuildImageOptions['models']> = [];
  for (const { entry, config: own } of config.models.length > 0 ? selectModels(config) : []) {
    for (const v of entry!.versions) {
      const modelPath = path.resolve(baseDir, v.path);
      const profile = await profileOf(modelPath, entry!.name, own, ` for ${entry!.name} version ${v.version}`);
      for (const warning of profile.warnings) ctx.reporter.warn(`${entry!.name} version ${v.version}: ${warning}`);
      models.push({
        name: entry!.name,
        version: v.version,
        modelPath: path.relative(baseDir, modelPath) || modelPath,
        referenceProfile: JSON.stringify(profile) + '\n',
        weight: v.weight,
        shadow: v.shadow,
        workers: entry!.workers,
        batching: entry!.batching,
        processing: { preprocess: entry!.preprocess, postprocess: entry!.postprocess },
      });
    }
  }
  const [first] = models.filter((m) => !m.shadow);
  const modelPath = first
    ? path.resolve(baseDir, first.modelPath)
    : flags.model
      ? path.resolve(ctx.cwd, flags.model)
      : path.resolve(baseDir, config.model.path);
  const modelName = first?.name ?? (config.model.name || defaultModelName(modelPath));
  let referenceProfile: string;
  if (first) referenceProfile = first.referenceProfile;
  else {
    const profile = await profileOf(modelPath, modelName, config);
    for (const warning of profile.warnings) ctx.reporter.warn(warning);
    referenceProfile = JSON.stringify(profile) + '\n';
  }
  const result = await ctx.reporter.step(
    `Building image for ${first ? models.map((m) => `${m.name}:${m.version}`).join(', ') : modelName}`,
    (task) =>
      buildModelImage({
        builder,
        docker,
        // A check writes nothing but the cache.
        outputs: flags.check ? [] : outputs,
        cwd: baseDir,
        env: ctx.env,
        modelPath: path.relative(baseDir, modelPath) || modelPath,
        modelName,
        modelVersion: first?.version ?? config.model.version,
        models: first ? models : undefined,
        repository: config.image.repository || modelName,
        // A base given as a file: --base from where the command runs, image.base from the config's folder.
        baseImage: flags.base ? absoluteBase(flags.base, ctx.cwd) : absoluteBase(config.image.base, baseDir),
        platform,
        port: config.image.port,
        grpcPort: config.image.grpcPort,
        tags: flags.tag,
        referenceProfile,
        serverEnv: imageServerEnv(config),
        processing: { preprocess: config.model.preprocess, postprocess: config.model.postprocess },
        noCache: flags.cache === false,
        onProgress: (line) => task.update(line),
      }),
    (r) =>
      `Built ${r.tags[0]}${r.digest ? ` (${r.digest.slice(0, 19)})` : ''} in ${r.seconds} s${r.push ? `; pushed ${r.push.uploaded} blobs (${(r.push.bytesSent / 1e6).toFixed(1)} MB), ${r.push.present + r.push.mounted} already there` : ''}`,
  );
  if (flags.check) {
    const same = result.digest === flags.check;
    const created = result.labels['org.opencontainers.image.created'];
    ctx.reporter.result({ check: flags.check, digest: result.digest, reproduced: same, created, tags: result.tags }, (r, s) =>
      same
        ? `${s.green('✔')} reproduced ${r.digest}`
        : `${s.red('✘')} the rebuild gives ${r.digest}, not ${r.check}\n  its created time, part of the digest, is ${r.created}: from SOURCE_DATE_EPOCH, else the model's last commit, else the model file's time (a copy outside git has a new one)`,
    );
    return same ? ExitCode.ok : ExitCode.gateFailed;
  }
  // `mlops monitor --prometheus` compares with this when no --reference is given.
  await writeFileAtomic(path.join(baseDir, '.mlops', 'reference-profile.json'), referenceProfile);
  // Several models: each model's own (its first serving version's), for `monitor --prometheus` and `--emit`.
  for (const m of models.filter((m, i) => !m.shadow && models.findIndex((o) => o.name === m.name && !o.shadow) === i)) {
    await writeFileAtomic(path.join(baseDir, lastBuildReference(m.name).relative), m.referenceProfile);
  }
  const [repository, buildTag] = [result.tags[0].slice(0, result.tags[0].lastIndexOf(':')), result.tags[0].slice(result.tags[0].lastIndexOf(':') + 1)];
  const sbomJson =
    result.builder === 'docker'
      ? await localImageSbom(docker!, result.imageId, { name: repository, version: buildTag })
      : await imageSbom({
          name: repository,
          version: buildTag,
          imageId: result.imageId,
          labels: result.labels,
          architecture: result.platform.split(',')[0].split('/')[1],
        });
  const sbom = await writeSbomFile(baseDir, sbomJson);
  await writeLastBuild(baseDir, {
    builder: result.builder,
    digest: result.digest,
    imageId: result.imageId,
    tags: result.tags,
    repository,
    baseImage: result.baseImage,
    platform: result.platform,
    sizeBytes: result.sizeBytes,
    builtAt: result.labels['org.opencontainers.image.created'],
    model: result.model,
  });
  ctx.reporter.result(
    {
      builder: result.builder,
      imageId: result.imageId,
      digest: result.digest,
      tags: result.tags,
      sizeBytes: result.sizeBytes,
      addedBytes: result.addedBytes,
      baseImage: result.baseImage,
      platform: result.platform,
      seconds: result.seconds,
      outputs: result.outputs,
      push: result.push,
      sbom,
    },
    (r, s) =>
      [
        `${s.bold('image')}    ${r.imageId}`,
        ...(r.digest ? [`${s.bold('digest')}   ${r.digest}`] : []),
        `${s.bold('builder')}  ${r.builder}${r.outputs.length > 0 ? ` (${r.outputs.join(', ')})` : ''}`,
        `${s.bold('tags')}     ${r.tags.join(', ')}`,
        `${s.bold('size')}     ${megabytes(r.sizeBytes)}${r.addedBytes !== null ? ` (${megabytes(r.addedBytes)} over ${r.baseImage})` : ''}`,
        `${s.bold('platform')} ${r.platform}`,
        `${s.bold('seconds')}  ${r.seconds}`,
        `${s.bold('sbom')}     ${r.sbom}`,
      ].join('\n'),
  );
  return ExitCode.ok;
}
