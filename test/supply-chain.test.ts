/**
 * The supply chain's parts without Docker: keys, Sigstore bundles, the SBOM and what it lists.
 * The whole path against a real registry is in test/e2e/supply-chain.test.ts.
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { IN_TOTO_PAYLOAD_TYPE, releaseStatement, signStatement, statementFacts, verifyBundle } from '../src/supply-chain/attestation.js';
import { generateSigningKeyPair, keyIdOf, loadPublicKey, loadSigningKey } from '../src/supply-chain/keys.js';
import { imageSbom, sbomModelSha256, validateSbom } from '../src/supply-chain/sbom.js';
import { VERSION } from '../src/version.js';
import { lines, ROOT, runCli, withTempDir } from './helpers.js';

const DIGEST = `sha256:${'d'.repeat(64)}`;
const MODEL = 'a'.repeat(64);

function facts(overrides: Partial<Parameters<typeof releaseStatement>[0]> = {}) {
  return releaseStatement({
    name: '127.0.0.1:5000/team/bc',
    digest: DIGEST,
    version: '1.2.0',
    modelName: 'bc',
    modelSha256: MODEL,
    gitCommit: 'c0ffee',
    gitSource: 'https://example.com/team/bc.git',
    sbomSha256: 'b'.repeat(64),
    builtAt: '2026-01-01T00:00:00.000Z',
    builderId: 'urn:mlops:test',
    ...overrides,
  });
}

async function keyFrom(pem: string) {
  const key = await loadSigningKey({ MLOPS_SIGNING_KEY: pem }, '', '/');
  return key!;
}

const labels = (overrides: Record<string, string> = {}): Record<string, string> => ({
  'mlops.version': VERSION,
  'mlops.model.name': 'bc',
  'mlops.model.version': '1.2.0',
  'mlops.model.sha256': MODEL,
  'mlops.model.opset': '13',
  'mlops.model.ir_version': '7',
  'mlops.model.producer': 'pytorch 2.1',
  'mlops.model.inputs': JSON.stringify([{ name: 'features', datatype: 'FP32', shape: [-1, 30] }]),
  'mlops.model.outputs': JSON.stringify([{ name: 'probabilities', datatype: 'FP32', shape: [-1, 2] }]),
  'org.opencontainers.image.created': '2026-01-01T00:00:00.000Z',
  'org.opencontainers.image.base.name': 'node:20-slim',
  'org.opencontainers.image.base.digest': `sha256:${'e'.repeat(64)}`,
  'org.opencontainers.image.revision': 'c0ffee',
  ...overrides,
});

const subject = (extra: Record<string, string> = {}) => ({
  name: '127.0.0.1:5000/team/bc',
  version: '1.2.0',
  imageId: `sha256:${'f'.repeat(64)}`,
  digest: DIGEST,
  architecture: 'amd64',
  labels: labels(extra),
});

describe('signing keys', () => {
  it('keygen writes the private key 0600 and the public key beside it, and never over an existing key', async () => {
    await withTempDir(async (dir) => {
      const made = await runCli(['keygen', '--output', 'keys', '--json'], { cwd: dir });
      expect(made.code, made.stderr).toBe(0);
      const result = JSON.parse(made.stdout);
      expect((await stat(path.join(dir, 'keys', 'mlops.key'))).mode & 0o777).toBe(0o600);
      expect((await stat(path.join(dir, 'keys', 'mlops.pub'))).mode & 0o077).not.toBe(0o077);
      const privatePem = await readFile(path.join(dir, 'keys', 'mlops.key'), 'utf8');
      // Only the paths and the key id are printed: no key material.
      expect(made.stdout + made.stderr).not.toContain(privatePem.split('\n')[1]);
      const { keyId } = await loadPublicKey(path.join(dir, 'keys', 'mlops.pub'), '--key');
      expect(result.keyId).toBe(keyId);
      const again = await runCli(['keygen', '--output', 'keys'], { cwd: dir });
      expect(again.code).toBe(2);
      expect(lines(again.stderr)[0]).toBe(`error: ${path.join(dir, 'keys', 'mlops.key')} exists: mlops keygen never overwrites a key`);
      expect(await readFile(path.join(dir, 'keys', 'mlops.key'), 'utf8')).toBe(privatePem);
    });
  });

  it('a key file others may read is refused before anything is pushed; MLOPS_SIGNING_KEY wins over the file', async () => {
    await withTempDir(async (dir) => {
      const pair = generateSigningKeyPair();
      await writeFile(path.join(dir, 'signing.pem'), pair.privatePem, { mode: 0o644 });
      await chmod(path.join(dir, 'signing.pem'), 0o644);
      await expect(loadSigningKey({}, 'signing.pem', dir)).rejects.toMatchObject({
        exitCode: 2,
        message: 'sign.keyFile signing.pem: others may read or change it (mode 644)',
        hint: 'restrict it to its owner: chmod 600 signing.pem',
      });
      // Through the CLI: push refuses at once (exit 2), before Docker or the registry is asked anything.
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ image: { repository: '127.0.0.1:9/team/bc' }, sign: { keyFile: 'signing.pem' } }));
      const pushed = await runCli(['push', '1.0.0'], { cwd: dir, env: { ...process.env, DOCKER_HOST: 'tcp://127.0.0.1:9' } });
      expect(pushed.code).toBe(2);
      expect(lines(pushed.stderr)[0]).toBe('error: sign.keyFile signing.pem: others may read or change it (mode 644)');
      await chmod(path.join(dir, 'signing.pem'), 0o600);
      expect((await loadSigningKey({}, 'signing.pem', dir))!.keyId).toBe(pair.keyId);
      const other = generateSigningKeyPair();
      expect((await loadSigningKey({ MLOPS_SIGNING_KEY: other.privatePem }, 'signing.pem', dir))!.keyId).toBe(other.keyId);
      expect(await loadSigningKey({}, '', dir)).toBeNull();
    });
  });

  it('takes the PEM as CI secrets arrive (escaped newlines too), refuses other key types, and never quotes a key in an error', async () => {
    const pair = generateSigningKeyPair();
    expect((await keyFrom(pair.privatePem.replace(/\n/g, '\\n'))).keyId).toBe(pair.keyId);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    await expect(keyFrom(rsa)).rejects.toMatchObject({ exitCode: 2, message: 'MLOPS_SIGNING_KEY: an rsa key; mlops signs with ECDSA P-256' });
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    await expect(keyFrom(p384)).rejects.toMatchObject({ exitCode: 2, message: 'MLOPS_SIGNING_KEY: an EC key on secp384r1; mlops signs with ECDSA P-256' });
    const broken = pair.privatePem.replace(/[A-Za-z]{10}/, 'AAAAAAAAAA').slice(0, 120);
    const failure = await keyFrom(broken).catch((error: Error) => error);
    expect((failure as Error).message).toBe('MLOPS_SIGNING_KEY: not a readable PEM private key');
    expect(JSON.stringify(failure)).not.toContain(broken.split('\n')[1]);
    const encrypted = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'pw',
    }) as string;
    await expect(keyFrom(encrypted)).rejects.toMatchObject({ hint: 'set MLOPS_SIGNING_KEY_PASSWORD' });
    expect((await loadSigningKey({ MLOPS_SIGNING_KEY: encrypted, MLOPS_SIGNING_KEY_PASSWORD: 'pw' }, '', '/'))!.source).toBe('MLOPS_SIGNING_KEY');
  });

  it('verify refuses a private key given as the public one', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'k.pem'), generateSigningKeyPair().privatePem);
      await expect(loadPublicKey(path.join(dir, 'k.pem'), '--key')).rejects.toMatchObject({
        exitCode: 2,
        message: `--key: ${path.join(dir, 'k.pem')} is a private key`,
      });
    });
  });
});

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

describe('the SBOM', () => {
  it('validates against CycloneDX 1.6 and lists the image, the model with its sha256 and card, ONNX Runtime and the base', async () => {
    const json = await imageSbom(subject({ 'mlops.test.accuracy': '0.98', 'mlops.test.rows': '114', 'mlops.test.passed': 'true' }));
    await validateSbom(json);
    const doc = JSON.parse(json);
    expect(doc).toMatchObject({ bomFormat: 'CycloneDX', specVersion: '1.6', metadata: { timestamp: '2026-01-01T00:00:00.000Z' } });
    expect(doc.metadata.component).toMatchObject({ type: 'container', name: '127.0.0.1:5000/team/bc', version: '1.2.0' });
    expect(doc.metadata.component.purl).toBe(`pkg:oci/bc@sha256:${'d'.repeat(64)}?repository_url=127.0.0.1%3A5000%2Fteam%2Fbc&tag=1.2.0`);
    const model = doc.components.find((c: { type: string }) => c.type === 'machine-learning-model');
    expect(model).toMatchObject({ name: 'bc', version: '1.2.0', hashes: [{ alg: 'SHA-256', content: MODEL }] });
    expect(model.properties).toEqual(
      expect.arrayContaining([
        { name: 'mlops:onnx.opset', value: '13' },
        { name: 'mlops:onnx.producer', value: 'pytorch 2.1' },
      ]),
    );
    expect(model.modelCard.modelParameters).toEqual({ inputs: [{ format: 'features: FP32[-1,30]' }], outputs: [{ format: 'probabilities: FP32[-1,2]' }] });
    expect(model.modelCard.quantitativeAnalysis.performanceMetrics).toEqual([{ type: 'accuracy', value: '0.98', slice: 'holdout (114 rows)' }]);
    expect(sbomModelSha256(json)).toBe(MODEL);
    const native = doc.components.find((c: { name: string }) => c.name === 'onnxruntime');
    expect(native.hashes[0].content).toMatch(/^[0-9a-f]{64}$/);
    expect(doc.components.find((c: { name: string }) => c.name === 'onnxruntime-node')?.purl).toMatch(/^pkg:npm\/onnxruntime-node@1\./);
    expect(doc.components.find((c: { name: string }) => c.name === 'node:20-slim')).toMatchObject({ type: 'container', version: `sha256:${'e'.repeat(64)}` });
    const image = doc.dependencies.find((d: { ref: string }) => d.ref === 'image');
    expect(image.dependsOn).toEqual(expect.arrayContaining(['model', 'server', 'base-image']));
  });

  it('lists every npm package the server bundle holds, as the bundle was built, and nothing only the CLI uses', async () => {
    const bundled = JSON.parse(await readFile(path.join(ROOT, 'dist', 'server-packages.json'), 'utf8')) as { name: string; version: string; license: string }[];
    const names = bundled.map((p) => p.name);
    for (const name of ['@grpc/grpc-js', 'prom-client', 'onnx-proto', 'protobufjs']) expect(names).toContain(name);
    // The CLI's own dependencies are not in the server, so not in the image.
    for (const name of ['commander', 'chalk', 'dockerode', 'zod', '@sigstore/sign']) expect(names).not.toContain(name);
    const doc = JSON.parse(await imageSbom(subject()));
    const purls = new Set(doc.components.map((c: { purl?: string }) => c.purl));
    for (const pkg of bundled) {
      const scoped = pkg.name.startsWith('@') ? `%40${pkg.name.slice(1)}` : pkg.name;
      expect(purls, pkg.name).toContain(`pkg:npm/${scoped}@${pkg.version}`);
      expect(pkg.license, pkg.name).toBeTruthy();
    }
    const server = doc.dependencies.find((d: { ref: string }) => d.ref === 'server');
    expect(server.dependsOn).toHaveLength(new Set(bundled.map((p) => `${p.name}@${p.version}`)).size);
  });

  it('is the same bytes for the same image, and changes only where the build changed', async () => {
    const first = await imageSbom(subject());
    expect(await imageSbom(subject())).toBe(first);
    const otherModel = 'c'.repeat(64);
    const second = await imageSbom({ ...subject({ 'mlops.model.sha256': otherModel }), imageId: `sha256:${'1'.repeat(64)}` });
    const a = JSON.parse(first);
    const b = JSON.parse(second);
    const byRef = (doc: { components: { 'bom-ref': string }[] }) => new Map(doc.components.map((c) => [c['bom-ref'], JSON.stringify(c)]));
    const changed = [...byRef(a)].filter(([ref, text]) => byRef(b).get(ref) !== text).map(([ref]) => ref);
    expect(changed).toEqual(['model']);
    expect(a.dependencies).toEqual(b.dependencies);
    expect(a.serialNumber).not.toBe(b.serialNumber);
    expect(a.metadata.component.properties).not.toEqual(b.metadata.component.properties);
  });

  it('refuses an image another mlops version built: it cannot vouch for that server bundle', async () => {
    await expect(imageSbom(subject({ 'mlops.version': '0.0.1' }))).rejects.toMatchObject({
      exitCode: 2,
      hint: 'rebuild the image with this mlops (`mlops build`), then tag and push it',
    });
  });

  it('a statement that names the SBOM by its sha256 signs the SBOM too', async () => {
    const sbom = await imageSbom(subject());
    const sha = createHash('sha256').update(sbom).digest('hex');
    const key = await keyFrom(generateSigningKeyPair().privatePem);
    const check = verifyBundle(await signStatement(facts({ sbomSha256: sha }), key), key.publicKey, key.keyId);
    expect(check.ok && statementFacts(check.statement).sbomSha256).toBe(sha);
  });
});
