import { execFileSync } from 'node:child_process';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture, runCli } from '../helpers.js';

/**
 * Live: only where the environment provides a cluster. Set MLOPS_TEST_KUBE_CONTEXT
 * (a kubectl context) and MLOPS_TEST_KUBE_REPOSITORY (a registry repository the
 * cluster can pull from and this machine can push to). Without them this suite
 * is skipped and says so; the plan tests in test/targets/kubernetes.test.ts always run.
 */
const context = process.env.MLOPS_TEST_KUBE_CONTEXT;
const repository = process.env.MLOPS_TEST_KUBE_REPOSITORY;
const reason = !context || !repository ? 'set MLOPS_TEST_KUBE_CONTEXT and MLOPS_TEST_KUBE_REPOSITORY to run it against a real cluster' : '';
if (reason) process.stderr.write(`\nSKIPPED live Kubernetes test: ${reason}.\n`);

describe.skipIf(Boolean(reason))(`live Kubernetes deploy and automatic rollback${reason ? ` (skipped: ${reason})` : ''}`, () => {
  let dir: string;
  const namespace = `mlops-live-${Date.now().toString(36)}`;

  afterAll(async () => {
    execFileSync('kubectl', ['--context', context!, 'delete', 'namespace', namespace, '--wait=false'], { stdio: 'ignore' });
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('deploys a pushed version and reports it ready', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'mlops-live-k8s-'));
    execFileSync('kubectl', ['--context', context!, 'create', 'namespace', namespace]);
    await copyFile(fixture('breast_cancer', 'model.onnx'), path.join(dir, 'model.onnx'));
    await writeFile(
      path.join(dir, 'mlops.config.json'),
      JSON.stringify({
        model: { path: 'model.onnx', name: 'bc' },
        image: { repository },
        targets: {
          live: { type: 'kubernetes', context, namespace, rolloutTimeoutSeconds: 120, autoscaling: { minReplicas: 1, maxReplicas: 2, cpuTargetPercent: 80 } },
        },
      }),
    );
    const version = `0.0.${Date.now() % 100000}`;
    for (const step of [['build'], ['tag', version, '--offline'], ['push']]) expect((await runCli(step, { cwd: dir })).code).toBe(0);
    expect((await runCli(['deploy', version, '--target', 'live'], { cwd: dir })).code).toBe(0);
    const status = JSON.parse((await runCli(['status', '--target', 'live', '--json'], { cwd: dir })).stdout);
    expect(status).toMatchObject({ deployed: true, health: 'ready', version });
  }, 600_000);
});
