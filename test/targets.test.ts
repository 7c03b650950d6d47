import { execFileSync } from 'node:child_process';
import { defaultAzureSeam } from '../src/targets/azure.js';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { probeTool } from './tools.js';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, TARGET_DEFAULTS, type CloudRunTarget, type KubernetesTarget } from '../src/config/defaults.js';
import { applyDefaults } from '../src/config/normalize.js';
import { cloudRunAdapter } from '../src/targets/cloudrun.js';
import { createExecSeam, type Runner } from '../src/targets/exec.js';
import { kubernetesAdapter } from '../src/targets/kubernetes.js';
import { renderManifests } from '../src/targets/kubernetes-manifests.js';
import { configuredSampleInputs } from '../src/targets/smoke.js';
import type { DeployContext, Release } from '../src/targets/types.js';
import { withTempDir } from './helpers.js';
import { restrictedViolations } from './pod-security.js';
import { recordsInLine } from '../src/monitor/inference-records.js';

const v1: Release = {
  version: '1.0.0',
  image: '127.0.0.1:5000/team/bc@sha256:' + 'a'.repeat(64),
  digest: 'sha256:' + 'a'.repeat(64),
  modelName: 'bc',
  modelSha256: 'f'.repeat(64),
};
const v2: Release = { ...v1, version: '1.1.0', image: '127.0.0.1:5000/team/bc@sha256:' + 'b'.repeat(64), digest: 'sha256:' + 'b'.repeat(64) };

/** Answers as kubectl or gcloud would, by the first rule whose pattern matches the command line. */
function scripted(rules: [RegExp, { exitCode?: number; stdout?: string; stderr?: string }][]): { runner: Runner; calls: string[] } {
  const calls: string[] = [];
  const runner: Runner = async (command, args) => {
    const line = [command, ...args].join(' ');
    calls.push(line);
    const rule = rules.find(([pattern]) => pattern.test(line));
    return { exitCode: rule?.[1].exitCode ?? 0, stdout: rule?.[1].stdout ?? '', stderr: rule?.[1].stderr ?? '' };
  };
  return { runner, calls };
}

function ctx(options: { dryRun?: boolean; runner?: Runner; smoke?: DeployContext['smoke']; outputDir?: string } = {}): DeployContext {
  const config = applyDefaults({ model: { name: 'bc' } });
  return {
    targetName: 'staging',
    config,
    projectDir: '/tmp',
    env: {},
    exec: createExecSeam({ dryRun: Boolean(options.dryRun), runner: options.runner }),
    azure: defaultAzureSeam,
    dryRun: Boolean(options.dryRun),
    outputDir: options.outputDir,
    log: () => undefined,
    sampleInputs: configuredSampleInputs(applyDefaults({}), '/tmp'),
    smoke: options.smoke ?? (async () => undefined),
    checkpoint: () => undefined,
  };
}

const k8s: KubernetesTarget = { ...TARGET_DEFAULTS.kubernetes, context: 'prod-cluster', namespace: 'ml' };

