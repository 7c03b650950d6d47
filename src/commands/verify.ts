import path from 'node:path';
import { ExitCode, inputError } from '../errors.js';
import { readLastTag } from '../project/last-tag.js';
import { configuredRepository } from '../project/repository.js';
import { RegistryClient } from '../registry/client.js';
import { resolveCredentials } from '../registry/credentials.js';
import { localName, parseReference } from '../registry/reference.js';
import { loadPublicKey } from '../supply-chain/keys.js';
import { verifyRelease } from '../supply-chain/verify.js';
import type { CommandContext } from './context.js';

export interface VerifyFlags {
  key?: string;
}

export async function run(flags: VerifyFlags, ctx: CommandContext, version: string | undefined): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const keyFile = flags.key ? path.resolve(ctx.cwd, flags.key) : config.deploy.verify.key ? path.resolve(baseDir, config.deploy.verify.key) : '';
  if (!keyFile) throw inputError('no public key to verify with', 'pass --key mlops.pub, or set deploy.verify.key');
  const { publicKey, keyId } = await loadPublicKey(keyFile, flags.key ? '--key' : 'deploy.verify.key');
  const reference = version ?? (await readLastTag(baseDir))?.version;
  if (!reference) throw inputError('no version to verify', 'name one: mlops verify 1.2.0');
  const ref = parseReference(configuredRepository(config, baseDir));
  if (ref.registry === 'docker.io' && !config.image.repository.includes('/')) {
    throw inputError(
      `image.repository '${config.image.repository}' names no registry: signatures live in the registry`,
      'set image.repository to registry.example.com/team/model and `mlops push`',
    );
  }
  const credentials = await resolveCredentials(ref.registry, ctx.env);
  ctx.reporter.maskSecret(credentials?.password);
  const task = ctx.reporter.task(`Verifying ${localName(ref)}:${reference}`);
  let result;
  try {
    result = await verifyRelease({
      client: new RegistryClient(ref.registry, credentials),
      name: localName(ref),
      repository: ref.repository,
      reference,
      publicKey,
      keyId,
    });
  } catch (error) {
    task.fail();
    throw error;
  }
  const ok = result.problems.length === 0;
  if (ok) task.succeed(`Verified ${reference} (${result.digest})`);
  else task.fail(`${reference} does not verify`);
  ctx.reporter.result({ ...result, verified: ok }, (r, s) =>
    ok
      ? [
          `${s.green('✔')} ${s.bold(`${localName(ref)}:${r.reference}`)} is signed by key ${r.keyId.slice(0, 12)}`,
          `  digest ${r.digest}`,
          `  model  ${r.modelSha256.label} (label, SBOM and signature agree)`,
        ].join('\n')
      : [`${s.red('✖')} ${s.bold(`${localName(ref)}:${r.reference}`)} (${r.digest}) does not verify:`, ...r.problems.map((p) => `  - ${p}`)].join('\n'),
  );
  return ok ? ExitCode.ok : ExitCode.gateFailed;
}
