/** The facts of one release and a signing key from its PEM, for the supply chain's tests. */
import { releaseStatement } from '../../src/supply-chain/attestation.js';
import { loadSigningKey } from '../../src/supply-chain/keys.js';

export const DIGEST = `sha256:${'d'.repeat(64)}`;
export const MODEL = 'a'.repeat(64);

export function facts(overrides: Partial<Parameters<typeof releaseStatement>[0]> = {}) {
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

export async function keyFrom(pem: string) {
  const key = await loadSigningKey({ MLOPS_SIGNING_KEY: pem }, '', '/');
  return key!;
}
