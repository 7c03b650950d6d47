import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { appendHistory, findRelease, previousRelease, readHistory } from '../../src/targets/history.js';
import { releases, signature } from './target-context.js';

const ecr = '123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/bc';
const [v1, v2] = releases(ecr);

describe('history keeps what a rollback smoke-tests with', () => {
  it("stores each release's model signature, so rolling back to it needs no registry", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'mlops-history-'));
    try {
      for (const release of [v1, v2]) {
        await appendHistory(dir, 'prod', {
          action: 'deploy',
          version: release.version,
          image: release.image,
          digest: release.digest,
          modelName: 'bc',
          modelSha256: release.modelSha256,
          signature: release.signature,
          at: '2026-11-23T00:00:00Z',
          outcome: 'deployed',
        });
      }
      const entries = await readHistory(dir, 'prod');
      expect(previousRelease(entries)).toEqual(v1);
      expect(findRelease(entries, '1.1.0')?.signature).toEqual(signature);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
