import type { Config } from '../config/defaults.js';
import { connectDocker } from '../docker/client.js';
import { environmentError, inputError } from '../errors.js';
import { Readable } from 'node:stream';
import { BlobStore, sharedBlobStore } from '../oci/blob-store.js';
import { layoutSpec } from '../oci/layout.js';
import { imageFacts, readStoredImage } from '../oci/image.js';
import { findLocalImage, type LocalImage } from '../project/local-images.js';
import { readLastTag, type LastTag } from '../project/last-tag.js';
import { configuredRepository } from '../project/repository.js';
import { uploadStallMs } from '../registry/blobs.js';
import { RegistryClient } from '../registry/client.js';
import { resolveCredentials, type Credentials } from '../registry/credentials.js';
import { pushStoredImage, type PushStoredResult } from '../registry/push-stored.js';
import { localName, parseReference } from '../registry/reference.js';
import { loadSigningKey } from '../supply-chain/keys.js';
import { attachSupplyChain, type ImageFacts, type SupplyChainResult } from '../supply-chain/publish.js';
import { requireSbomLabels } from '../supply-chain/sbom.js';
import { aliasesThatMove, pushImages, type PushResult } from './push.js';

/** How a push shows its steps, and keeps secrets out of every line: the CLI passes its reporter. */
export interface PushReporter {
  /** transient progress (bytes so far) goes to `progress`, which a plain log drops; `update` is a line worth keeping. */
  step<T>(title: string, work: (task: { update(line: string): void; progress(line: string): void }) => Promise<T>, done: (value: T) => string): Promise<T>;
  maskSecret(secret: string | undefined): void;
}

export interface PushVersionOptions {
  projectDir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  /** The version to push (default: the last `mlops tag`'s). */
  version?: string;
  /** Running in CI, where moving an alias in the registry must be confirmed. */
  ci: boolean;
  /** Moving an alias in the registry is confirmed (--yes). */
  confirmAliasMoves: boolean;
  reporter: PushReporter;
}

/** A version in the registry: where it went, its digest, and its SBOM and signature. `blobs`: how a daemonless image's blobs went. */
export type PushedVersion = PushResult & { blobs?: PushStoredResult; version: string; signed: boolean; supplyChain: SupplyChainResult };

/** The version being pushed: its references (the version's first, then its aliases') in one repository. */
interface Release {
  version: string;
  repository: string;
  aliases: string[];
  references: string[];
  last: LastTag | undefined;
}

type Pushed = { result: PushResult & { blobs?: PushStoredResult }; facts: ImageFacts };

/**
 * What `mlops push` does: pushes a version (default: the last tagged) and its aliases to the registry,
 * from the blob cache for a daemonless build or through the engine, then attaches its SBOM and, given a
 * key, its signature.
 */
export async function pushVersion(options: PushVersionOptions): Promise<PushedVersion> {
  const { config, projectDir, env, reporter } = options;
  const last = await readLastTag(projectDir);
  const version = options.version ?? last?.version;
  if (!version) throw inputError('no version to push', 'run `mlops tag <version>` first, or name the version: mlops push 1.2.0');
  const repository = localName(parseReference(configuredRepository(config, projectDir)));
  const aliases = last && last.version === version && last.repository === repository ? last.aliases : [];
  const release: Release = { version, repository, aliases, references: [`${repository}:${version}`, ...aliases.map((a) => `${repository}:${a}`)], last };
  // The key is read (and a bad one refused) before anything is pushed.
  const key = await loadSigningKey(env, config.sign.keyFile, projectDir);
  maskPem(reporter, env.MLOPS_SIGNING_KEY);
  const stored = await findLocalImage(projectDir, release.references[0]);
  const ref = parseReference(release.references[0]);
  const credentials = await resolveCredentials(ref.registry, env);
  const client = new RegistryClient(ref.registry, credentials);
  const { result, facts } = stored ? await pushFromStore(options, release, stored.image, client, credentials) : await pushThroughEngine(options, release);
  const supplyChain = await reporter.step(
    key ? `Signing ${version} and attaching its SBOM` : `Attaching the SBOM of ${version}`,
    () =>
      attachSupplyChain({
        facts,
        env,
        client,
        projectDir,
        image: release.references[0],
        name: repository,
        repository: ref.repository,
        version,
        digest: result.digest,
        key,
      }),
    (r) =>
      `${r.signature ? `Signed with key ${r.signature.keyId.slice(0, 12)}; ` : ''}SBOM attached (${r.via === 'referrers-api' ? 'OCI referrers' : 'referrers tag schema'}; ${r.seconds} s, ${(r.bytes / 1024).toFixed(1)} KiB)`,
  );
  return { ...result, version, signed: supplyChain.signature !== null, supplyChain };
}