describe('kubernetes manifests', () => {
  it('are valid against the Kubernetes schemas and safe by default', () => {
    const m = renderManifests('bc', k8s, v2, applyDefaults({}));
    const deployment = m.deployment.toJSON();
    expect(deployment.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
    const pod = deployment.spec.template.spec;
    const container = pod.containers[0];
    expect(container.image).toBe(v2.image);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001 });
    expect(container.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/v2/health/ready', port: 'http' });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/v2/health/live', port: 'http' });
    expect(container.resources).toEqual({ requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1', memory: '512Mi' } });
    // preStop (5 s) + the server's graceful shutdown (10 s) + 5 s to spare.
    expect(container.lifecycle.preStop.exec.command[0]).toBe('node');
    expect(pod.terminationGracePeriodSeconds).toBe(5 + DEFAULTS.server.shutdownTimeoutMs / 1000 + 5);
    expect(pod.template?.metadata ?? deployment.spec.template.metadata.labels['mlops.version']).toBe('1.1.0');
    expect(m.hpa.toJSON().spec).toMatchObject({
      minReplicas: 2,
      maxReplicas: 10,
      metrics: [{ resource: { name: 'cpu', target: { averageUtilization: 70 } } }],
    });
    // The HPA owns the scale: a replica count in the Deployment would undo it on every apply.
    expect(deployment.spec).not.toHaveProperty('replicas');
    expect(m.pdb.toJSON().spec).toEqual({ minAvailable: 1, selector: { matchLabels: { 'app.kubernetes.io/name': 'bc' } } });
    expect(m.service.toJSON().spec.ports).toEqual([
      { name: 'http', port: 80, targetPort: 'http' },
      { name: 'grpc', port: 8081, targetPort: 'grpc', appProtocol: 'grpc' },
    ]);
    expect(container.ports).toEqual([
      { name: 'http', containerPort: 8080 },
      { name: 'grpc', containerPort: 8081 },
    ]);
    expect(container.env).toContainEqual({ name: 'GRPC_PORT', value: '8081' });
  });

  it('pass Pod Security "restricted", carry the recommended labels, mount no API token, and take a ServiceAccount and pull secrets', () => {
    const pod = (m: ReturnType<typeof renderManifests>) => m.deployment.toJSON().spec.template.spec;
    expect(restrictedViolations(pod(renderManifests('bc', k8s, v2, applyDefaults({}))))).toEqual([]);
    // The check itself fails a pod with none of this.
    expect(restrictedViolations({ containers: [{ name: 'x' }] }).length).toBeGreaterThan(3);
    const labels = renderManifests('bc', k8s, v2, applyDefaults({})).deployment.toJSON().metadata.labels;
    expect(labels).toEqual({
      'app.kubernetes.io/name': 'bc',
      'app.kubernetes.io/instance': 'bc',
      'app.kubernetes.io/version': '1.1.0',
      'app.kubernetes.io/component': 'model-server',
      'app.kubernetes.io/part-of': 'bc',
      'app.kubernetes.io/managed-by': 'mlops',
    });
    expect(pod(renderManifests('bc', k8s, v2, applyDefaults({})))).toMatchObject({ automountServiceAccountToken: false });
    expect(pod(renderManifests('bc', k8s, v2, applyDefaults({})))).not.toHaveProperty('imagePullSecrets');
    const privateRegistry = pod(
      renderManifests('bc', { ...k8s, serviceAccountName: 'model-runner', imagePullSecrets: ['registry-creds'] }, v2, applyDefaults({})),
    );
    expect(privateRegistry).toMatchObject({
      serviceAccountName: 'model-runner',
      imagePullSecrets: [{ name: 'registry-creds' }],
      automountServiceAccountToken: false,
    });
  });

  it('refuse settings that break the schema or each other', () => {
    expect(() => renderManifests('bc', { ...k8s, autoscaling: { minReplicas: 5, maxReplicas: 2, cpuTargetPercent: 70 } }, v2, applyDefaults({}))).toThrow(
      /maxReplicas \(2\) is below minReplicas \(5\)/,
    );
    expect(() => renderManifests('bc', { ...k8s, autoscaling: { ...k8s.autoscaling, cpuTargetPercent: 'most' as never } }, v2, applyDefaults({}))).toThrow(
      /the rendered hpa is not valid Kubernetes: .*averageUtilization must be integer/,
    );
  });
});

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

