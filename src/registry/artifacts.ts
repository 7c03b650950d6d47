import { createHash } from 'node:crypto';
import { environmentError } from '../errors.js';
import type { RegistryClient } from './client.js';

/** An OCI content descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

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

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
/** The OCI 1.1 empty config: artifacts carry their content in a layer. */
const EMPTY_CONFIG = { mediaType: 'application/vnd.oci.empty.v1+json', digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a', size: 2 };

const sha256 = (bytes: Buffer | string) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** The referrers tag schema's tag for a digest (OCI distribution spec 1.1): sha256:abc -> sha256-abc. */
export const referrersTag = (digest: string) => digest.replace(':', '-');

const scope = (repository: string, push = false) => `repository:${repository}:${push ? 'pull,push' : 'pull'}`;

/** Uploads a blob unless the registry has it already (monolithic upload: artifacts here are small). */
export async function uploadBlob(client: RegistryClient, repository: string, content: Buffer, digest = sha256(content)): Promise<void> {
  const head = await client.request(`/v2/${repository}/blobs/${digest}`, { method: 'HEAD', scope: scope(repository, true) });
  if (head.ok) return;
  const start = await client.request(`/v2/${repository}/blobs/uploads/`, { method: 'POST', scope: scope(repository, true) });
  await start.body?.cancel();
  const location = start.headers.get('location');
  if (start.status !== 202 || !location) throw environmentError(`registry ${client.registry}: starting a blob upload to ${repository} failed (HTTP ${start.status})`);
  const url = new URL(location, `http://${client.registry}`);
  url.searchParams.set('digest', digest);
  const target = /^https?:/.test(location) ? url.toString() : `${url.pathname}${url.search}`;
  const put = await client.request(target, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream' },
    body: content,
    scope: scope(repository, true),
  });
  await put.body?.cancel();
  if (put.status !== 201) throw environmentError(`registry ${client.registry}: uploading blob ${digest} to ${repository} failed (HTTP ${put.status})`);
}

async function putManifest(client: RegistryClient, repository: string, reference: string, body: Buffer, mediaType: string): Promise<Response> {
  const res = await client.request(`/v2/${repository}/manifests/${reference}`, {
    method: 'PUT',
    headers: { 'content-type': mediaType },
    body,
    scope: scope(repository, true),
  });
  if (res.status !== 201) {
    const text = await res.text().catch(() => '');
    throw environmentError(`registry ${client.registry}: storing manifest ${repository}:${reference} failed (HTTP ${res.status}) ${text.slice(0, 200)}`.trim());
  }
  await res.body?.cancel();
  return res;
}

/** A manifest's descriptor as the registry serves it now (digest, media type, size of its bytes). */
export async function manifestDescriptor(client: RegistryClient, repository: string, reference: string): Promise<Descriptor | null> {
  const res = await client.get(
    `/v2/${repository}/manifests/${reference}`,
    [OCI_MANIFEST, OCI_INDEX, 'application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.docker.distribution.manifest.list.v2+json'].join(', '),
    scope(repository),
  );
  if (res.status === 404) {
    await res.body?.cancel();
    return null;
  }
  if (!res.ok) throw environmentError(`registry ${client.registry}: reading manifest ${repository}:${reference} failed (HTTP ${res.status})`);
  const bytes = Buffer.from(await res.arrayBuffer());
  const mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType ?? res.headers.get('content-type') ?? OCI_MANIFEST;
  return { mediaType, digest: res.headers.get('docker-content-digest') ?? sha256(bytes), size: bytes.length };
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
  const descriptor: Descriptor = { mediaType: OCI_MANIFEST, digest, size: manifest.length, artifactType: artifact.artifactType, annotations: artifact.annotations };
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
export async function listReferrers(client: RegistryClient, repository: string, digest: string, tagSuffixes: string[] = ['sig', 'sbom']): Promise<Descriptor[]> {
  const res = await client.get(`/v2/${repository}/referrers/${digest}`, OCI_INDEX, scope(repository));
  if (res.ok && (res.headers.get('content-type') ?? '').includes(OCI_INDEX)) {
    return ((await res.json()) as { manifests?: Descriptor[] }).manifests ?? [];
  }
  await res.body?.cancel();
  if (res.status !== 404 && res.status !== 405 && !res.ok) throw environmentError(`registry ${client.registry}: listing the referrers of ${digest} failed (HTTP ${res.status})`);
  const found = await tagSchemaIndex(client, repository, digest);
  for (const suffix of tagSuffixes) {
    const tagged = await client.get(`/v2/${repository}/manifests/${referrersTag(digest)}.${suffix}`, OCI_MANIFEST, scope(repository));
    if (!tagged.ok) {
      await tagged.body?.cancel();
      continue;
    }
    const bytes = Buffer.from(await tagged.arrayBuffer());
    const manifest = JSON.parse(bytes.toString('utf8')) as { artifactType?: string; annotations?: Record<string, string>; subject?: Descriptor };
    const descriptor = { mediaType: OCI_MANIFEST, digest: sha256(bytes), size: bytes.length, artifactType: manifest.artifactType, annotations: manifest.annotations };
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
