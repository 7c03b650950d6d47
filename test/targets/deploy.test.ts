/** src/targets/deploy.ts: --output refused where a target cannot write one, and `mlops history --rebuild`. */
import path from 'node:path';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { applyDefaults } from '../../src/config/normalize.js';
import { isMlopsError } from '../../src/errors.js';
import { deployVersion, rebuildHistory } from '../../src/targets/deploy.js';
import { currentRelease, previousRelease, readHistory } from '../../src/targets/history.js';
import type { Release } from '../../src/targets/types.js';
import { withTempDir } from '../helpers.js';
import { scripted } from '../scripted-cli.js';

const v1: Release = {
  version: '1.0.0',
  image: '127.0.0.1:5000/team/bc@sha256:' + 'a'.repeat(64),
  digest: 'sha256:' + 'a'.repeat(64),
  modelName: 'bc',
  modelSha256: 'f'.repeat(64),
};
const v2: Release = { ...v1, version: '1.1.0', image: '127.0.0.1:5000/team/bc@sha256:' + 'b'.repeat(64) };

describe('--output', () => {
  it('is refused (exit 2) on a target that cannot write one, before anything runs: it would deploy for real', async () => {
    const config = applyDefaults({
      model: { name: 'bc' },
      targets: { run: { type: 'cloudrun', project: 'acme', region: 'europe-west1' }, ai: { type: 'vertex', project: 'acme', region: 'europe-west4' } },
    });
    for (const name of ['run', 'ai']) {
      const error = await deployVersion(
        { cwd: '/tmp', projectDir: '/tmp', config, env: {}, target: name, dryRun: false, outputDir: '/tmp/out', log: () => undefined },
        '1.0.0',
      ).catch((e) => e);
      expect(isMlopsError(error) && error.exitCode).toBe(2);
      expect(error.message).toMatch(/^target '(run|ai)' \((cloudrun|vertex)\) has no --output form$/);
      expect(error.hint).toContain('--output writes files for kubernetes, kserve, sagemaker targets');
    }
  });
});

describe('mlops history --rebuild: the history from what the platform records', () => {
  const config = applyDefaults({
    model: { name: 'bc' },
    targets: { prod: { type: 'kubernetes', context: 'prod-cluster', namespace: 'ml' }, run: { type: 'cloudrun', project: 'acme', region: 'europe-west1' } },
  });
  const rs = (version: string, image: string, revision: number, replicas: number) => ({
    metadata: { creationTimestamp: `2026-11-0${revision}T00:00:00Z`, annotations: { 'deployment.kubernetes.io/revision': String(revision) } },
    spec: { replicas, template: { metadata: { labels: { 'app.kubernetes.io/version': version } }, spec: { containers: [{ image }] } } },
  });

  it('kubernetes: one entry per ReplicaSet by revision, the serving one last, so rollback works again', async () => {
    await withTempDir(async (dir) => {
      const { runner, calls } = scripted(() => ({
        stdout: JSON.stringify({ items: [rs('1.1.0', v2.image, 2, 0), rs('1.0.0', v1.image, 3, 2), rs('0.9.0', 'old@sha256:' + 'c'.repeat(64), 1, 0)] }),
      }));
      const options = { cwd: dir, projectDir: dir, config, env: {}, target: 'prod', dryRun: false, log: () => undefined, runner };
      const rebuilt = await rebuildHistory(options);
      expect(calls).toEqual(['kubectl --context prod-cluster --namespace ml get replicasets -l app.kubernetes.io/name=bc -o json']);
      expect(rebuilt.entries.map((e) => `${e.version} ${e.digest?.slice(0, 8)}`)).toEqual(['0.9.0 sha256:c', '1.1.0 sha256:b', '1.0.0 sha256:a']);
      const entries = await readHistory(dir, 'prod');
      expect(currentRelease(entries)?.version).toBe('1.0.0');
      expect(previousRelease(entries)?.version).toBe('1.1.0');
      // A history that reads is replaced only with --force, and kept as .bak.
      const refused = await rebuildHistory(options).catch((e) => e);
      expect(isMlopsError(refused) && refused.exitCode).toBe(2);
      expect(refused.hint).toContain('--force');
      await rebuildHistory({ ...options, force: true });
      expect(JSON.parse(await readFile(path.join(dir, '.mlops', 'history', 'prod.json.bak'), 'utf8')).entries).toHaveLength(3);
    });
  });

  it('cloudrun: the revisions mlops labelled, oldest first, the one taking traffic last; a damaged history is set aside', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, '.mlops', 'history', 'run.json');
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, '{"entries": [');
      const revision = (name: string, version: string, day: number) => ({
        metadata: { name, creationTimestamp: `2026-11-0${day}T00:00:00Z`, labels: { 'mlops-version': version } },
        spec: { containers: [{ image: `img@sha256:${String(day).repeat(64)}` }] },
      });
      const { runner } = scripted((line) =>
        line.includes('revisions list')
          ? {
              stdout: JSON.stringify([
                revision('bc-00002', '1-1-0', 2),
                revision('bc-00001', '1-0-0', 1),
                { metadata: { name: 'bc-manual', creationTimestamp: '2026-11-03T00:00:00Z' } },
              ]),
            }
          : { stdout: JSON.stringify({ status: { traffic: [{ revisionName: 'bc-00001', percent: 100 }] } }) },
      );
      const logs: string[] = [];
      const rebuilt = await rebuildHistory({ cwd: dir, projectDir: dir, config, env: {}, target: 'run', dryRun: false, log: (l) => logs.push(l), runner });
      expect(rebuilt.entries.map((e) => e.version)).toEqual(['1-1-0', '1-0-0']);
      expect(logs[0]).toMatch(/damaged history was moved to .*run\.json\.damaged-/);
    });
  });
});