describe('cloudrun plan tests (gcloud through the exec seam; no cloud account here)', () => {
  const run: CloudRunTarget = { ...TARGET_DEFAULTS.cloudrun, project: 'acme', region: 'europe-west1', canary: [10, 50, 100] };
  const base = '--project acme --region europe-west1';
  const before = { status: { url: 'https://bc-x.a.run.app', traffic: [{ revisionName: 'bc-00001', percent: 100 }] } };
  const after = {
    status: {
      url: 'https://bc-x.a.run.app',
      traffic: [...before.status.traffic, { revisionName: 'bc-00002', percent: 0, tag: 'v1-1-0', url: 'https://v1-1-0---bc-x.a.run.app' }],
    },
  };

  function gcloud(extra: [RegExp, { exitCode?: number; stdout?: string }][] = []) {
    let described = 0;
    const { runner, calls } = scripted([[/auth print-identity-token/, { stdout: 'id-token' }], ...extra]);
    const wrapped: Runner = async (command, args, options) => {
      if (args.includes('describe')) {
        calls.push([command, ...args].join(' '));
        return { exitCode: 0, stdout: JSON.stringify(described++ === 0 ? before : after), stderr: '' };
      }
      return runner(command, args, options);
    };
    return { runner: wrapped, calls };
  }

  it('deploys a tagged revision with no traffic, smoke-tests its URL, then moves traffic in steps', async () => {
    const { runner, calls } = gcloud();
    const smoked: [string, Record<string, string> | undefined][] = [];
    const outcome = await cloudRunAdapter.deploy(run, v2, v1, ctx({ runner, smoke: async (url, _r, headers) => void smoked.push([url, headers]) }));
    expect(outcome).toMatchObject({ status: 'deployed', url: 'https://bc-x.a.run.app' });
    expect(calls).toEqual([
      `gcloud run services describe bc ${base} --format=json`,
      `gcloud run deploy bc --image ${v2.image} ${base} --port 8080 --concurrency 80 --cpu 1 --memory 512Mi --min-instances 0 --max-instances 10 --labels mlops-version=1-1-0,managed-by=mlops --tag v1-1-0 --no-allow-unauthenticated --no-traffic --quiet --format=json`,
      `gcloud run services describe bc ${base} --format=json`,
      'gcloud auth print-identity-token',
      `gcloud run services update-traffic bc ${base} --to-tags=v1-1-0=10 --quiet`,
      `gcloud run services update-traffic bc ${base} --to-tags=v1-1-0=50 --quiet`,
      `gcloud run services update-traffic bc ${base} --to-tags=v1-1-0=100 --quiet`,
    ]);
    expect(smoked).toHaveLength(3);
    expect(smoked[0]).toEqual(['https://v1-1-0---bc-x.a.run.app', { authorization: 'Bearer id-token' }]);
  });

  it('moves traffic back to the serving revisions when the smoke test fails', async () => {
    const { runner, calls } = gcloud([[/logging read/, { stdout: 'Traceback: model file missing' }]]);
    const outcome = await cloudRunAdapter.deploy(run, v2, v1, ctx({ runner, smoke: async () => Promise.reject(new Error('inference answered HTTP 503')) }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'smoke-failure', restored: v1, logs: 'Traceback: model file missing' });
    expect(calls.at(-1)).toBe(`gcloud run services update-traffic bc ${base} --to-revisions=bc-00001=100 --quiet`);
    expect(calls.some((c) => c.includes('--to-tags'))).toBe(false);
  });

  it('--dry-run lists the gcloud commands and runs none', async () => {
    const { runner, calls } = gcloud();
    const c = ctx({ dryRun: true, runner });
    expect((await cloudRunAdapter.deploy(run, v2, v1, c)).status).toBe('planned');
    expect(calls).toEqual([]);
    expect(c.exec.steps.map((s) => s.command).filter((s) => s.includes('update-traffic'))).toHaveLength(3);
  });
});

const jq = probeTool('jq', 'apt-get install jq');

