import { sign as signBytes, type KeyObject } from 'node:crypto';
import { bundleFromJSON, bundleToJSON, type Bundle } from '@sigstore/bundle';
import { DSSEBundleBuilder, type Signer } from '@sigstore/sign';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import { VERSION } from '../version.js';
import type { SigningKey } from './keys.js';

export const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
export const BUILD_TYPE = 'urn:mlops:build:v1';

/** What a release's signature vouches for: the image digest (the subject) and how it was made (the predicate). */
export interface ReleaseFacts {
  /** registry/repository, as the image is pulled. */
  name: string;
  /** The manifest digest the registry stored at push: sha256:... */
  digest: string;
  version: string;
  modelName: string;
  modelSha256: string;
  gitCommit: string | null;
  gitSource: string | null;
  /** The SBOM attached beside the signature: its sha256, so that the SBOM is signed too. */
  sbomSha256: string;
  builtAt: string;
  /** Who ran the signing: the CI run's URL where there is one. */
  builderId: string;
}

/** An in-toto v1 statement with a SLSA provenance v1 predicate, as `cosign attest` would attach. */
export function releaseStatement(facts: ReleaseFacts): Record<string, unknown> {
  const [algorithm, hex] = facts.digest.split(':');
  return {
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: facts.name, digest: { [algorithm]: hex } }],
    predicateType: SLSA_PROVENANCE_V1,
    predicate: {
      buildDefinition: {
        buildType: BUILD_TYPE,
        externalParameters: { version: facts.version, model: { name: facts.modelName, sha256: facts.modelSha256 } },
        resolvedDependencies: [
          { name: 'model.onnx', digest: { sha256: facts.modelSha256 } },
          ...(facts.gitCommit ? [{ uri: facts.gitSource ? `git+${facts.gitSource}` : 'git', digest: { gitCommit: facts.gitCommit } }] : []),
        ],
      },
      runDetails: {
        builder: { id: facts.builderId, version: { mlops: VERSION } },
        metadata: { startedOn: facts.builtAt },
        byproducts: [{ name: 'sbom.cdx.json', mediaType: 'application/vnd.cyclonedx+json', digest: { sha256: facts.sbomSha256 } }],
      },
    },
  };
}

/** GitHub Actions' run URL, GitLab's job URL, else the tool itself. */
export function builderId(env: NodeJS.ProcessEnv): string {
  if (env.GITHUB_SERVER_URL && env.GITHUB_REPOSITORY && env.GITHUB_RUN_ID)
    return `${env.GITHUB_SERVER_URL}/${env.GITHUB_REPOSITORY}/actions/runs/${env.GITHUB_RUN_ID}`;
  if (env.CI_JOB_URL) return env.CI_JOB_URL;
  return `urn:mlops:cli:${VERSION}`;
}

/** A Sigstore bundle (v0.3): a DSSE envelope over the statement, signed with the key; no transparency log, no certificate. */
export async function signStatement(statement: Record<string, unknown>, key: SigningKey): Promise<string> {
  const signer: Signer = {
    sign: async (data) => ({ signature: signBytes('sha256', data, key.privateKey), key: { $case: 'publicKey', publicKey: key.publicPem, hint: key.keyId } }),
  };
  const bundle = await new DSSEBundleBuilder({ signer, witnesses: [] }).create({ data: Buffer.from(JSON.stringify(statement)), type: IN_TOTO_PAYLOAD_TYPE });
  return JSON.stringify(bundleToJSON(bundle));
}

export type BundleCheck =
  { ok: true; statement: Record<string, unknown>; keyId: string } | { ok: false; reason: 'malformed' | 'other-key' | 'bad-signature'; message: string };

/**
 * Checks a bundle with Sigstore's verifier against one public key. Key-based bundles carry no
 * transparency log entry or timestamp, so those thresholds are 0; the signature itself is required.
 */
export function verifyBundle(json: string, publicKey: KeyObject, keyId: string): BundleCheck {
  let bundle: Bundle;
  try {
    bundle = bundleFromJSON(JSON.parse(json));
  } catch (error) {
    return { ok: false, reason: 'malformed', message: `not a Sigstore bundle: ${(error as Error).message}` };
  }
  const hint = bundle.verificationMaterial.content.$case === 'publicKey' ? bundle.verificationMaterial.content.publicKey.hint : '';
  if (hint && hint !== keyId) return { ok: false, reason: 'other-key', message: `signed by another key (${hint.slice(0, 12)}), not ${keyId.slice(0, 12)}` };
  const material = toTrustMaterial({ mediaType: '', tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [] }, () => ({
    publicKey,
    validFor: () => true,
  }));
  try {
    new Verifier(material, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 }).verify(toSignedEntity(bundle));
  } catch (error) {
    return {
      ok: false,
      reason: hint ? 'bad-signature' : 'other-key',
      message: `the signature does not verify with key ${keyId.slice(0, 12)}: ${(error as Error).message}`,
    };
  }
  if (bundle.content.$case !== 'dsseEnvelope' || bundle.content.dsseEnvelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    return { ok: false, reason: 'malformed', message: 'the bundle holds no in-toto statement' };
  }
  try {
    return { ok: true, statement: JSON.parse(bundle.content.dsseEnvelope.payload.toString('utf8')) as Record<string, unknown>, keyId };
  } catch {
    return { ok: false, reason: 'malformed', message: 'the signed statement is not JSON' };
  }
}

/** The subject digest (sha256:...) and model sha256 a verified statement names. */
export function statementFacts(statement: Record<string, unknown>): {
  subjects: string[];
  modelSha256: string | null;
  sbomSha256: string | null;
  version: string | null;
} {
  const subjects = ((statement.subject ?? []) as { digest?: Record<string, string> }[]).flatMap((s) =>
    Object.entries(s.digest ?? {}).map(([a, h]) => `${a}:${h}`),
  );
  const predicate = (statement.predicate ?? {}) as {
    buildDefinition?: { externalParameters?: { version?: string; model?: { sha256?: string } } };
    runDetails?: { byproducts?: { name?: string; digest?: { sha256?: string } }[] };
  };
  return {
    subjects,
    modelSha256: predicate.buildDefinition?.externalParameters?.model?.sha256 ?? null,
    sbomSha256: predicate.runDetails?.byproducts?.find((b) => b.name === 'sbom.cdx.json')?.digest?.sha256 ?? null,
    version: predicate.buildDefinition?.externalParameters?.version ?? null,
  };
}
