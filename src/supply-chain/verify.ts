import type { KeyObject } from 'node:crypto';
import { createHash } from 'node:crypto';
import path from 'node:path';
import semver from 'semver';
import type { Config } from '../config/defaults.js';
import { ExitCode, inputError, isMlopsError, untrustedError } from '../errors.js';
import { configuredRepository } from '../project/repository.js';
import { RegistryClient } from '../registry/client.js';
import { resolveCredentials } from '../registry/credentials.js';
import { localName, parseReference } from '../registry/reference.js';
import { loadPublicKey } from './keys.js';
import { fetchArtifact, listReferrers, type Descriptor } from '../registry/artifacts.js';
import { BUNDLE_MEDIA_TYPE, statementFacts, verifyBundle } from './attestation.js';
import { SBOM_MEDIA_TYPE, sbomModelSha256 } from './sbom.js';
import { MODEL_SHA256_LABEL } from '../model/labels.js';

export interface VerifyRequest {
  client: RegistryClient;
  /** registry/repository, for messages. */
  name: string;
  /** The repository's path inside the registry. */
  repository: string;
  /** A version (tag) or a digest. */
  reference: string;
  publicKey: KeyObject;
  keyId: string;
}

export interface Verification {
  reference: string;
  /** The digest the registry serves for the reference now. */
  digest: string;
  /** The image's config digest (what the engine calls its id). */
  imageId: string;
  /** A signature by the key was found and checks out for this digest. */
  signed: boolean;
  keyId: string;
  modelSha256: { label: string | null; sbom: string | null; signed: string | null };
  sbom: boolean;
  /** Each check that failed, in words; empty when the version verifies. */
  problems: string[];
  /** The first failure's kind, for deploy's refusal: unsigned, other-key, digest-changed, sbom, model. */
  failure: 'unsigned' | 'other-key' | 'bad-signature' | 'digest-changed' | 'sbom' | 'model' | null;
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/**
 * Checks a pushed version with only the public key and the registry: a signature by that key over
 * the digest the registry serves now, the SBOM beside it being the one signed, and the model's
 * sha256 in the SBOM, the signed statement and the image's label all equal.
 */
export async function verifyRelease(request: VerifyRequest): Promise<Verification> {
  const { client, repository } = request;
  const manifest = await client.manifest(repository, request.reference);
  if (!manifest) throw inputError(`${request.name}:${request.reference} is not in the registry`, 'check the version (`mlops versions`) and image.repository');
  const labels = (await client.configBlob(repository, manifest.config.digest)).config?.Labels ?? {};
  const label = labels[MODEL_SHA256_LABEL] ?? null;
  const referrers = await listReferrers(client, repository, manifest.digest);
  const problems: string[] = [];
  let failure: Verification['failure'] = null;
  const fail = (kind: NonNullable<Verification['failure']>, message: string) => {
    failure ??= kind;
    problems.push(message);
  };

  let statement: ReturnType<typeof statementFacts> | null = null;
  const signatures = referrers.filter((d) => d.artifactType === BUNDLE_MEDIA_TYPE);
  const rejections: { kind: 'other-key' | 'bad-signature' | 'digest-changed'; message: string }[] = [];
  for (const descriptor of signatures) {
    const { content, subject } = await fetchArtifact(client, repository, descriptor);
    const check = verifyBundle(content.toString('utf8'), request.publicKey, request.keyId);
    if (!check.ok) {
      rejections.push({ kind: check.reason === 'other-key' ? 'other-key' : 'bad-signature', message: check.message });
      continue;
    }
    const facts = statementFacts(check.statement);
    if (!facts.subjects.includes(manifest.digest)) {
      // A valid signature copied onto another image: it names the digest it was made for.
      rejections.push({
        kind: 'digest-changed',
        message: `the signature is for ${facts.subjects.join(', ') || 'no digest'}, not ${manifest.digest}${subject && subject !== manifest.digest ? ' (attached to another image)' : ''}`,
      });
      continue;
    }
    statement = facts;
    break;
  }
  if (!statement) {
    if (signatures.length === 0) {
      fail(
        'unsigned',
        `unsigned: no signature refers to ${manifest.digest}, the digest the registry serves for ${request.reference} now (if it was signed, the image under this version changed since)`,
      );
    } else {
      const first = rejections[0];
      fail(
        first.kind,
        `${signatures.length === 1 ? 'its signature does not verify' : `none of its ${signatures.length} signatures verifies`}: ${rejections.map((r) => r.message).join('; ')}`,
      );
    }
  }

  let sbomSha: string | null = null;
  const sboms = referrers.filter((d: Descriptor) => d.artifactType === SBOM_MEDIA_TYPE);
  let sbomJson: string | null = null;
  if (sboms.length === 0) fail('sbom', 'no SBOM is attached');
  else {
    // The signed SBOM where there is a signature; else the newest attached.
    for (const descriptor of [...sboms].reverse()) {
      const { content } = await fetchArtifact(client, repository, descriptor);
      if (!statement?.sbomSha256 || sha256(content) === statement.sbomSha256) {
        sbomJson = content.toString('utf8');
        sbomSha = sha256(content);
        break;
      }
    }
    if (sbomJson === null) fail('sbom', `no attached SBOM is the one signed (sha256 ${statement?.sbomSha256?.slice(0, 12)})`);
  }
  const fromSbom = sbomJson ? sbomModelSha256(sbomJson) : null;
  if (sbomJson !== null && fromSbom !== label)
    fail('model', `the SBOM's model sha256 (${fromSbom?.slice(0, 12) ?? 'none'}) is not the image label's (${label?.slice(0, 12) ?? 'none'})`);
  if (statement && statement.modelSha256 !== label)
    fail('model', `the signed model sha256 (${statement.modelSha256?.slice(0, 12) ?? 'none'}) is not the image label's (${label?.slice(0, 12) ?? 'none'})`);

  return {
    reference: request.reference,
    digest: manifest.digest,
    imageId: manifest.config.digest,
    signed: statement !== null,
    keyId: request.keyId,
    modelSha256: { label, sbom: fromSbom, signed: statement?.modelSha256 ?? null },
    sbom: sbomSha !== null,
    problems,
    failure,
  };
}

/** Whether anything signs a digest (without a key: presence only), for `mlops versions`. */
export async function hasSignature(client: RegistryClient, repository: string, digest: string): Promise<boolean> {
  return (await listReferrers(client, repository, digest)).some((d) => d.artifactType === BUNDLE_MEDIA_TYPE);
}

export interface DeployCheck {
  config: Config;
  projectDir: string;
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
}

/**
 * With deploy.verify.key set, what a deploy or rollback is about to run must verify: a version
 * signed by that key, whose digest is the one signed; for an image on this machine, the very image
 * the registry holds under that digest. Anything else is refused with exit 5 before any change.
 */
export async function requireVerified(
  check: DeployCheck,
  release: { version: string; image: string; digest: string | null },
  localImageId: string | null,
): Promise<Verification | null> {
  const keyFile = check.config.deploy.verify.key;
  if (!keyFile) return null;
  const { publicKey, keyId } = await loadPublicKey(path.resolve(check.projectDir, keyFile), 'deploy.verify.key');
  const ref = parseReference(configuredRepository(check.config, check.projectDir));
  const name = localName(ref);
  const hint = 'push it signed (`mlops push` with MLOPS_SIGNING_KEY or sign.keyFile), or deploy a version that is; `mlops verify <version>` shows what fails';
  if (!semver.valid(release.version)) {
    throw untrustedError(`refusing to deploy ${release.image}: deploy.verify.key is set and it is not a pushed version (${release.version})`, hint);
  }
  const credentials = await resolveCredentials(ref.registry, check.env);
  let verification: Verification;
  try {
    verification = await verifyRelease({
      client: new RegistryClient(ref.registry, credentials),
      name,
      repository: ref.repository,
      reference: release.version,
      publicKey,
      keyId,
    });
  } catch (error) {
    if (isMlopsError(error) && error.exitCode === ExitCode.badInput) {
      throw untrustedError(`refusing to deploy ${name}:${release.version}: it is not in the registry ${ref.registry}, so nothing signs it`, hint);
    }
    throw error;
  }
  if (verification.problems.length > 0) throw untrustedError(`refusing to deploy ${name}:${release.version}: ${verification.problems.join('; ')}`, hint);
  if (release.digest && release.digest !== verification.digest) {
    throw untrustedError(
      `refusing to deploy ${release.image}: its digest ${release.digest} is not the one the registry serves and signed for ${release.version} (${verification.digest}): the version changed since`,
      hint,
    );
  }
  if (localImageId && localImageId !== verification.imageId) {
    throw untrustedError(
      `refusing to deploy ${release.image}: this machine's image (${localImageId.slice(7, 19)}) is not the one signed in the registry (${verification.imageId.slice(7, 19)})`,
      `pull the signed version (docker pull ${name}:${release.version}) or rebuild and push it`,
    );
  }
  check.log(`verified ${name}:${release.version}: ${verification.digest} signed by key ${keyId.slice(0, 12)}`);
  return verification;
}
