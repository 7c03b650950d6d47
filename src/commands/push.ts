import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { connectDocker } from '../docker/client.js';
import { ExitCode, inputError } from '../errors.js';
import { aliasesThatMove, pushImages } from '../registry/push.js';
import { localName, parseReference } from '../registry/reference.js';
import { isCI } from '../ui/environment.js';
import type { CommandContext } from './context.js';
import { configuredRepository } from '../project/repository.js';

export interface PushFlags {
  yes?: boolean;
}

interface LastTag {
  version: string;
  repository: string;
  aliases: string[];
}

export async function run(version: string | undefined, flags: PushFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const last = await readFile(path.join(baseDir, '.mlops', 'last-tag.json'), 'utf8')
    .then((t) => JSON.parse(t) as LastTag)
    .catch(() => undefined);
  const chosen = version ?? last?.version;
  if (!chosen) throw inputError('no version to push', 'run `mlops tag <version>` first, or name the version: mlops push 1.2.0');
  const repository = localName(parseReference(configuredRepository(config, baseDir)));
  const aliases = last && last.version === chosen && last.repository === repository ? last.aliases : [];
  const references = [`${repository}:${chosen}`, ...aliases.map((a) => `${repository}:${a}`)];
  const docker = await connectDocker(ctx.env);
  if (aliases.length > 0 && isCI(ctx.env) && !flags.yes) {
    const moving = await aliasesThatMove(ctx.env, repository, aliases, chosen);
    if (moving.length > 0) throw inputError(`refusing to move alias ${moving.map((a) => `'${a}'`).join(', ')} in the registry in CI without --yes`, 'pass --yes to confirm');
  }
  const result = await ctx.reporter.step(
    `Pushing ${references.join(', ')}`,
    (task) =>
      pushImages({ docker, env: ctx.env, references, onSecret: (secret) => ctx.reporter.maskSecret(secret), onProgress: (line, transient) => (transient ? task.progress(line) : task.update(line)) }),
    (r) => `Pushed ${r.pushed.join(', ')}`,
  );
  ctx.reporter.result({ ...result, version: chosen }, (r, s) => `${s.bold('digest')} ${r.digest}\n${s.bold('pushed')} ${r.pushed.join(', ')}`);
  return ExitCode.ok;
}