describe('the GitHub Actions template', () => {
  it('is valid YAML and runs build, test, bench, tag, push and deploy in that order', async () => {
    const { parse } = await import('yaml');
    const workflow = parse(await readFile(path.join(__dirname, '..', 'templates', 'github-actions.yml'), 'utf8'));
    // The release job, then the deploy job that needs it.
    expect(workflow.jobs['deploy-staging'].needs).toBe('release');
    const commands = [...workflow.jobs.release.steps, ...workflow.jobs['deploy-staging'].steps]
      .flatMap((s: { run?: string }) => (s.run ?? '').split('\n'))
      .map((l: string) => l.trim())
      .filter((r: string) => r.startsWith('mlops '));
    expect(commands.map((c: string) => c.split(' ')[1])).toEqual(['build', 'test', 'bench', 'tag', 'push', 'deploy']);
    // The push signs: the key arrives from a secret through env, never in the script's text.
    for (const file of ['github-actions.yml', 'monitor-and-retrain.yml']) {
      const flow = parse(await readFile(path.join(__dirname, '..', 'templates', file), 'utf8'));
      const push = Object.values(flow.jobs as Record<string, { steps: { run?: string; env?: Record<string, string> }[] }>)
        .flatMap((job) => job.steps)
        .find((s) => s.run?.startsWith('mlops push'));
      expect(push?.env?.MLOPS_SIGNING_KEY, file).toBe('${{ secrets.MLOPS_SIGNING_KEY }}');
    }
  });

  it('monitor-and-retrain: a scheduled drift and quality check, then on drift or a drop retrain, build, test against the serving version, bench, tag, push and deploy to staging', async () => {
    const { parse } = await import('yaml');
    const workflow = parse(await readFile(path.join(__dirname, '..', 'templates', 'monitor-and-retrain.yml'), 'utf8'));
    expect(workflow.on.schedule[0].cron).toMatch(/^\S+ \S+ \* \* \*$/);
    const runs = (job: { steps: { run?: string }[] }) =>
      job.steps
        .map((s) => s.run ?? '')
        .flatMap((r) => r.split('\n'))
        .map((l) => l.trim())
        .filter((l) => /^(\w+=\$\()?mlops /.test(l) || l.includes('$(mlops '));
    const watch = runs(workflow.jobs.watch);
    expect(watch).toEqual([
      expect.stringMatching(/^mlops monitor --target production --strict /),
      expect.stringMatching(/^mlops monitor --target production --labels labels\/labels\.csv --since 7d /),
    ]);
    expect(workflow.jobs.watch.outputs.drifted).toBe('${{ steps.drift.outputs.drifted }}');
    expect(workflow.jobs.watch.outputs.dropped).toBe('${{ steps.quality.outputs.dropped }}');
    // The quality check runs once labels were fetched, after the drift check.
    const watchSteps = workflow.jobs.watch.steps.map((s: { name?: string }) => s.name ?? '');
    expect(watchSteps.findIndex((n: string) => n.startsWith('Fetch labels'))).toBeLessThan(watchSteps.findIndex((n: string) => n.startsWith('Quality check')));
    expect(workflow.jobs.watch.steps.find((s: { id?: string }) => s.id === 'quality').if).toBe("hashFiles('labels/labels.csv') != ''");
    expect(workflow.jobs.retrain.needs).toBe('watch');
    expect(workflow.jobs.retrain.if).toBe("needs.watch.outputs.drifted == 'true' || needs.watch.outputs.dropped == 'true'");
    const steps = workflow.jobs.retrain.steps.map((s: { name?: string }) => s.name ?? '');
    expect(steps.findIndex((n: string) => n.startsWith('Retrain'))).toBeLessThan(steps.findIndex((n: string) => n.startsWith('Build')));
    const commands = runs(workflow.jobs.retrain).map((l) => /mlops (\w+)/.exec(l)![1]);
    expect(commands).toEqual(['status', 'versions', 'build', 'test', 'bench', 'tag', 'push', 'deploy']);
    const retrain = runs(workflow.jobs.retrain);
    expect(retrain.find((l) => l.startsWith('mlops test'))).toContain('--baseline reports/baseline.json');
    expect(retrain.find((l) => l.startsWith('mlops deploy'))).toContain('--target staging');
  });

  it.skipIf(!jq.ok)(
    `monitor-and-retrain: the baseline step turns the registry's labels into the report \`mlops test --baseline\` reads${jq.ok ? '' : ` (skipped: ${jq.reason})`}`,
    async () => {
      const { parse } = await import('yaml');
      const workflow = parse(await readFile(path.join(__dirname, '..', 'templates', 'monitor-and-retrain.yml'), 'utf8'));
      const step = workflow.jobs.retrain.steps.find((s: { name?: string }) => s.name?.startsWith('Baseline')).run as string;
      const program = /jq --arg v "\$serving" '([^']+)'/.exec(step)![1];
      const listing = JSON.stringify({
        versions: [
          { version: '1.0.0', metrics: { 'test.accuracy': '0.97', 'test.passed': 'true', 'bench.p99_ms': '3.1' } },
          { version: '1.1.0', metrics: {} },
        ],
      });
      const baseline = JSON.parse(execFileSync(jq.path, ['--arg', 'v', '1.0.0', program], { input: listing, encoding: 'utf8' }));
      expect(baseline).toEqual({ version: '1.0.0', metrics: { accuracy: 0.97, passed: 'true' } });
    },
  );
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

  it("cloudrun: the records Cloud Logging parsed from the service's stdout", async () => {
    const run: CloudRunTarget = { ...TARGET_DEFAULTS.cloudrun, project: 'acme', region: 'europe-west1' };
    const entries = [{ jsonPayload: JSON.parse(record('x')), timestamp: '2026-11-20T10:00:00Z' }, { jsonPayload: JSON.parse(record('y')) }];
    const { runner, calls } = scripted([[/logging read/, { stdout: JSON.stringify(entries) }]]);
    const logs = await cloudRunAdapter.inferenceLogs(run, ctx({ runner }), undefined);
    expect(calls).toEqual([
      'gcloud logging read resource.type="cloud_run_revision" AND resource.labels.service_name="bc" AND resource.labels.location="europe-west1" AND jsonPayload.type="mlops.inference" --project acme --format=json --order=asc --freshness=30d',
    ]);
    expect(
      logs[0].text
        .split('\n')
        .flatMap(recordsInLine)
        .map((r) => r.id),
    ).toEqual(['x', 'y']);
  });
});

