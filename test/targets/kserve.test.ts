import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { TARGET_DEFAULTS, type KServeTarget } from '../../src/config/defaults.js';
import { applyDefaults } from '../../src/config/normalize.js';
import { kserveAdapter } from '../../src/targets/kserve.js';
import { renderInferenceService, validateInferenceService } from '../../src/targets/kserve-manifest.js';
import { restrictedViolations } from './pod-security.js';
import { scripted } from '../scripted-cli.js';
import { exitCodeOf, releases, targetContext } from './target-context.js';

const ecr = '123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/bc';
const [v1, v2] = releases(ecr);
const ctx = targetContext;

describe('kserve plan tests (kubectl through the exec seam; no cluster here)', () => {
  const target: KServeTarget = { ...TARGET_DEFAULTS.kserve, context: 'prod', namespace: 'ml', canary: [20, 100] };
  const base = '--context prod --namespace ml';
  const config = applyDefaults({ model: { name: 'bc' } });
  const ready = (generation: number, image = v1.image) => ({
    apiVersion: 'serving.kserve.io/v1beta1',
    kind: 'InferenceService',
    metadata: {
      name: 'bc',
      namespace: 'ml',
      generation,
      annotations: { 'mlops.version': '1.0.0', 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
      labels: { 'app.kubernetes.io/name': 'bc' },
    },
    spec: { predictor: { containers: [{ name: 'kserve-container', image }] } },
    status: { observedGeneration: generation, url: 'http://bc.ml.example.com', conditions: [{ type: 'Ready', status: 'True' }] },
  });
  const pods = (image: string) =>
    JSON.stringify({
      items: [
        {
          metadata: { name: 'bc-predictor-abc' },
          spec: { containers: [{ name: 'kserve-container', image }] },
          status: { containerStatuses: [{ ready: true }] },
        },
      ],
    });

  /** A cluster with KServe in a script: `failOn` makes the generation that applies the new image fail. */
  function cluster(options: { exists?: boolean; failWith?: { reason: string; message: string } } = {}) {
    let generation = options.exists ? 1 : 0;
    let image = options.exists ? v1.image : '';
    return scripted((line, _args, input) => {
      if (line.includes('apply -f -')) {
        generation++;
        image = (parse(input!) as { spec: { predictor: { containers: { image: string }[] } } }).spec.predictor.containers[0].image;
        return { stdout: JSON.stringify({ metadata: { generation } }) };
      }
      if (line.includes('get inferenceservice')) {
        if (!generation) return { exitCode: 1, stderr: 'Error from server (NotFound): inferenceservices.serving.kserve.io "bc" not found' };
        const state = ready(generation, image);
        if (options.failWith && image === v2.image)
          state.status.conditions = [
            { type: 'Ready', status: 'False' },
            { type: 'PredictorReady', status: 'False', ...options.failWith },
          ];
        return { stdout: JSON.stringify(state) };
      }
      if (line.includes('get pods')) return { stdout: pods(image) };
      if (line.includes('logs')) return { stdout: '[pod/bc-predictor-abc] error: out of memory' };
      return {};
    });
  }

  it('renders a v2 custom predictor valid against the shipped InferenceService CRD schema', () => {
    const service = renderInferenceService('bc', target, v2, config, 20);
    const predictor = service.spec.predictor as any;
    expect(service.metadata.annotations['serving.kserve.io/deploymentMode']).toBe('Knative');
    expect(predictor).toMatchObject({ minReplicas: 1, maxReplicas: 10, canaryTrafficPercent: 20 });
    expect(predictor.containers[0]).toMatchObject({
      name: 'kserve-container',
      image: v2.image,
      ports: [{ containerPort: 8080, protocol: 'TCP' }],
      readinessProbe: { httpGet: { path: '/v2/health/ready', port: 8080 } },
    });
    expect(predictor.containers[0].env).toContainEqual({ name: 'PROTOCOL', value: 'v2' });
    expect(renderInferenceService('bc', target, v2, config, 100).spec.predictor.canaryTrafficPercent).toBeUndefined();
  });

  it('the predictor passes Pod Security "restricted" with a read-only root, and takes a ServiceAccount and pull secrets (schema-checked)', () => {
    const predictor = renderInferenceService('bc', target, v2, config).spec.predictor as any;
    expect(restrictedViolations(predictor)).toEqual([]);
    expect(predictor.containers[0].securityContext.readOnlyRootFilesystem).toBe(true);
    expect(predictor.containers[0].volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
    expect(predictor.automountServiceAccountToken).toBe(false);
    expect(renderInferenceService('bc', target, v2, config).metadata.labels).toMatchObject({
      'app.kubernetes.io/instance': 'bc',
      'app.kubernetes.io/component': 'model-server',
      'app.kubernetes.io/part-of': 'bc',
    });
    const privateRegistry = renderInferenceService('bc', { ...target, serviceAccountName: 'model-runner', imagePullSecrets: ['registry-creds'] }, v2, config)
      .spec.predictor;
    expect(privateRegistry).toMatchObject({ serviceAccountName: 'model-runner', imagePullSecrets: [{ name: 'registry-creds' }] });
  });

  it('the schema refuses wrong types and unknown fields, naming them', () => {
    const service = renderInferenceService('bc', target, v2, config);
    expect(() => validateInferenceService({ ...service, spec: { predictor: { ...service.spec.predictor, minReplicas: 'two' } } })).toThrow(
      '/spec/predictor/minReplicas must be integer',
    );
    expect(() => validateInferenceService({ ...service, spec: { predictor: { ...service.spec.predictor, minReplica: 2 } } })).toThrow(
      "/spec/predictor must NOT have additional properties 'minReplica'",
    );
    expect(() => renderInferenceService('bc', { ...target, minReplicas: 5, maxReplicas: 2 }, v2, config)).toThrow('maxReplicas (2) is below minReplicas (5)');
  });

  it('first deploy: apply, wait for the generation to be ready, smoke-test a pod of the new image', async () => {
    const { runner, calls } = cluster();
    const smoked: string[] = [];
    const outcome = await kserveAdapter.deploy(target, v2, null, ctx({ runner, smoke: async (url) => void smoked.push(url) }));
    expect(outcome).toMatchObject({ status: 'deployed', url: 'http://bc.ml.example.com' });
    expect(calls).toEqual([
      `kubectl ${base} get inferenceservice bc -o json`,
      `kubectl ${base} apply -f - -o json`,
      `kubectl ${base} get inferenceservice bc -o json`,
      `kubectl ${base} get pods -l serving.kserve.io/inferenceservice=bc --field-selector=status.phase=Running -o json`,
      `kubectl ${base} get inferenceservice bc -o json`,
    ]);
    expect(smoked).toHaveLength(1);
  });

  it("update: KServe's canaryTrafficPercent first, then the spec without it", async () => {
    const { runner, inputs } = cluster({ exists: true });
    expect((await kserveAdapter.deploy(target, v2, v1, ctx({ runner }))).status).toBe('deployed');
    expect(inputs.map((i) => parse(i).spec.predictor.canaryTrafficPercent)).toEqual([20, undefined]);
  });

  it('a revision that fails is rolled back by applying the previous spec, without what the server filled in', async () => {
    const { runner, inputs, calls } = cluster({
      exists: true,
      failWith: { reason: 'RevisionFailed', message: 'Revision "bc-predictor-00002" failed with message: Container failed with: ExitCode 1' },
    });
    const outcome = await kserveAdapter.deploy(target, v2, v1, ctx({ runner }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'crash-loop', restored: v1, logs: '[pod/bc-predictor-abc] error: out of memory' });
    const restored = parse(inputs.at(-1)!);
    expect(restored.spec.predictor.containers[0].image).toBe(v1.image);
    expect(restored.metadata).toEqual({ name: 'bc', namespace: 'ml', labels: { 'app.kubernetes.io/name': 'bc' }, annotations: { 'mlops.version': '1.0.0' } });
    expect(restored.status).toBeUndefined();
    expect(calls.some((c) => c.includes('get pods'))).toBe(false);
  });

  it('a failed smoke test rolls back the same way', async () => {
    const { runner, inputs } = cluster({ exists: true });
    const outcome = await kserveAdapter.deploy(target, v2, v1, ctx({ runner, smoke: async () => Promise.reject(new Error('inference answered HTTP 500')) }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'smoke-failure' });
    expect(parse(inputs.at(-1)!).spec.predictor.containers[0].image).toBe(v1.image);
  });

  it('a cluster without KServe is an environment error (exit 3) with a hint', async () => {
    const { runner } = scripted(() => ({ exitCode: 1, stderr: 'error: the server doesn\'t have a resource type "inferenceservice"' }));
    expect(await exitCodeOf(kserveAdapter.deploy(target, v2, v1, ctx({ runner })))).toBe(3);
  });

  it('--dry-run records the apply with its manifest and runs nothing; --output writes a valid InferenceService', async () => {
    const { runner, calls } = cluster();
    const c = ctx({ dryRun: true, runner });
    expect((await kserveAdapter.deploy(target, v2, v1, c)).status).toBe('planned');
    expect(calls).toEqual([]);
    const apply = c.exec.steps.find((s) => s.command.includes('apply'))!;
    expect(parse(apply.input!).kind).toBe('InferenceService');

    const dir = await mkdtemp(path.join(tmpdir(), 'mlops-kserve-out-'));
    try {
      const outcome = await kserveAdapter.deploy(target, v2, v1, ctx({ runner, outputDir: dir }));
      expect(outcome).toEqual({ status: 'written', release: v2, files: [path.join(dir, 'bc-inferenceservice.yaml')] });
      const written = parse(await readFile(path.join(dir, 'bc-inferenceservice.yaml'), 'utf8'));
      expect(() => validateInferenceService(written)).not.toThrow();
      expect(written.spec.predictor.canaryTrafficPercent).toBeUndefined();
      expect(calls).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
