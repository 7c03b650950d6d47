import { connectDocker } from '../docker/client.js';
import { ExitCode, inputError } from '../errors.js';
import { aliasesThatMove, pushImages, type PushResult } from '../release/push.js';
import { sharedBlobStore } from '../oci/blob-store.js';
import { imageFacts, readStoredImage } from '../oci/image.js';
import { findLocalImage } from '../project/local-images.js';
import { pushStoredImage } from '../registry/push-stored.js';
import { uploadStallMs } from '../registry/blobs.js';
import { fetchBaseBlob } from '../image/base-image.js';
import type { ImageFacts } from '../supply-chain/publish.js';
import { localName, parseReference } from '../registry/reference.js';
import { isCI } from '../ui/environment.js';
import type { CommandContext } from './context.js';
import { configuredRepository } from '../project/repository.js';
import { readLastTag } from '../project/last-tag.js';
import { RegistryClient } from '../registry/client.js';
import { resolveCredentials } from '../registry/credentials.js';
import { loadSigningKey } from '../supply-chain/keys.js';
import { attachSupplyChain } from '../supply-chain/publish.js';
import { requireSbomLabels } from '../supply-chain/sbom.js';

export interface PushFlags {
  yes?: boolean;
}

/** The key's base64 lines are masked too: no output may carry a piece of a private key. */
function maskPem(ctx: CommandContext, pem: string | undefined): void {
  if (!pem) return;
  ctx.reporter.maskSecret(pem);
  for (const line of pem.replace(/\\n/g, '\n').split('\n')) if (line.trim().length >= 16 && !line.startsWith('-----')) ctx.reporter.maskSecret(line.trim());
}

async function checkAliases(ctx: CommandContext, flags: PushFlags, repository: string, aliases: string[], version: string): Promise<void> {
  if (aliases.length === 0 || !isCI(ctx.env) || flags.yes) return;
  const moving = await aliasesThatMove(ctx.env, repository, aliases, version);
  if (moving.length > 0)
    throw inputError(`refusing to move alias ${moving.map((a) => `'${a}'`).join(', ')} in the registry in CI without --yes`, 'pass --yes to confirm');
}

export async function run(version: string | undefined, flags: PushFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const last = await readLastTag(baseDir);
  const chosen = version ?? last?.version;
  if (!chosen) throw inputError('no version to push', 'run `mlops tag <version>` first, or name the version: mlops push 1.2.0');
  const repository = localName(parseReference(configuredRepository(config, baseDir)));
  const aliases = last && last.version === chosen && last.repository === repository ? last.aliases : [];
  const references = [`${repository}:${chosen}`, ...aliases.map((a) => `${repository}:${a}`)];
  // The key is read (and a bad one refused) before anything is pushed.
  const key = await loadSigningKey(ctx.env, config.sign.keyFile, baseDir);
  maskPem(ctx, ctx.env.MLOPS_SIGNING_KEY);
  const stored = await findLocalImage(baseDir, references[0]);
  const ref = parseReference(references[0]);
  const credentials = await resolveCredentials(ref.registry, ctx.env);
  const client = new RegistryClient(ref.registry, credentials);
  let facts: ImageFacts;
  let result: PushResult;
  if (stored) {
    // Built daemonless: pushed from the blob cache by mlops itself, no engine involved.
    const store = sharedBlobStore(ctx.env);
    const image = await readStoredImage(store, stored.image.top);
    facts = imageFacts(image);
    requireSbomLabels(references[0], facts.labels);
    await checkAliases(ctx, flags, repository, aliases, chosen);
    if (credentials) ctx.reporter.maskSecret(credentials.password);
    await client.ping();
    // A version in the registry is what was signed and deployed: pushing another image under its name is refused.
    const there = await client.rawManifest(ref.repository, chosen);
    if (there && there.digest !== image.top.digest && !(last?.version === chosen && last.replaces === there.digest)) {
      throw inputError(
        `${references[0]} is already in the registry as ${there.digest}, and this one is ${image.top.digest}; versions are immutable`,
        'tag a new version (mlops tag --bump patch) and push that',
      );
    }
    const base = stored.image.base;
    result = await ctx.reporter.step(
      `Pushing ${references.join(', ')}`,
      async (task) => {
        const pushed = await pushStoredImage(
          client,
          ref.repository,
          store,
          image,
          references.map((r) => parseReference(r).tag!),
          {
            mountFrom: base?.registry === ref.registry && base.repository ? [base.repository] : [],
            stallMs: uploadStallMs(ctx.env),
            fetchMissing: async (blob) =>
              base ? fetchBaseBlob(base, blob.digest, store, ctx.env) : Promise.reject(new Error(`blob ${blob.digest} is missing from the cache`)),
            onProgress: (line) => task.update(line),
          },
        );
        const size = image.platforms[0].manifest.layers.reduce((t, l) => t + l.size, 0);
        return {
          registry: ref.registry,
          digest: pushed.digest,
          sizeBytes: size,
          pushed: references.map((r) => `${localName(parseReference(r))}:${parseReference(r).tag}`),
          attempts: 1,
          blobs: pushed,
        };
      },
      (r) => `Pushed ${r.pushed.join(', ')}`,
    );
  } else {
    const docker = await connectDocker(ctx.env);
    const local = await docker
      .getImage(references[0])
      .inspect()
      .catch(() => null);
    if (local) requireSbomLabels(references[0], local.Config.Labels ?? {});
    await checkAliases(ctx, flags, repository, aliases, chosen);
    result = await ctx.reporter.step(
      `Pushing ${references.join(', ')}`,
      (task) =>
        pushImages({
          docker,
          env: ctx.env,
          references,
          onSecret: (secret) => ctx.reporter.maskSecret(secret),
          onProgress: (line, transient) => (transient ? task.progress(line) : task.update(line)),
        }),
      (r) => `Pushed ${r.pushed.join(', ')}`,
    );
    const info = await docker.getImage(references[0]).inspect();
    facts = { imageId: info.Id, labels: info.Config.Labels ?? {}, architecture: info.Architecture };
  }
  const supplyChain = await ctx.reporter.step(
    key ? `Signing ${chosen} and attaching its SBOM` : `Attaching the SBOM of ${chosen}`,
    () =>
      attachSupplyChain({
        facts,
        env: ctx.env,
        client,
        projectDir: baseDir,
        image: references[0],
        name: repository,
        repository: ref.repository,
        version: chosen,
        digest: result.digest,
        key,
      }),
    (r) =>
      `${r.signature ? `Signed with key ${r.signature.keyId.slice(0, 12)}; ` : ''}SBOM attached (${r.via === 'referrers-api' ? 'OCI referrers' : 'referrers tag schema'}; ${r.seconds} s, ${(r.bytes / 1024).toFixed(1)} KiB)`,
  );
  if (!supplyChain.signature)
    ctx.reporter.warn(`${chosen} was pushed unsigned: no signing key (set MLOPS_SIGNING_KEY or sign.keyFile; \`mlops keygen\` makes a pair)`);
  ctx.reporter.result({ ...result, version: chosen, signed: supplyChain.signature !== null, supplyChain }, (r, s) =>
    [
      `${s.bold('digest')} ${r.digest}`,
      `${s.bold('pushed')} ${r.pushed.join(', ')}`,
      `${s.bold('signed')} ${r.supplyChain.signature ? `yes, key ${r.supplyChain.signature.keyId.slice(0, 12)}` : 'no'}`,
      `${s.bold('sbom')}   ${r.supplyChain.sbom.file}`,
    ].join('\n'),
  );
  return ExitCode.ok;
}
