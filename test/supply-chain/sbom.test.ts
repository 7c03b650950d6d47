/**
 * src/supply-chain/sbom.ts without Docker: the SBOM and what it lists.
 * The whole path against a real registry is in test/e2e/supply-chain.test.ts.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { signStatement, statementFacts, verifyBundle } from '../../src/supply-chain/attestation.js';
import { generateSigningKeyPair } from '../../src/supply-chain/keys.js';
import { imageSbom, sbomModelSha256, validateSbom } from '../../src/supply-chain/sbom.js';
import { VERSION } from '../../src/version.js';
import { ROOT } from '../helpers.js';
import { DIGEST, facts, keyFrom, MODEL } from './release.js';

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
