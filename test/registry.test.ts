import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveCredentials } from '../src/registry/credentials.js';
import { isLoopback, localName, parseReference } from '../src/registry/reference.js';
import { reportLabels } from '../src/release/tag.js';
import { withTempDir } from './helpers.js';

describe('image references', () => {
  it('splits registry, repository, tag and digest as Docker does', () => {
    expect(parseReference('127.0.0.1:5000/team/bc:1.0.0')).toEqual({ registry: '127.0.0.1:5000', repository: 'team/bc', tag: '1.0.0', digest: undefined });
    expect(parseReference('registry.example.com/bc@sha256:abc')).toEqual({
      registry: 'registry.example.com',
      repository: 'bc',
      tag: undefined,
      digest: 'sha256:abc',
    });
    expect(parseReference('bc')).toMatchObject({ registry: 'docker.io', repository: 'library/bc' });
    expect(parseReference('team/bc:v2')).toMatchObject({ registry: 'docker.io', repository: 'team/bc', tag: 'v2' });
    expect(parseReference('localhost/bc')).toMatchObject({ registry: 'localhost', repository: 'bc' });
    expect(localName(parseReference('bc:1'))).toBe('bc');
    expect(() => parseReference('Team/BC')).toThrow(/not a valid image reference/);
  });

  it('treats only loopback registries as plain HTTP', () => {
    expect(isLoopback('127.0.0.1:5000')).toBe(true);
    expect(isLoopback('localhost:5000')).toBe(true);
    expect(isLoopback('registry.example.com')).toBe(false);
  });
});

describe('registry credentials', () => {
  it('prefers MLOPS_REGISTRY_USERNAME / PASSWORD', async () => {
    const c = await resolveCredentials('r.example.com', { MLOPS_REGISTRY_USERNAME: 'u', MLOPS_REGISTRY_PASSWORD: 'p', HOME: '/nonexistent' });
    expect(c).toEqual({ username: 'u', password: 'p', source: 'MLOPS_REGISTRY_USERNAME/PASSWORD' });
  });

  it("reads Docker's config: inline auth, and a credential helper program", async () => {
    await withTempDir(async (dir) => {
      const bin = path.join(dir, 'bin');
      await mkdir(bin);
      // A real credential helper, as docker-credential-* programs work: server URL on stdin, JSON out.
      await writeFile(
        path.join(bin, 'docker-credential-fake'),
        '#!/bin/sh\nread server\necho "{\\"Username\\":\\"helper-user\\",\\"Secret\\":\\"from-$server\\"}"\n',
      );
      await chmod(path.join(bin, 'docker-credential-fake'), 0o755);
      await writeFile(
        path.join(dir, 'config.json'),
        JSON.stringify({
          auths: { 'a.example.com': { auth: Buffer.from('alice:pw:with:colons').toString('base64') } },
          credHelpers: { 'b.example.com': 'fake' },
        }),
      );
      const env = { DOCKER_CONFIG: dir, PATH: `${bin}:${process.env.PATH}` };
      expect(await resolveCredentials('a.example.com', env)).toMatchObject({ username: 'alice', password: 'pw:with:colons' });
      expect(await resolveCredentials('b.example.com', env)).toMatchObject({
        username: 'helper-user',
        password: 'from-b.example.com',
        source: 'docker-credential-fake',
      });
      expect(await resolveCredentials('c.example.com', env)).toBeUndefined();
    });
  });
});

describe('result labels', () => {
  it('come only from reports made on the same image', async () => {
    await withTempDir(async (dir) => {
      await mkdir(path.join(dir, '.mlops'));
      await writeFile(
        path.join(dir, '.mlops/last-test.json'),
        JSON.stringify({ imageId: 'sha256:aaa', passed: true, rows: 10, metrics: { accuracy: 0.91234567, confusion_matrix: [[1]] } }),
      );
      await writeFile(
        path.join(dir, '.mlops/last-bench.json'),
        JSON.stringify({
          target: { imageId: 'sha256:bbb' },
          passed: true,
          runs: [{ concurrency: 1, batch: 1, throughputRps: 100, latencyMs: { p50: 1, p95: 2, p99: 3 } }],
        }),
      );
      expect(await reportLabels(dir, 'sha256:aaa')).toEqual({ 'mlops.test.passed': 'true', 'mlops.test.rows': '10', 'mlops.test.accuracy': '0.912346' });
      expect(await reportLabels(dir, 'sha256:bbb')).toEqual({
        'mlops.bench.passed': 'true',
        'mlops.bench.load': 'concurrency 1, batch 1',
        'mlops.bench.p50_ms': '1',
        'mlops.bench.p95_ms': '2',
        'mlops.bench.p99_ms': '3',
        'mlops.bench.throughput_rps': '100',
      });
      expect(await reportLabels(dir, 'sha256:ccc')).toEqual({});
    });
  });
});