/** The key's base64 lines are masked too: no output may carry a piece of a private key. */
function maskPem(reporter: PushReporter, pem: string | undefined): void {
  if (!pem) return;
  reporter.maskSecret(pem);
  for (const line of pem.replace(/\\n/g, '\n').split('\n')) if (line.trim().length >= 16 && !line.startsWith('-----')) reporter.maskSecret(line.trim());
}

async function checkAliases(options: PushVersionOptions, release: Release): Promise<void> {
  if (release.aliases.length === 0 || !options.ci || options.confirmAliasMoves) return;
  const moving = await aliasesThatMove(options.env, release.repository, release.aliases, release.version);
  if (moving.length > 0)
    throw inputError(`refusing to move alias ${moving.map((a) => `'${a}'`).join(', ')} in the registry in CI without --yes`, 'pass --yes to confirm');
}

/** Built daemonless: pushed from the blob cache by mlops itself, no engine involved. */
async function pushFromStore(
  options: PushVersionOptions,
  release: Release,
  stored: LocalImage,
  client: RegistryClient,
  credentials: Credentials | undefined,
): Promise<Pushed> {
  const { env, reporter } = options;
  const { version, references, last } = release;
  const ref = parseReference(references[0]);
  const store = sharedBlobStore(env);
  const image = await readStoredImage(store, stored.top);
  const facts = imageFacts(image);
  requireSbomLabels(references[0], facts.labels);
  await checkAliases(options, release);
  if (credentials) reporter.maskSecret(credentials.password);
  await client.ping();
  // A version in the registry is what was signed and deployed: pushing another image under its name is refused.
  const there = await client.rawManifest(ref.repository, version);
  if (there && there.digest !== image.top.digest && !(last?.version === version && last.replaces === there.digest)) {
    throw inputError(
      `${references[0]} is already in the registry as ${there.digest}, and this one is ${image.top.digest}; versions are immutable`,
      'tag a new version (mlops tag --bump patch) and push that',
    );
  }
  const base = stored.base;
  const result = await reporter.step(
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
          stallMs: uploadStallMs(env),
          fetchMissing: async (blob) =>
            base ? fetchBaseBlob(base, blob.digest, store, env) : Promise.reject(new Error(`blob ${blob.digest} is missing from the cache`)),
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
  return { result, facts };
}

/** Built by the engine: pushed by it, with the registry's credentials. */
async function pushThroughEngine(options: PushVersionOptions, release: Release): Promise<Pushed> {
  const { env, reporter } = options;
  const { references } = release;
  const docker = await connectDocker(env);
  const local = await docker
    .getImage(references[0])
    .inspect()
    .catch(() => null);
  if (local) requireSbomLabels(references[0], local.Config.Labels ?? {});
  await checkAliases(options, release);
  const result = await reporter.step(
    `Pushing ${references.join(', ')}`,
    (task) =>
      pushImages({
        docker,
        env,
        references,
        onSecret: (secret) => reporter.maskSecret(secret),
        onProgress: (line, transient) => (transient ? task.progress(line) : task.update(line)),
      }),
    (r) => `Pushed ${r.pushed.join(', ')}`,
  );
  const info = await docker.getImage(references[0]).inspect();
  return { result, facts: { imageId: info.Id, labels: info.Config.Labels ?? {}, architecture: info.Architecture } };
}

/** One blob of a base recorded by a daemonless build (.mlops/images.json), into the store: what a later push needs when the registry lacks it. */
async function fetchBaseBlob(
  base: { name: string; registry?: string; repository?: string },
  digest: string,
  store: BlobStore,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  if (await store.has(digest)) return;
  if (base.name.startsWith('oci:')) return new BlobStore(layoutSpec(base.name).dir).copyTo(store, digest);
  if (!base.registry || !base.repository)
    throw environmentError(`blob ${digest} of base image ${base.name} is no longer in the cache`, 'build again (mlops build) to fetch it');
  const client = new RegistryClient(base.registry, await resolveCredentials(base.registry, env));
  const res = await client.blob(base.repository, digest);
  await store.write(Readable.fromWeb(res.body! as never), digest);
}
