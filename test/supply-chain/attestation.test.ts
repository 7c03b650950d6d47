/**
 * src/supply-chain/attestation.ts without Docker: Sigstore bundles over the release's in-toto statement.
 * The whole path against a real registry is in test/e2e/supply-chain.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { IN_TOTO_PAYLOAD_TYPE, signStatement, statementFacts, verifyBundle } from '../../src/supply-chain/attestation.js';
import { generateSigningKeyPair, keyIdOf } from '../../src/supply-chain/keys.js';
import { DIGEST, facts, keyFrom, MODEL } from './release.js';

describe('Sigstore bundles', () => {
  it('a DSSE envelope over an in-toto statement naming the digest, the model, the commit and the SBOM; it verifies with the key', async () => {
    const key = await keyFrom(generateSigningKeyPair().privatePem);
    const json = await signStatement(facts(), key);
    const bundle = JSON.parse(json);
    expect(bundle.mediaType).toBe('application/vnd.dev.sigstore.bundle.v0.3+json');
    expect(bundle.dsseEnvelope.payloadType).toBe(IN_TOTO_PAYLOAD_TYPE);
    expect(bundle.verificationMaterial.publicKey.hint).toBe(key.keyId);
    const check = verifyBundle(json, key.publicKey, key.keyId);
    expect(check.ok).toBe(true);
    if (!check.ok) return;
    expect(check.statement).toMatchObject({ _type: 'https://in-toto.io/Statement/v1', predicateType: 'https://slsa.dev/provenance/v1' });
    expect(statementFacts(check.statement)).toEqual({ subjects: [DIGEST], modelSha256: MODEL, sbomSha256: 'b'.repeat(64), version: '1.2.0' });
    const predicate = check.statement.predicate as { buildDefinition: { resolvedDependencies: unknown[] } };
    expect(predicate.buildDefinition.resolvedDependencies).toContainEqual({ uri: 'git+https://example.com/team/bc.git', digest: { gitCommit: 'c0ffee' } });
  });

  it('another key, a changed statement or a forged key hint fail, each saying why', async () => {
    const signer = await keyFrom(generateSigningKeyPair().privatePem);
    const other = await keyFrom(generateSigningKeyPair().privatePem);
    const json = await signStatement(facts(), signer);
    expect(verifyBundle(json, other.publicKey, other.keyId)).toMatchObject({ ok: false, reason: 'other-key' });
    // The digest in the statement swapped for another image's: the signature no longer covers it.
    const bundle = JSON.parse(json);
    const payload = Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString('utf8').replace('d'.repeat(64), '9'.repeat(64));
    bundle.dsseEnvelope.payload = Buffer.from(payload).toString('base64');
    expect(verifyBundle(JSON.stringify(bundle), signer.publicKey, signer.keyId)).toMatchObject({ ok: false, reason: 'bad-signature' });
    // Signed by another key but claiming ours: the hint is only a hint.
    const forged = JSON.parse(await signStatement(facts(), other));
    forged.verificationMaterial.publicKey.hint = signer.keyId;
    expect(verifyBundle(JSON.stringify(forged), signer.publicKey, signer.keyId)).toMatchObject({ ok: false, reason: 'bad-signature' });
    expect(verifyBundle('{"not": "a bundle"}', signer.publicKey, signer.keyId)).toMatchObject({ ok: false, reason: 'malformed' });
    expect(keyIdOf(signer.publicKey)).toBe(signer.keyId);
  });
});
