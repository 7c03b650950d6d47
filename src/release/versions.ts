import type Docker from 'dockerode';
import semver from 'semver';
import type { KeyObject } from 'node:crypto';
import { hasSignature, verifyRelease } from '../supply-chain/verify.js';
import type { RegistryClient } from '../registry/client.js';
import { localName, type ImageReference } from '../registry/reference.js';
import type { BlobStore } from '../oci/blob-store.js';
import { readStoredImage } from '../oci/image.js';
import { readLocalImages } from '../project/local-images.js';
import { MODEL_SHA256_LABEL } from '../model/labels.js';

export interface VersionInfo {
  version: string;
  digest: string | null;
  imageId: string | null;
  created: string | null;
  modelSha256: string | null;
  /** mlops.test.* and mlops.bench.* labels, without the prefix "mlops.". */
  metrics: Record<string, string>;
  aliases: string[];
  /** True only when a signature by the key given verifies for this digest (what `mlops verify` checks); null for local images. */
  signed: boolean | null;
  /**
   * What the registry holds: `verified` (by the key given), `does not verify` (`signatureProblem` says why), `not checked`
   * (a signature is attached, and no key was given to check it), `unsigned`; null for local images.
   */
  signature: 'verified' | 'does not verify' | 'not checked' | 'unsigned' | null;
  signatureProblem?: string;
}

/** The key `mlops verify` would use: versions are reported signed only when it verifies them. */
export interface VerifyingKey {
  publicKey: KeyObject;
  keyId: string;
}

export interface VersionListing {
  versions: VersionInfo[];
  /** alias -> version it points to (or the digest, when it points at no version). */
  aliases: Record<string, string>;
}

/** Build tags (sha-...) and the tags signatures and SBOMs are attached by (sha256-<hex>[.sig|.sbom]) are neither versions nor aliases. */
const isBuildTag = (tag: string) => /^sha-[0-9a-f]{12}$/.test(tag) || /^sha256-[0-9a-f]{64}(\.[a-z]+)?$/.test(tag);

export function headlineLabels(labels: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(labels)
      .filter(([k]) => k.startsWith('mlops.test.') || k.startsWith('mlops.bench.'))
      .map(([k, v]) => [k.slice('mlops.'.length), v]),
  );
}

function sortVersions(list: VersionInfo[]): VersionInfo[] {
  return list.sort((a, b) => semver.rcompare(a.version, b.version));
}

/**
 * Versions in a registry repository: semver tags, with their digest, creation time and labels. A version
 * is `signed` only when `key` verifies it as `mlops verify` does; a signature merely attached is `not checked`.
 */
export async function registryVersions(client: RegistryClient, repository: string, key?: VerifyingKey, name = repository): Promise<VersionListing> {
  const tags = await client.tags(repository);
  const digests = new Map<string, string>();
  const versions: VersionInfo[] = [];
  for (const tag of tags) {
    if (isBuildTag(tag)) continue;
    const manifest = await client.manifest(repository, tag);
    if (!manifest) continue;
    digests.set(tag, manifest.digest);
    if (!semver.valid(tag)) continue;
    const config = await client.configBlob(repository, manifest.config.digest);
    const labels = config.config?.Labels ?? {};
    versions.push({
      version: tag,
      digest: manifest.digest,
      imageId: manifest.config.digest,
      created: config.created ?? null,
      modelSha256: labels[MODEL_SHA256_LABEL] ?? null,
      metrics: headlineLabels(labels),
      aliases: [],
      ...(await signatureOf(client, repository, name, tag, manifest.digest, key)),
    });
  }
  return withAliases(versions, digests, (v) => v.digest);
}

/** A version held on this machine: no signature is checked for it (that is the registry's). */
function localVersion(version: string, digest: string | null, imageId: string, created: string | null, labels: Record<string, string>): VersionInfo {
  return {
    version,
    digest,
    imageId,
    created,
    modelSha256: labels[MODEL_SHA256_LABEL] ?? null,
    metrics: headlineLabels(labels),
    aliases: [],
    signed: null,
    signature: null,
  };
}

/** The same, from images on this machine (for repositories not in a registry, and before a push). */
export async function localVersions(docker: Docker, ref: ImageReference): Promise<VersionListing> {
  const name = localName(ref);
  const images = await docker.listImages({ filters: { reference: [name] } });
  const ids = new Map<string, string>();
  const versions: VersionInfo[] = [];
  for (const image of images) {
    for (const repoTag of image.RepoTags ?? []) {
      const tag = repoTag.slice(repoTag.lastIndexOf(':') + 1);
      if (repoTag.slice(0, repoTag.lastIndexOf(':')) !== name || isBuildTag(tag)) continue;
      ids.set(tag, image.Id);
      if (!semver.valid(tag)) continue;
      const digest = image.RepoDigests?.find((d) => d.startsWith(`${name}@`))?.split('@')[1] ?? null;
      versions.push(localVersion(tag, digest, image.Id, new Date(image.Created * 1000).toISOString(), image.Labels ?? {}));
    }
  }
  return withAliases(versions, ids, (v) => v.imageId);
}

/** Versions of images built and tagged here without a daemon (.mlops/images.json, their configs in the blob cache). */
export async function storedVersions(projectDir: string, store: BlobStore, ref: ImageReference): Promise<VersionListing> {
  const name = localName(ref);
  const ids = new Map<string, string>();
  const versions: VersionInfo[] = [];
  for (const [reference, image] of Object.entries(await readLocalImages(projectDir))) {
    const tag = reference.slice(reference.lastIndexOf(':') + 1);
    if (reference.slice(0, reference.lastIndexOf(':')) !== name || isBuildTag(tag)) continue;
    ids.set(tag, image.top.digest);
    if (!semver.valid(tag)) continue;
    const stored = await readStoredImage(store, image.top).catch(() => undefined);
    if (!stored) continue;
    const [main] = stored.platforms;
    versions.push(localVersion(tag, image.top.digest, main.manifest.config.digest, main.config.created ?? null, main.config.config.Labels ?? {}));
  }
  return withAliases(versions, ids, (v) => v.digest);
}

/** Two local listings as one: the first's versions and aliases win where both have them. */
export function mergeListings(first: VersionListing, second: VersionListing): VersionListing {
  const known = new Set(first.versions.map((v) => v.version));
  return {
    versions: sortVersions([...first.versions, ...second.versions.filter((v) => !known.has(v.version))]),
    aliases: { ...second.aliases, ...first.aliases },
  };
}

async function signatureOf(
  client: RegistryClient,
  repository: string,
  name: string,
  version: string,
  digest: string,
  key: VerifyingKey | undefined,
): Promise<Pick<VersionInfo, 'signed' | 'signature' | 'signatureProblem'>> {
  if (!key) return { signed: false, signature: (await hasSignature(client, repository, digest)) ? 'not checked' : 'unsigned' };
  const result = await verifyRelease({ client, name, repository, reference: version, ...key });
  if (result.problems.length === 0) return { signed: true, signature: 'verified' };
  return { signed: false, signature: result.failure === 'unsigned' ? 'unsigned' : 'does not verify', signatureProblem: result.problems.join('; ') };
}

function withAliases(versions: VersionInfo[], targets: Map<string, string>, key: (v: VersionInfo) => string | null): VersionListing {
  const aliases: Record<string, string> = {};
  for (const [tag, target] of targets) {
    if (semver.valid(tag)) continue;
    const version = versions.find((v) => key(v) === target);
    aliases[tag] = version?.version ?? target;
    version?.aliases.push(tag);
  }
  return { versions: sortVersions(versions), aliases };
}
