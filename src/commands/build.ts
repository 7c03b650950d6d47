import path from 'node:path';
import { connectDocker } from '../docker/client.js';
import { ExitCode } from '../errors.js';
import { buildModelImage } from '../image/build.js';
import { writeLastBuild } from '../image/last-build.js';
import { defaultModelName } from '../model/inspect.js';
import type { CommandContext } from './context.js';

export interface BuildFlags {
  model?: string;
  tag: string[];
  base?: string;
  platform?: string;
  cache?: boolean;
}

const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

export async function run(flags: BuildFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const modelPath = flags.model ? path.resolve(ctx.cwd, flags.model) : path.resolve(baseDir, config.model.path);
  const modelName = config.model.name || defaultModelName(modelPath);
  const docker = await connectDocker(ctx.env);
  const result = await ctx.reporter.step(
    `Building image for ${modelName}`,
    (task) =>
      buildModelImage({
        docker,
        cwd: baseDir,
        modelPath: path.relative(baseDir, modelPath) || modelPath,
        modelName,
        modelVersion: config.model.version,
        repository: config.image.repository || modelName,
        baseImage: flags.base ?? config.image.base,
        platform: flags.platform ?? config.image.platform,
        port: config.image.port,
        grpcPort: config.image.grpcPort,
        tags: flags.tag,
        noCache: flags.cache === false,
        onProgress: (line) => task.update(line),
      }),
    (r) => `Built ${r.tags[0]} in ${r.seconds} s`,
  );
  await writeLastBuild(baseDir, {
    imageId: result.imageId,
    tags: result.tags,
    repository: result.tags[0].slice(0, result.tags[0].lastIndexOf(':')),
    baseImage: result.baseImage,
    platform: result.platform,
    sizeBytes: result.sizeBytes,
    builtAt: result.labels['org.opencontainers.image.created'],
    model: result.model,
  });
  ctx.reporter.result(
    {
      imageId: result.imageId,
      tags: result.tags,
      sizeBytes: result.sizeBytes,
      addedBytes: result.addedBytes,
      baseImage: result.baseImage,
      platform: result.platform,
      seconds: result.seconds,
    },
    (r, s) =>
      [
        `${s.bold('image')}    ${r.imageId}`,
        `${s.bold('tags')}     ${r.tags.join(', ')}`,
        `${s.bold('size')}     ${megabytes(r.sizeBytes)}${r.addedBytes !== null ? ` (${megabytes(r.addedBytes)} over ${r.baseImage})` : ''}`,
        `${s.bold('platform')} ${r.platform}`,
        `${s.bold('seconds')}  ${r.seconds}`,
      ].join('\n'),
  );
  return ExitCode.ok;
}
