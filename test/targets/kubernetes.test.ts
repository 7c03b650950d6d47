import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import type { Runner } from '../../src/targets/exec.js';
import { kubernetesAdapter } from '../../src/targets/kubernetes.js';
import { withTempDir } from '../helpers.js';
import { recordsInLine } from '../../src/monitor/inference-records.js';
import { ctx, k8s, scripted, v1, v2 } from './plan-context.js';

describe('kubernetes plan tests (kubectl through the exec seam; no cluster here)', () => {
  const base = '--context prod-cluster --namespace ml';

  it('applies, waits for the rollout and smoke-tests through a port-forward', async () => {
    const { runner, calls } = scripted([]);
    const smoked: string[] = [];
    const c = ctx({ runner, smoke: async (url) => void smoked.push(url) });
    const outcome = await kubernetesAdapter.deploy(k8s, v2, v1, c);
    expect(outcome).toMatchObject({ status: 'deployed', release: v2, previous: v1 });
    expect(calls).toEqual([`kubectl ${base} apply -f -`, `kubectl ${base} rollout status deployment/bc --timeout=300s`]);
    expect(c.exec.steps.map((s) => s.command)).toEqual([
      `kubectl ${base} apply -f -`,
      `kubectl ${base} rollout status deployment/bc --timeout=300s`,
      expect.stringMatching(new RegExp(`^kubectl ${base} port-forward service/bc \\d+:80 &$`)),
    ]);
    expect(smoked[0]).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const docs = parseAllDocuments(c.exec.steps[0].input!).map((d) => d.toJSON());
    expect(docs.map((d) => d.kind)).toEqual(['Deployment', 'Service', 'HorizontalPodAutoscaler', 'PodDisruptionBudget']);
  });

  it('rolls back with `rollout undo` when pods crash, naming the crash loop and keeping the logs', async () => {
    const pods = { items: [{ status: { containerStatuses: [{ restartCount: 4, state: { waiting: { reason: 'CrashLoopBackOff' } } }] } }] };
    const { runner, calls } = scripted([
      [/rollout status .*--timeout=300s$/, { exitCode: 1, stderr: 'error: deployment "bc" exceeded its progress deadline' }],
      [/get pods/, { stdout: JSON.stringify(pods) }],
      [/logs -l/, { stdout: 'error: sha256 mismatch' }],
    ]);
    let undone = false;
    const wrapped: Runner = async (command, args, options) => {
      if (args.includes('undo')) undone = true;
      // After the undo, the old ReplicaSet rolls back in fine.
      if (undone && args.includes('status')) return { exitCode: 0, stdout: 'successfully rolled out', stderr: '' };
      return runner(command, args, options);
    };
    const outcome = await kubernetesAdapter.deploy(k8s, v2, v1, ctx({ runner: wrapped }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'crash-loop', restored: v1, logs: 'error: sha256 mismatch' });
    expect(calls.slice(2)).toEqual([
      `kubectl ${base} get pods -l app.kubernetes.io/name=bc,mlops.version=1.1.0 -o json`,
      `kubectl ${base} logs -l app.kubernetes.io/name=bc,mlops.version=1.1.0 --tail=20 --all-containers --prefix`,
      `kubectl ${base} rollout undo deployment/bc`,
    ]);
  });

  it('names a health timeout when pods never became ready, and a smoke failure when they answer badly', async () => {
    const timeout = scripted([
      [/rollout status/, { exitCode: 1 }],
      [/get pods/, { stdout: JSON.stringify({ items: [{ status: { containerStatuses: [{ restartCount: 0 }] } }] }) }],
    ]);
    expect(await kubernetesAdapter.deploy(k8s, v2, v1, ctx({ runner: timeout.runner }))).toMatchObject({ status: 'failed', reason: 'health-timeout' });
    const smoke = scripted([]);
    const outcome = await kubernetesAdapter.deploy(
      k8s,
      v2,
      v1,
      ctx({ runner: smoke.runner, smoke: async () => Promise.reject(new Error('inference answered HTTP 500')) }),
    );
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'smoke-failure', message: 'the smoke test failed: inference answered HTTP 500' });
    expect(smoke.calls).toContain(`kubectl ${base} rollout undo deployment/bc`);
  });

  it('without a previous version there is nothing to undo: the outcome is failed', async () => {
    const { runner, calls } = scripted([[/rollout status/, { exitCode: 1 }]]);
    expect(await kubernetesAdapter.deploy(k8s, v2, null, ctx({ runner }))).toMatchObject({ status: 'failed', restored: null });
    expect(calls.some((c) => c.includes('undo'))).toBe(false);
  });

  it('--dry-run records exactly what would run, manifests included, and runs nothing', async () => {
    const { runner, calls } = scripted([]);
    const c = ctx({ dryRun: true, runner });
    expect(await kubernetesAdapter.deploy(k8s, v2, v1, c)).toEqual({ status: 'planned', release: v2 });
    expect(calls).toEqual([]);
    expect(c.exec.steps[0]).toMatchObject({ command: `kubectl ${base} apply -f -` });
    expect(c.exec.steps[0].input).toContain(`image: ${v2.image}`);
  });

  it('--output writes the manifests for GitOps and applies nothing', async () => {
    await withTempDir(async (dir) => {
      const { runner, calls } = scripted([]);
      const outcome = await kubernetesAdapter.deploy(k8s, v2, v1, ctx({ runner, outputDir: dir }));
      expect(outcome.status).toBe('written');
      expect(calls).toEqual([]);
      expect((await readdir(dir)).sort()).toEqual(['bc-deployment.yaml', 'bc-hpa.yaml', 'bc-pdb.yaml', 'bc-service.yaml']);
      expect(parseAllDocuments(await readFile(path.join(dir, 'bc-deployment.yaml'), 'utf8'))[0].toJSON().kind).toBe('Deployment');
    });
  });
});

