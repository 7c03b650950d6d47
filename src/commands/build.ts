import type Docker from 'dockerode';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ChalkInstance } from 'chalk';
import { connectDocker } from '../docker/client.js';
import { ExitCode, inputError } from '../errors.js';
import { parsePlatforms, type BuildOutput, type BuildResult } from '../image/build.js';
import { buildModel, type BuildModelOptions } from '../image/build-model.js';
import { isOciLayout } from '../oci/layout.js';
import type { Config } from '../config/defaults.js';
import type { CommandContext } from './context.js';

export interface BuildFlags {
  /** Also the command's argument, which wins. */
  model?: string;
  tag: string[];
  base?: string;
  platform?: string;
  /** false with --no-cache. */
  cache: boolean;
  builder?: string;
  output: string[];
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

/** What the flags ask of the build, every one checked (in this order) before the reference data is profiled. */
async function buildOptions(flags: BuildFlags, config: Config, ctx: CommandContext): Promise<Omit<BuildModelOptions, 'projectDir' | 'config' | 'reporter'>> {
  if (flags.model && config.models.length > 0)
    throw inputError('--model: the config lists several models (models); build packages them all', 'leave out --model, or build from a config with one model');
  const outputs = await parseOutputs(flags.output, ctx.cwd);
  const platform = flags.platform ?? config.image.platform;
  parsePlatforms(platform);
  if (flags.check && !/^sha256:[0-9a-f]{64}$/.test(flags.check))
    throw inputError(`--check ${flags.check}: not a digest`, 'pass the digest a build printed: sha256:<64 hex>');
  const { builder, docker } = await chooseBuilder(flags.builder ?? config.image.builder, ctx.env, Boolean(outputs || flags.check || platform.includes(',')));
  return {
    cwd: ctx.cwd,
    env: ctx.env,
    builder,
    docker,
    modelFile: flags.model,
    tags: flags.tag,
    baseImage: flags.base,
    platform,
    outputs,
    expectedDigest: flags.check,
    noCache: flags.cache === false,
  };
}

export async function run(flags: BuildFlags, ctx: CommandContext, model: string | undefined): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const options = await buildOptions({ ...flags, ...(model ? { model } : {}) }, config, ctx);
  const built = await buildModel({ ...options, projectDir: baseDir, config, reporter: ctx.reporter });
  if (built.status === 'checked') {
    const { image, reproduced } = built;
    const created = image.labels['org.opencontainers.image.created'];
    ctx.reporter.result({ check: options.expectedDigest, digest: image.digest, reproduced, created, tags: image.tags }, renderCheck);
    return reproduced ? ExitCode.ok : ExitCode.gateFailed;
  }
  const { image, sbom } = built;
  ctx.reporter.result(
    {
      builder: image.builder,
      imageId: image.imageId,
      digest: image.digest,
      tags: image.tags,
      sizeBytes: image.sizeBytes,
      addedBytes: image.addedBytes,
      baseImage: image.baseImage,
      platform: image.platform,
      seconds: image.seconds,
      outputs: image.outputs,
      push: image.push,
      sbom,
    },
    renderBuild,
  );
  return ExitCode.ok;
}

function renderCheck(r: { check?: string; digest: string | null; reproduced: boolean; created: string }, s: ChalkInstance): string {
  return r.reproduced
    ? `${s.green('✔')} reproduced ${r.digest}`
    : `${s.red('✘')} the rebuild gives ${r.digest}, not ${r.check}\n  its created time, part of the digest, is ${r.created}: from SOURCE_DATE_EPOCH, else the model's last commit, else the model file's time (a copy outside git has a new one)`;
}

/** The --json document of a build: the image's facts but its labels and model, and where its SBOM was written. */
type BuildDocument = Omit<BuildResult, 'labels' | 'model'> & { sbom: string };

function renderBuild(r: BuildDocument, s: ChalkInstance): string {
  return [
    `${s.bold('image')}    ${r.imageId}`,
    ...(r.digest ? [`${s.bold('digest')}   ${r.digest}`] : []),
    `${s.bold('builder')}  ${r.builder}${r.outputs.length > 0 ? ` (${r.outputs.join(', ')})` : ''}`,
    `${s.bold('tags')}     ${r.tags.join(', ')}`,
    `${s.bold('size')}     ${megabytes(r.sizeBytes)}${r.addedBytes !== null ? ` (${megabytes(r.addedBytes)} over ${r.baseImage})` : ''}`,
    `${s.bold('platform')} ${r.platform}`,
    `${s.bold('seconds')}  ${r.seconds}`,
    `${s.bold('sbom')}     ${r.sbom}`,
  ].join('\n');
}
