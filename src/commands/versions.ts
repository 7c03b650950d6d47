import { connectDocker } from '../docker/client.js';
import { ExitCode } from '../errors.js';
import { RegistryClient } from '../registry/client.js';
import { resolveCredentials } from '../registry/credentials.js';
import { localName, parseReference } from '../registry/reference.js';
import { localVersions, mergeListings, registryVersions, storedVersions } from '../release/versions.js';
import { sharedBlobStore } from '../oci/blob-store.js';
import { renderTable } from '../ui/reporter.js';
import type { CommandContext } from './context.js';
import path from 'node:path';
import { loadPublicKey } from '../supply-chain/keys.js';
import { configuredRepository } from '../project/repository.js';

/** What fits in a terminal; --json has every result label. */
const HEADLINE = ['test.passed', 'test.accuracy', 'test.f1_macro', 'test.r2', 'test.rmse', 'bench.p95_ms', 'bench.throughput_rps'];

export interface VersionsFlags {
  repository?: string;
  key?: string;
}

export async function run(flags: VersionsFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const ref = parseReference(flags.repository ?? configuredRepository(config, baseDir));
  const inRegistry = ref.registry !== 'docker.io' || Boolean(flags.repository);
  let listing;
  if (inRegistry) {
    const credentials = await resolveCredentials(ref.registry, ctx.env);
    ctx.reporter.maskSecret(credentials?.password);
    // The key `mlops verify` takes: versions are shown signed only when it verifies them.
    const keyFile = flags.key ? path.resolve(ctx.cwd, flags.key) : config.deploy.verify.key ? path.resolve(baseDir, config.deploy.verify.key) : '';
    const key = keyFile ? await loadPublicKey(keyFile, flags.key ? '--key' : 'deploy.verify.key') : undefined;
    listing = await registryVersions(new RegistryClient(ref.registry, credentials), ref.repository, key, localName(ref));
  } else {
    // Images tagged here without a daemon, and the engine's when one answers.
    const docker = await connectDocker(ctx.env).catch(() => null);
    listing = mergeListings(
      await storedVersions(baseDir, sharedBlobStore(ctx.env), ref),
      docker ? await localVersions(docker, ref) : { versions: [], aliases: {} },
    );
  }
  const result = { repository: localName(ref), registry: inRegistry ? ref.registry : null, source: inRegistry ? 'registry' : 'local', ...listing };
  ctx.reporter.result(result, (r, s) => {
    if (r.versions.length === 0) return `no versions of ${r.repository} yet (${r.source})`;
    const rows = r.versions.map((v) => [
      s.bold(v.version),
      (v.digest ?? v.imageId ?? '').replace(/^sha256:/, '').slice(0, 12),
      v.created ? v.created.replace(/\.\d+Z$/, 'Z') : '',
      (v.modelSha256 ?? '').slice(0, 12),
      HEADLINE.filter((k) => v.metrics[k] !== undefined)
        .map((k) => `${k.replace(/^(test|bench)\./, '')}=${v.metrics[k]}`)
        .join(' '),
      v.signature === null
        ? '-'
        : v.signature === 'verified'
          ? s.green('verified')
          : v.signature === 'does not verify'
            ? s.red('does not verify')
            : s.yellow(v.signature === 'not checked' ? 'not checked (no key)' : 'unsigned'),
      v.aliases.join(', '),
    ]);
    return `${r.repository} (${r.source})\n\n${renderTable(['version', 'digest', 'created', 'model', 'results', 'signature', 'aliases'], rows)}`;
  });
  return ExitCode.ok;
}