describe('inference logs from remote targets, for mlops monitor --labels (kubectl and gcloud through the exec seam)', () => {
  const record = (id: string) =>
    JSON.stringify({
      type: 'mlops.inference',
      id,
      row: 0,
      rows: 1,
      time: '2026-11-20T10:00:00.000Z',
      model: 'bc',
      version: '1',
      sha256: 'f'.repeat(64),
      outputs: [],
    });

  it('kubernetes: kubectl logs of every pod of the deployment, since a time', async () => {
    const pods = { items: [{ metadata: { name: 'bc-1' } }, { metadata: { name: 'bc-2' } }] };
    const { runner, calls } = scripted([
      [/get pods/, { stdout: JSON.stringify(pods) }],
      [/logs pod\/bc-1/, { stdout: `2026-11-20T10:00:00Z serving\n${record('a')}\n` }],
      [/logs pod\/bc-2/, { exitCode: 1, stderr: 'Error from server (NotFound): pods "bc-2" not found' }],
    ]);
    const warnings: string[] = [];
    const logs = await kubernetesAdapter.inferenceLogs(k8s, { ...ctx({ runner }), log: (l) => warnings.push(l) }, new Date('2026-11-19T00:00:00Z'));
    expect(calls).toEqual([
      'kubectl --context prod-cluster --namespace ml get pods -l app.kubernetes.io/name=bc -o json',
      'kubectl --context prod-cluster --namespace ml logs pod/bc-1 -c model --since-time=2026-11-19T00:00:00.000Z',
      'kubectl --context prod-cluster --namespace ml logs pod/bc-2 -c model --since-time=2026-11-19T00:00:00.000Z',
    ]);
    expect(logs.map((l) => l.from)).toEqual(['pod bc-1']);
    expect(
      logs[0].text
        .split('\n')
        .flatMap(recordsInLine)
        .map((r) => r.id),
    ).toEqual(['a']);
    // A pod whose log cannot be read is named, not silently left out.
    expect(warnings).toEqual(['warning: kubectl logs pod/bc-2 failed: Error from server (NotFound): pods "bc-2" not found']);
  });
});

describe('secrets wired the platform way (issue 23): never values in a manifest or command line', () => {
  it('kubernetes: a deploy to a server with tokens needs MLOPS_TOKEN for its smoke test, and says so before anything is applied', async () => {
    const { runner, calls } = scripted([]);
    const c = { ...ctx({ runner }), env: {} };
    await expect(kubernetesAdapter.deploy({ ...k8s, auth: { secretName: 'bc-tokens' } }, v2, v1, c)).rejects.toThrow(
      /targets\.staging\.auth: the smoke test needs a token the server accepts/,
    );
    expect(calls).toEqual([]);
  });
});

describe('status says whether what serves asks for tokens and speaks TLS', () => {
  it("kubernetes: from the Deployment's pod template", async () => {
    const deployment = (env: { name: string; value: string }[]) =>
      JSON.stringify({
        metadata: { labels: { 'app.kubernetes.io/version': '1.1.0' } },
        spec: { replicas: 2, template: { spec: { containers: [{ image: v2.image, env }] } } },
        status: { readyReplicas: 2 },
      });
    const secured = scripted([
      [
        /get deployment/,
        {
          stdout: deployment([
            { name: 'MLOPS_AUTH_TOKEN_FILE', value: '/run/secrets/mlops/auth/tokens' },
            { name: 'MLOPS_TLS_CERT', value: '/run/secrets/mlops/tls/tls.crt' },
          ]),
        },
      ],
    ]);
    expect((await kubernetesAdapter.status(k8s, ctx({ runner: secured.runner }))).detail).toMatchObject({ auth: 'bearer tokens', tls: 'TLS' });
    const open = scripted([[/get deployment/, { stdout: deployment([{ name: 'PORT', value: '8080' }]) }]]);
    expect((await kubernetesAdapter.status(k8s, ctx({ runner: open.runner }))).detail).toMatchObject({ auth: 'off', tls: 'off' });
  });
});
