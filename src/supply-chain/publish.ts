import { createHash } from 'node:crypto';
import { environmentError, isMlopsError, MlopsError } from '../errors.js';
import { attachArtifact, manifestDescriptor, type Attached } from '../registry/artifacts.js';
import type { RegistryClient } from '../registry/client.js';
import { BUNDLE_MEDIA_TYPE, builderId, releaseStatement, SLSA_PROVENANCE_V1, signStatement } from './attestation.js';
import type { SigningKey } from './keys.js';
import { imageSbom, SBOM_MEDIA_TYPE, writeSbomFile } from './sbom.js';
import { MODEL_NAME_LABEL, MODEL_SHA256_LABEL } from '../model/labels.js';

/** What the SBOM and the signature say of the image: its id (config digest), labels and architecture. */
export interface ImageFacts {
  imageId: string;
  labels: Record<string, string>;
  architecture: string;
}

export interface AttachOptions {
  facts: ImageFacts;
  env: NodeJS.ProcessEnv;
  client: RegistryClient;
  projectDir: string;
  /** The image that was pushed (name:version), for messages. */
  image: string;
  /** registry/repository, as pulled. */
  name: string;
  /** The repository's path inside the registry. */
  repository: string;
  version: string;
  /** The manifest digest the registry stored. */
  digest: string;
  key: SigningKey | null;
}

export interface SupplyChainResult {
  sbom: { digest: string; bytes: number; file: string };
  /** null: no key was set, the version is unsigned. */
  signature: { digest: string; bytes: number; keyId: string } | null;
  /** How clients find them: the referrers API, or the referrers tag schema's tags. */
  via: Attached['via'];
  /** Wall time and bytes sent that the SBOM and the signature added to the push. */
  seconds: number;
  bytes: number;
}

/**
 * After a push: the version's SBOM, and with a key its signature (a Sigstore bundle whose in-toto
 * statement names the digest, the model and the SBOM), attached to the pushed manifest.
 */
export async function attachSupplyChain(options: AttachOptions): Promise<SupplyChainResult> {
  try {
    return await attach(options);
  } catch (error) {
    if (!isMlopsError(error)) throw error;
    // The image is in the registry by now: the message says so, and what it lacks.
    throw new MlopsError(`${options.image} was pushed (${options.digest}) but its SBOM and signature were not attached: ${error.message}`, {
      exitCode: error.exitCode,
      hint: `push again once the cause is fixed (layers are not sent twice); until then \`mlops verify ${options.version}\` fails and deploys with deploy.verify.key refuse it`,
      cause: error,
    });
  }
}

async function attach(options: AttachOptions): Promise<SupplyChainResult> {
  const started = performance.now();
  const subject = await manifestDescriptor(options.client, options.repository, options.digest);
  if (!subject) throw environmentError(`registry ${options.client.registry} does not serve ${options.repository}@${options.digest} just after it was pushed`);
  const sbomJson = await imageSbom({ name: options.name, version: options.version, digest: options.digest, ...options.facts });
  const file = await writeSbomFile(options.projectDir, sbomJson);
  const sbomBytes = Buffer.from(sbomJson);
  const sbomSha256 = createHash('sha256').update(sbomBytes).digest('hex');
  const sbom = await attachArtifact(options.client, options.repository, subject, {
    artifactType: SBOM_MEDIA_TYPE,
    content: sbomBytes,
    annotations: { 'org.opencontainers.image.title': 'sbom.cdx.json' },
    tagSuffix: 'sbom',
  });
  let signature: SupplyChainResult['signature'] = null;
  let bytes = sbom.bytes;
  if (options.key) {
    const labels = options.facts.labels;
    const statement = releaseStatement({
      name: options.name,
      digest: options.digest,
      version: options.version,
      modelName: labels[MODEL_NAME_LABEL] ?? '',
      modelSha256: labels[MODEL_SHA256_LABEL] ?? '',
      gitCommit: labels['org.opencontainers.image.revision'] ?? null,
      gitSource: labels['org.opencontainers.image.source'] ?? null,
      sbomSha256,
      builtAt: labels['org.opencontainers.image.created'] ?? new Date().toISOString(),
      builderId: builderId(options.env),
    });
    const bundle = Buffer.from(await signStatement(statement, options.key));
    const attached = await attachArtifact(options.client, options.repository, subject, {
      artifactType: BUNDLE_MEDIA_TYPE,
      content: bundle,
      annotations: { 'dev.sigstore.bundle.content': 'dsse-envelope', 'dev.sigstore.bundle.predicateType': SLSA_PROVENANCE_V1 },
      tagSuffix: 'sig',
    });
    signature = { digest: attached.digest, bytes: attached.bytes, keyId: options.key.keyId };
    bytes += attached.bytes;
  }
  return {
    sbom: { digest: sbom.digest, bytes: sbom.bytes, file },
    signature,
    via: sbom.via,
    seconds: Math.round(performance.now() - started) / 1000,
    bytes,
  };
}