describe('secrets wired the platform way (issue 23): never values in a manifest or command line', () => {
  const TOKEN = 'a-token-that-must-never-appear-0123';

  it('kubernetes and KServe: the token and TLS Secrets mounted read-only with the server pointed at them, HTTPS probes, still Pod Security restricted', async () => {
    const secured = { ...k8s, auth: { secretName: 'bc-tokens' }, tls: { secretName: 'bc-tls', clientCa: true } };
    const manifests = renderManifests('bc', secured, v2, applyDefaults({}));
    const pod = manifests.deployment.toJSON().spec.template.spec;
    expect(restrictedViolations(pod)).toEqual([]);
    expect(pod.securityContext.fsGroup).toBe(10001);
    expect(pod.volumes).toEqual(
      expect.arrayContaining([
        { name: 'mlops-auth', secret: { secretName: 'bc-tokens', defaultMode: 0o440, items: [{ key: 'tokens', path: 'tokens' }] } },
        { name: 'mlops-tls', secret: { secretName: 'bc-tls', defaultMode: 0o440, items: ['tls.crt', 'tls.key', 'ca.crt'].map((key) => ({ key, path: key })) } },
      ]),
    );
    const container = pod.containers[0];
    expect(container.volumeMounts).toEqual(
      expect.arrayContaining([
        { name: 'mlops-auth', mountPath: '/run/secrets/mlops/auth', readOnly: true },
        { name: 'mlops-tls', mountPath: '/run/secrets/mlops/tls', readOnly: true },
      ]),
    );
    expect(container.env).toEqual(
      expect.arrayContaining([
        { name: 'MLOPS_AUTH_TOKEN_FILE', value: '/run/secrets/mlops/auth/tokens' },
        { name: 'MLOPS_TLS_CERT', value: '/run/secrets/mlops/tls/tls.crt' },
        { name: 'MLOPS_TLS_KEY', value: '/run/secrets/mlops/tls/tls.key' },
        { name: 'MLOPS_TLS_CLIENT_CA', value: '/run/secrets/mlops/tls/ca.crt' },
      ]),
    );
    for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) expect(container[probe].httpGet.scheme).toBe('HTTPS');
    const { renderInferenceService } = await import('../src/targets/kserve-manifest.js');
    const isvc = renderInferenceService(
      'bc',
      { ...TARGET_DEFAULTS.kserve, namespace: 'ml', auth: { secretName: 'bc-tokens' }, tls: { secretName: 'bc-tls' } },
      v2,
      applyDefaults({}),
    ) as any;
    expect(isvc.spec.predictor.volumes.map((v: { name: string }) => v.name)).toEqual(['tmp', 'mlops-auth', 'mlops-tls']);
    expect(isvc.spec.predictor.containers[0].readinessProbe.httpGet.scheme).toBe('HTTPS');
  });

  it('kubernetes: a NetworkPolicy admits only the configured namespaces and labelled pods, valid against the schema; one that admits nobody is refused', () => {
    const m = renderManifests('bc', { ...k8s, networkPolicy: { namespaces: ['gateway'], podLabels: { role: 'client' } } }, v2, applyDefaults({}));
    expect(m.networkPolicy!.toJSON()).toMatchObject({
      kind: 'NetworkPolicy',
      spec: {
        podSelector: { matchLabels: { 'app.kubernetes.io/name': 'bc' } },
        policyTypes: ['Ingress'],
        ingress: [
          {
            from: [
              {
                namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['gateway'] }] },
                podSelector: { matchLabels: { role: 'client' } },
              },
            ],
            ports: [{ port: 'http' }, { port: 'grpc' }],
          },
        ],
      },
    });
    expect(() => renderManifests('bc', { ...k8s, networkPolicy: {} }, v2, applyDefaults({}))).toThrow(/networkPolicy admits nobody/);
  });

  it('kubernetes: a deploy to a server with tokens needs MLOPS_TOKEN for its smoke test, and says so before anything is applied', async () => {
    const { runner, calls } = scripted([]);
    const c = { ...ctx({ runner }), env: {} };
    await expect(kubernetesAdapter.deploy({ ...k8s, auth: { secretName: 'bc-tokens' } }, v2, v1, c)).rejects.toThrow(
      /targets\.staging\.auth: the smoke test needs a token the server accepts/,
    );
    expect(calls).toEqual([]);
  });

  it('cloudrun: the token file comes from Secret Manager with --set-secrets; the smoke test sends MLOPS_TOKEN as Authorization and the IAM token as X-Serverless-Authorization; no token on a command line', async () => {
    const run: CloudRunTarget = { ...TARGET_DEFAULTS.cloudrun, project: 'acme', region: 'europe-west1', auth: { secret: 'bc-tokens:3' } };
    const before = { status: { url: 'https://bc-x.a.run.app', traffic: [{ revisionName: 'bc-00001', percent: 100 }] } };
    const after = {
      status: {
        url: 'https://bc-x.a.run.app',
        traffic: [...before.status.traffic, { revisionName: 'bc-00002', percent: 0, tag: 'v1-1-0', url: 'https://v1-1-0---bc-x.a.run.app' }],
      },
    };
    let described = 0;
    const { runner, calls } = scripted([[/auth print-identity-token/, { stdout: 'id-token' }]]);
    const wrapped: Runner = async (command, args, options) =>
      args.includes('describe')
        ? (calls.push([command, ...args].join(' ')), { exitCode: 0, stdout: JSON.stringify(described++ === 0 ? before : after), stderr: '' })
        : runner(command, args, options);
    const smoked: [Record<string, string> | undefined, unknown][] = [];
    const c = {
      ...ctx({
        runner: wrapped,
        smoke: async (_u: string, _r: Release, headers?: Record<string, string>, security?: unknown) => void smoked.push([headers, security]),
      }),
      env: { MLOPS_TOKEN: TOKEN },
    };
    expect((await cloudRunAdapter.deploy(run, v2, v1, c)).status).toBe('deployed');
    const deploy = calls.find((l) => l.startsWith('gcloud run deploy'))!;
    expect(deploy).toContain('--set-secrets /run/secrets/mlops/auth/tokens=bc-tokens:3 --update-env-vars MLOPS_AUTH_TOKEN_FILE=/run/secrets/mlops/auth/tokens');
    expect(calls.join('\n')).not.toContain(TOKEN);
    expect(smoked[0]).toEqual([{ 'x-serverless-authorization': 'Bearer id-token' }, { token: TOKEN, insecure: false }]);
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
