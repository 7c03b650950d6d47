import { environmentError } from '../errors.js';
import { MEDIA, sha256Digest as sha256, type Descriptor } from '../oci/media.js';
import { bufferSource, pushBlob, putManifest } from './blobs.js';
import type { RegistryClient } from './client.js';

export type { Descriptor };

export interface ArtifactToAttach {
  /** Both the manifest's artifactType and its one layer's media type. */
  artifactType: string;
  content: Buffer;
  annotations: Record<string, string>;
  /** The cosign-style tag suffix used where the registry has no referrers API: sha256-<hex>.<suffix>. */
  tagSuffix: string;
}

export interface Attached {
  digest: string;
  /** How a client finds it: the registry's referrers API, or the tags of the referrers tag schema. */
  via: 'referrers-api' | 'tag-schema';
  bytes: number;
}

const OCI_MANIFEST = MEDIA.manifest;
const OCI_INDEX = MEDIA.index;
/** The OCI 1.1 empty config: artifacts carry their content in a layer. */
const EMPTY_CONFIG = {
  mediaType: 'application/vnd.oci.empty.v1+json',
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
};

/** The referrers tag schema's tag for a digest (OCI distribution spec 1.1): sha256:abc -> sha256-abc. */
export const referrersTag = (digest: string) => digest.replace(':', '-');

const scope = (repository: string, push = false) => `repository:${repository}:${push ? 'pull,push' : 'pull'}`;

/** Uploads a blob unless the registry has it already (artifacts here are small). */
export async function uploadBlob(client: RegistryClient, repository: string, content: Buffer, digest = sha256(content)): Promise<void> {
  await pushBlob(client, repository, bufferSource(content, digest));
}

/** A manifest's descriptor as the registry serves it now (digest, media type, size of its bytes). */
export async function manifestDescriptor(client: RegistryClient, repository: string, reference: string): Promise<Descriptor | null> {
  const found = await client.rawManifest(repository, reference);
  return found ? { mediaType: found.mediaType || OCI_MANIFEST, digest: found.digest, size: found.bytes.length } : null;
}

/**
 * Attaches an artifact to a manifest (its subject) as OCI 1.1 does: a manifest with `subject` and
 * `artifactType`. A registry with the referrers API says so (the OCI-Subject header) and indexes it
 * itself; for one without, as cosign does, the artifact is tagged sha256-<hex>.<suffix> and added to
 * the referrers tag schema's index (tag sha256-<hex>), which OCI 1.1 clients read instead.
 */
export async function attachArtifact(client: RegistryClient, repository: string, subject: Descriptor, artifact: ArtifactToAttach): Promise<Attached> {
  const layerDigest = sha256(artifact.content);
  await uploadBlob(client, repository, Buffer.from('{}'), EMPTY_CONFIG.digest);
  await uploadBlob(client, repository, artifact.content, layerDigest);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: artifact.artifactType,
      config: EMPTY_CONFIG,
      layers: [{ mediaType: artifact.artifactType, digest: layerDigest, size: artifact.content.length }],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
      annotations: artifact.annotations,
    }),
  );
  const digest = sha256(manifest);
  const stored = await putManifest(client, repository, digest, manifest, OCI_MANIFEST);
  const bytes = manifest.length + artifact.content.length;
  if (stored.headers.get('oci-subject') === subject.digest) return { digest, via: 'referrers-api', bytes };
  await putManifest(client, repository, `${referrersTag(subject.digest)}.${artifact.tagSuffix}`, manifest, OCI_MANIFEST);
  const descriptor: Descriptor = {
    mediaType: OCI_MANIFEST,
    digest,
    size: manifest.length,
    artifactType: artifact.artifactType,
    annotations: artifact.annotations,
  };
  const index = await tagSchemaIndex(client, repository, subject.digest);
  const manifests = [...index.filter((d) => d.digest !== digest), descriptor];
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
  await putManifest(client, repository, referrersTag(subject.digest), body, OCI_INDEX);
  return { digest, via: 'tag-schema', bytes: bytes + body.length };
}

async function tagSchemaIndex(client: RegistryClient, repository: string, digest: string): Promise<Descriptor[]> {
  const res = await client.get(`/v2/${repository}/manifests/${referrersTag(digest)}`, OCI_INDEX, scope(repository));
  if (res.status === 404) {
    await res.body?.cancel();
    return [];
  }
  if (!res.ok) throw environmentError(`registry ${client.registry}: reading the referrers of ${digest} failed (HTTP ${res.status})`);
  return ((await res.json()) as { manifests?: Descriptor[] }).manifests ?? [];
}

/**
 * What refers to a manifest: from the referrers API, or else the referrers tag schema's index and
 * the cosign-style tags (an index another pusher overwrote at the same moment still leaves those).
 */
export async function listReferrers(
  client: RegistryClient,
  repository: string,
  digest: string,
  tagSuffixes: string[] = ['sig', 'sbom'],
): Promise<Descriptor[]> {
  const res = await client.get(`/v2/${repository}/referrers/${digest}`, OCI_INDEX, scope(repository));
  if (res.ok && (res.headers.get('content-type') ?? '').includes(OCI_INDEX)) {
    return ((await res.json()) as { manifests?: Descriptor[] }).manifests ?? [];
  }
  await res.body?.cancel();
  if (res.status !== 404 && res.status !== 405 && !res.ok)
    throw environmentError(`registry ${client.registry}: listing the referrers of ${digest} failed (HTTP ${res.status})`);
  const found = await tagSchemaIndex(client, repository, digest);
  for (const suffix of tagSuffixes) {
    const tagged = await client.get(`/v2/${repository}/manifests/${referrersTag(digest)}.${suffix}`, OCI_MANIFEST, scope(repository));
    if (!tagged.ok) {
      await tagged.body?.cancel();
      continue;
    }
    const bytes = Buffer.from(await tagged.arrayBuffer());
    const manifest = JSON.parse(bytes.toString('utf8')) as { artifactType?: string; annotations?: Record<string, string>; subject?: Descriptor };
    const descriptor = {
      mediaType: OCI_MANIFEST,
      digest: sha256(bytes),
      size: bytes.length,
      artifactType: manifest.artifactType,
      annotations: manifest.annotations,
    };
    if (manifest.subject?.digest === digest && !found.some((d) => d.digest === descriptor.digest)) found.push(descriptor);
  }
  return found;
}

/** An artifact's content: its manifest's one layer, checked against its digest. */
export async function fetchArtifact(client: RegistryClient, repository: string, descriptor: Descriptor): Promise<{ content: Buffer; subject: string | null }> {
  const res = await client.get(`/v2/${repository}/manifests/${descriptor.digest}`, OCI_MANIFEST, scope(repository));
  if (!res.ok) throw environmentError(`registry ${client.registry}: reading artifact ${descriptor.digest} failed (HTTP ${res.status})`);
  const manifest = (await res.json()) as { layers?: Descriptor[]; subject?: Descriptor };
  const layer = manifest.layers?.[0];
  if (!layer) throw environmentError(`registry ${client.registry}: artifact ${descriptor.digest} has no content layer`);
  const blob = await client.get(`/v2/${repository}/blobs/${layer.digest}`, undefined, scope(repository));
  if (!blob.ok) throw environmentError(`registry ${client.registry}: reading blob ${layer.digest} failed (HTTP ${blob.status})`);
  const content = Buffer.from(await blob.arrayBuffer());
  if (sha256(content) !== layer.digest) throw environmentError(`registry ${client.registry}: blob ${layer.digest} does not match its digest`);
  return { content, subject: manifest.subject?.digest ?? null };
}
