import { createHash } from 'node:crypto';

/**
 * The OCI image format's documents (image-spec v1.1) as mlops writes and reads them. This floor knows
 * nothing of models, registries or Docker: the image builder, the registry client and the SBOM all
 * stand on it.
 */
export const MEDIA = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerTar: 'application/vnd.oci.image.layer.v1.tar',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** Every manifest and index type a registry may answer with, for Accept. */
export const MANIFEST_ACCEPT = [MEDIA.manifest, MEDIA.dockerManifest, MEDIA.index, MEDIA.dockerList].join(', ');

export const isIndex = (mediaType: string | undefined) => mediaType === MEDIA.index || mediaType === MEDIA.dockerList;

/** An OCI content descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  platform?: Platform;
}

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** The parts of an image's config mlops reads and writes (Docker's fields, which Docker, podman and Kubernetes runtimes all read). */
export interface ContainerConfig {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  Labels?: Record<string, string> | null;
  StopSignal?: string;
  Healthcheck?: { Test: string[]; Interval?: number; Timeout?: number; StartPeriod?: number; Retries?: number };
  [other: string]: unknown;
}

export interface ImageConfig {
  created?: string;
  architecture: string;
  os: string;
  variant?: string;
  config: ContainerConfig;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[];
  [other: string]: unknown;
}

export const sha256Digest = (bytes: Buffer | string) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** A document's bytes: JSON without spaces, keys in the order the object was built (so the same inputs give the same digest). */
export function documentBytes(document: object): Buffer {
  return Buffer.from(JSON.stringify(document));
}

/** The descriptor of a JSON document's bytes. */
export function describe(mediaType: string, bytes: Buffer, extra: Partial<Descriptor> = {}): Descriptor {
  return { mediaType, digest: sha256Digest(bytes), size: bytes.length, ...extra };
}

/** "linux/arm64" -> { os, architecture, variant } as the OCI platform object writes it. */
export function parsePlatform(platform: string): Platform {
  const [os, architecture, variant] = platform.split('/');
  return { architecture, os, ...(variant ? { variant } : architecture === 'arm64' ? { variant: 'v8' } : {}) };
}

/** Whether a descriptor's platform is the one asked for (arm64's variant v8 is implied when absent). */
export function platformMatches(candidate: Platform | undefined, wanted: Platform): boolean {
  if (!candidate) return false;
  if (candidate.os !== wanted.os || candidate.architecture !== wanted.architecture) return false;
  const variant = (p: Platform) => p.variant ?? (p.architecture === 'arm64' ? 'v8' : '');
  return variant(candidate) === variant(wanted);
}

export const DIGEST = /^sha256:[0-9a-f]{64}$/;
