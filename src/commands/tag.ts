import { connectDocker } from '../docker/client.js';
import { ExitCode, inputError } from '../errors.js';
import { readLastBuild } from '../project/last-build.js';
import { findLocalImage } from '../project/local-images.js';
import { tagVersion, type Bump } from '../release/tag.js';
import { isCI } from '../ui/environment.js';
import type { CommandContext } from './context.js';
import { configuredRepository } from '../project/repository.js';

export interface TagFlags {
  bump?: string;
  image?: string;
  alias: string[];
  force?: boolean;
  yes?: boolean;
  offline?: boolean;
}

export async function run(flags: TagFlags, ctx: CommandContext, version: string | undefined): Promise<number> {
  const { config, baseDir } = await ctx.config();
  if (flags.bump && !['patch', 'minor', 'major'].includes(flags.bump)) throw inputError(`--bump ${flags.bump}: expected patch, minor or major`);
  if (flags.bump && version) throw inputError('give a version or --bump, not both');
  const last = flags.image ? undefined : await readLastBuild(baseDir);
  // A daemonless build is found by its reference in .mlops/images.json; the engine's by its image id.
  const image = flags.image ?? (last!.builder === 'oci' ? last!.tags[0] : last!.imageId);
  const stored = await findLocalImage(baseDir, image);
  const docker = stored ? await connectDocker(ctx.env).catch(() => null) : await connectDocker(ctx.env);
  const result = await tagVersion({
    docker,
    env: ctx.env,
    projectDir: baseDir,
    image,
    repository: configuredRepository(config, baseDir),
    version,
    bump: flags.bump as Bump | undefined,
    aliases: flags.alias,
    force: Boolean(flags.force),
    ci: isCI(ctx.env),
    yes: Boolean(flags.yes),
    offline: Boolean(flags.offline),
  });
  if (result.sbom.problem) ctx.reporter.warn(`no SBOM for ${result.reference}: ${result.sbom.problem}`);
  ctx.reporter.result(result, (r, s) =>
    [
      `${s.green('✔')} tagged ${s.bold(r.reference)} (model ${r.modelSha256.slice(0, 12)}; versions checked in the ${r.checked === 'registry' ? 'registry' : 'local images'})`,
      ...(r.digest ? [`  digest ${r.digest} (what \`mlops push\` will store)`] : []),
      ...r.aliases.map((a) => `  alias ${a.reference}${a.previous && a.previous !== r.version ? ` (moved from ${a.previous})` : ''}`),
      Object.keys(r.labels).length > 0
        ? `  labels: ${Object.entries(r.labels)
            .map(([k, v]) => `${k.replace(/^mlops\./, '')}=${v}`)
            .join(' ')}`
        : '  no test or bench report for this build: no result labels',
    ].join('\n'),
  );
  return ExitCode.ok;
}
