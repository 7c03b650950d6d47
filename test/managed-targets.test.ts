import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { TARGET_DEFAULTS, type KServeTarget, type SageMakerTarget, type VertexTarget } from '../src/config/defaults.js';
import { applyDefaults } from '../src/config/normalize.js';
import { isMlopsError } from '../src/errors.js';
import { recordsInLine } from '../src/monitor/inference-records.js';
import { resolveCredentials } from '../src/registry/credentials.js';
import { deployVersion } from '../src/targets/deploy.js';
import { appendHistory, findRelease, previousRelease, readHistory } from '../src/targets/history.js';
import { kserveAdapter } from '../src/targets/kserve.js';
import { renderInferenceService, validateInferenceService } from '../src/targets/kserve-manifest.js';
import { sageMakerAdapter } from '../src/targets/sagemaker.js';
import { trafficSplit, vertexAdapter } from '../src/targets/vertex.js';
import { restrictedViolations } from './pod-security.js';
import { scripted } from './scripted-cli.js';
import { exitCodeOf, goodAnswer, planArgv, releases, signature, targetContext } from './target-context.js';
import { probeTool } from './tools.js';

const run = promisify(execFile);
const ecr = '123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/bc';
const [v1, v2] = releases(ecr);
const ctx = targetContext;

describe('sagemaker plan tests (aws CLI through the exec seam; no AWS account here)', () => {
  const target: SageMakerTarget = {
    ...TARGET_DEFAULTS.sagemaker,
    region: 'eu-west-1',
    executionRoleArn: 'arn:aws:iam::123456789012:role/SageMakerExecution',
    canary: [10, 100],
    alarms: ['bc-5xx'],
  };
  const tail = '--region eu-west-1 --output json';

  /** An AWS account in a script: endpoints, models and configs created by the calls it sees. */
  function account(options: { endpoint?: string; failWait?: boolean; autoRollback?: boolean; answer?: unknown } = {}) {
    const models = new Set<string>();
    const configs = new Set<string>();
    let endpointConfig = options.endpoint;
    let previousConfig = options.endpoint;
    return scripted(async (line, args) => {
      const arg = (flag: string) => args[args.indexOf(flag) + 1];
      if (line.includes('describe-endpoint --endpoint-name')) {
        return endpointConfig
          ? {
              stdout: JSON.stringify({
                EndpointName: 'bc',
                EndpointStatus: 'InService',
                EndpointConfigName: endpointConfig,
                FailureReason: options.autoRollback ? 'alarm bc-5xx fired' : undefined,
              }),
            }
          : { exitCode: 254, stderr: 'An error occurred (ValidationException) when calling the DescribeEndpoint operation: Could not find endpoint "bc".' };
      }
      if (line.includes('describe-model'))
        return models.has(arg('--model-name')) ? { stdout: '{}' } : { exitCode: 254, stderr: 'ValidationException: Could not find model' };
      if (line.includes('describe-endpoint-config'))
        return configs.has(arg('--endpoint-config-name'))
          ? { stdout: '{}' }
          : { exitCode: 254, stderr: 'ValidationException: Could not find endpoint configuration' };
      if (line.includes('create-model')) models.add(arg('--model-name'));
      if (line.includes('create-endpoint-config')) configs.add(arg('--endpoint-config-name'));
      if (line.includes('create-endpoint ') || line.includes('update-endpoint')) {
        previousConfig = endpointConfig;
        endpointConfig = arg('--endpoint-config-name');
      }
      if (line.includes('wait endpoint-in-service')) {
        if (options.autoRollback) endpointConfig = previousConfig;
        return options.failWait ? { exitCode: 255, stderr: 'Waiter EndpointInService failed: Waiter encountered a terminal failure state' } : {};
      }
      if (line.includes('invoke-endpoint')) await writeFile(args.at(-1)!, JSON.stringify(options.answer ?? goodAnswer));
      if (line.includes('filter-log-events')) return { stdout: JSON.stringify({ events: [{ message: 'error: model failed to load' }] }) };
      return {};
    });
  }

  it('first deploy: create-model, create-endpoint-config, create-endpoint, wait, then a smoke invoke-endpoint', async () => {
    const { runner, calls } = account();
    const outcome = await sageMakerAdapter.deploy(target, v2, null, ctx({ runner }));
    expect(outcome).toMatchObject({ status: 'deployed', url: 'https://runtime.sagemaker.eu-west-1.amazonaws.com/endpoints/bc/invocations' });
    const verbs = calls.map((c) => c.split(' ').slice(1, 3).join(' '));
    expect(verbs).toEqual([
      'sagemaker describe-endpoint',
      'sagemaker describe-model',
      'sagemaker create-model',
      'sagemaker describe-endpoint-config',
      'sagemaker create-endpoint-config',
      'sagemaker create-endpoint',
      'sagemaker wait',
      'sagemaker describe-endpoint',
      'sagemaker-runtime invoke-endpoint',
    ]);
    const create = calls[2];
    expect(create).toMatch(
      new RegExp(
        `^aws sagemaker create-model --model-name bc-v1-1-0-[0-9a-f]{8} --execution-role-arn arn:aws:iam::123456789012:role/SageMakerExecution --primary-container .*${tail}$`,
      ),
    );
    expect(JSON.parse(create.split('--primary-container ')[1].split(' --tags')[0])).toEqual({ Image: v2.image, Mode: 'SingleModel' });
    const variants = JSON.parse(calls[4].split('--production-variants ')[1].split(' --tags')[0]);
    expect(variants).toEqual([
      {
        VariantName: 'AllTraffic',
        ModelName: expect.stringMatching(/^bc-v1-1-0-/),
        InitialInstanceCount: 1,
        InstanceType: 'ml.m5.large',
        InitialVariantWeight: 1,
      },
    ]);
    expect(calls[8]).toMatch(
      /^aws sagemaker-runtime invoke-endpoint --endpoint-name bc --content-type application\/json --accept application\/json --body fileb:\/\/\S+request\.json --region eu-west-1 \S+answer\.json$/,
    );
  });

  it('update: blue/green with the canary step and auto-rollback on the named alarms; a redeploy reuses model and config', async () => {
    const first = account();
    await sageMakerAdapter.deploy(target, v1, null, ctx({ runner: first.runner }));
    const { runner, calls } = account({ endpoint: 'bc-v1-0-0-old' });
    const outcome = await sageMakerAdapter.deploy(target, v2, v1, ctx({ runner }));
    expect(outcome.status).toBe('deployed');
    const update = calls.find((c) => c.includes('update-endpoint'))!;
    expect(JSON.parse(update.split('--deployment-config ')[1].split(' --region')[0])).toEqual({
      BlueGreenUpdatePolicy: {
        TrafficRoutingConfiguration: { Type: 'CANARY', CanarySize: { Type: 'CAPACITY_PERCENT', Value: 10 }, WaitIntervalInSeconds: 300 },
        TerminationWaitInSeconds: 0,
      },
      AutoRollbackConfiguration: { Alarms: [{ AlarmName: 'bc-5xx' }] },
    });
    // The same version again: its model and endpoint config exist and are not created twice.
    const again = account({ endpoint: 'x' });
    await sageMakerAdapter.deploy(target, v2, v1, ctx({ runner: again.runner }));
    await sageMakerAdapter.deploy(target, v2, v1, ctx({ runner: again.runner }));
    expect(again.calls.filter((c) => c.includes('create-model'))).toHaveLength(1);
    expect(again.calls.filter((c) => c.includes('create-endpoint-config'))).toHaveLength(1);
  });

  it('linear steps and serverless map to SageMaker shapes', async () => {
    const { runner, calls } = account({ endpoint: 'old' });
    await sageMakerAdapter.deploy({ ...target, mode: 'serverless', canary: [25, 50, 75, 100], alarms: [] }, v2, v1, ctx({ runner }));
    const variants = JSON.parse(
      calls
        .find((c) => c.includes('create-endpoint-config'))!
        .split('--production-variants ')[1]
        .split(' --tags')[0],
    );
    expect(variants[0]).toEqual({ VariantName: 'AllTraffic', ModelName: expect.any(String), ServerlessConfig: { MemorySizeInMB: 2048, MaxConcurrency: 10 } });
    const config = JSON.parse(
      calls
        .find((c) => c.includes('update-endpoint'))!
        .split('--deployment-config ')[1]
        .split(' --region')[0],
    );
    expect(config).toEqual({
      BlueGreenUpdatePolicy: {
        TrafficRoutingConfiguration: { Type: 'LINEAR', LinearStepSize: { Type: 'CAPACITY_PERCENT', Value: 25 }, WaitIntervalInSeconds: 300 },
        TerminationWaitInSeconds: 0,
      },
    });
  });

  it('a failed smoke test puts the previous endpoint config back and waits for it', async () => {
    const { runner, calls } = account({ endpoint: 'bc-v1-0-0-old', answer: { outputs: [{ name: 'probabilities', shape: [1, 2], data: [null, 1] }] } });
    const outcome = await sageMakerAdapter.deploy(target, v2, v1, ctx({ runner }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'smoke-failure', restored: v1, logs: 'error: model failed to load' });
    expect((outcome as { message: string }).message).toContain("output 'probabilities' holds non-finite values");
    expect(calls.slice(-2)).toEqual([
      `aws sagemaker update-endpoint --endpoint-name bc --endpoint-config-name bc-v1-0-0-old ${tail}`,
      `aws sagemaker wait endpoint-in-service --endpoint-name bc ${tail}`,
    ]);
  });

  it('a failed wait on a first deploy is a failure with nothing to restore', async () => {
    const { runner, calls } = account({ failWait: true });
    const outcome = await sageMakerAdapter.deploy(target, v2, null, ctx({ runner }));
    expect(outcome).toMatchObject({ status: 'failed', reason: 'health-timeout', restored: null });
    expect(calls.some((c) => c.includes('invoke-endpoint'))).toBe(false);
  });

  it("SageMaker's own rollback on an alarm is reported as rolled back, with no second update", async () => {
    const { runner, calls } = account({ endpoint: 'bc-v1-0-0-old', autoRollback: true });
    const outcome = await sageMakerAdapter.deploy(target, v2, v1, ctx({ runner }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'rollout-failed', restored: v1 });
    expect((outcome as { message: string }).message).toContain('rolled endpoint bc back to bc-v1-0-0-old (an alarm fired: bc-5xx)');
    expect(calls.filter((c) => c.includes('update-endpoint'))).toHaveLength(1);
  });

  it('an endpoint that is Failed or still Updating is an environment error (exit 3) naming what to do', async () => {
    for (const [status, expected] of [
      ['Failed', 'delete it (aws sagemaker delete-endpoint'],
      ['Updating', 'wait for it'],
    ]) {
      const { runner, calls } = scripted(() => ({
        stdout: JSON.stringify({ EndpointStatus: status, EndpointConfigName: 'old', FailureReason: 'image pull failed' }),
      }));
      const error = await sageMakerAdapter.deploy(target, v2, v1, ctx({ runner })).catch((e) => e);
      expect(isMlopsError(error) && error.exitCode).toBe(3);
      expect(error.hint).toContain(expected);
      expect(calls).toHaveLength(1);
    }
  });

  it('refuses an image outside ECR with exit 2, before running anything', async () => {
    const { runner, calls } = account();
    expect(await exitCodeOf(sageMakerAdapter.deploy(target, { ...v2, image: '127.0.0.1:5000/bc@sha256:x' }, null, ctx({ runner })))).toBe(2);
    expect(calls).toEqual([]);
  });

  it('--dry-run lists every aws command, the smoke request included, and runs none', async () => {
    const { runner, calls } = account();
    const c = ctx({ dryRun: true, runner });
    expect((await sageMakerAdapter.deploy(target, v2, v1, c)).status).toBe('planned');
    expect(calls).toEqual([]);
    expect(c.exec.steps.map((s) => s.command.split(' ').slice(1, 3).join(' '))).toEqual([
      'sagemaker describe-endpoint',
      'sagemaker describe-model',
      'sagemaker create-model',
      'sagemaker describe-endpoint-config',
      'sagemaker create-endpoint-config',
      'sagemaker create-endpoint',
      'sagemaker wait',
      'sagemaker-runtime invoke-endpoint',
    ]);
  });

  it("--output writes the three calls' inputs as JSON and runs nothing", async () => {
    const { runner, calls } = account();
    const dir = await mkdtemp(path.join(tmpdir(), 'mlops-sagemaker-out-'));
    try {
      const outcome = await sageMakerAdapter.deploy(target, v2, v1, ctx({ runner, outputDir: dir }));
      expect(outcome).toMatchObject({ status: 'written', files: ['model', 'endpoint-config', 'endpoint'].map((k) => path.join(dir, `bc-${k}.json`)) });
      expect(calls).toEqual([]);
      const model = JSON.parse(await readFile(path.join(dir, 'bc-model.json'), 'utf8'));
      const endpoint = JSON.parse(await readFile(path.join(dir, 'bc-endpoint.json'), 'utf8'));
      const config = JSON.parse(await readFile(path.join(dir, 'bc-endpoint-config.json'), 'utf8'));
      expect(model.PrimaryContainer).toEqual({ Image: v2.image, Mode: 'SingleModel' });
      expect(config.ProductionVariants[0].ModelName).toBe(model.ModelName);
      expect(endpoint).toMatchObject({
        EndpointName: 'bc',
        EndpointConfigName: config.EndpointConfigName,
        DeploymentConfig: { AutoRollbackConfiguration: { Alarms: [{ AlarmName: 'bc-5xx' }] } },
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('status reads the serving version from the model the endpoint config names', async () => {
    const { runner } = scripted((line) => {
      if (line.includes('describe-endpoint --'))
        return {
          stdout: JSON.stringify({
            EndpointStatus: 'InService',
            EndpointConfigName: 'cfg',
            CreationTime: '2026-11-01T00:00:00Z',
            ProductionVariants: [{ DeployedImages: [{ SpecifiedImage: v2.image }], CurrentInstanceCount: 2 }],
          }),
        };
      if (line.includes('describe-endpoint-config')) return { stdout: JSON.stringify({ ProductionVariants: [{ ModelName: 'bc-v1-1-0-x' }] }) };
      if (line.includes('describe-model')) return { stdout: JSON.stringify({ ModelArn: 'arn:aws:sagemaker:eu-west-1:123456789012:model/bc-v1-1-0-x' }) };
      if (line.includes('list-tags')) return { stdout: JSON.stringify({ Tags: [{ Key: 'mlops-version', Value: '1.1.0' }] }) };
      return {};
    });
    expect(await sageMakerAdapter.status(target, ctx({ runner }))).toMatchObject({
      deployed: true,
      version: '1.1.0',
      image: v2.image,
      health: 'ready',
      detail: { endpointConfig: 'cfg', instances: 2 },
    });
  });
});

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

describe('inference logs from the managed targets, for mlops monitor --labels', () => {
  const record = (id: string) =>
    JSON.stringify({
      type: 'mlops.inference',
      id,
      row: 0,
      rows: 1,
      time: '2026-11-22T10:00:00Z',
      model: { name: 'bc', version: '1', sha256: 'f'.repeat(64) },
      outputs: [],
    });

  it("sagemaker: the records CloudWatch Logs kept from the endpoint's stdout", async () => {
    const { runner, calls } = scripted(() => ({ stdout: JSON.stringify({ events: [{ message: record('a') }, { message: record('b') }] }) }));
    const target: SageMakerTarget = { ...TARGET_DEFAULTS.sagemaker, region: 'eu-west-1', executionRoleArn: 'arn:aws:iam::123456789012:role/x' };
    const logs = await sageMakerAdapter.inferenceLogs(target, ctx({ runner }), new Date('2026-11-22T00:00:00Z'));
    expect(calls).toEqual([
      `aws logs filter-log-events --log-group-name /aws/sagemaker/Endpoints/bc --filter-pattern { $.type = "mlops.inference" } --start-time ${Date.parse('2026-11-22T00:00:00Z')} --region eu-west-1 --output json`,
    ]);
    expect(
      logs[0].text
        .split('\n')
        .flatMap(recordsInLine)
        .map((r) => r.id),
    ).toEqual(['a', 'b']);
  });

  it("vertex: the records Cloud Logging parsed from the endpoint's stdout", async () => {
    const { runner, calls } = scripted(() => ({ stdout: JSON.stringify([{ jsonPayload: JSON.parse(record('x')) }]) }));
    const logs = await vertexAdapter.inferenceLogs({ ...TARGET_DEFAULTS.vertex, project: 'acme', region: 'europe-west4' }, ctx({ runner }), undefined);
    expect(calls[0]).toContain('resource.type="aiplatform.googleapis.com/Endpoint" AND resource.labels.endpoint_id="bc"');
    expect(
      logs[0].text
        .split('\n')
        .flatMap(recordsInLine)
        .map((r) => r.id),
    ).toEqual(['x']);
  });
});

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

describe('ECR credentials through the aws CLI', () => {
  it("asks `aws ecr get-login-password` for the registry's region and logs in as AWS", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'mlops-fake-aws-'));
    try {
      // A stand-in for the aws CLI: no AWS account is reachable here.
      await writeFile(path.join(dir, 'aws'), `#!/bin/sh\necho "$@" > "${dir}/args"\necho token-123\n`, { mode: 0o755 });
      const credentials = await resolveCredentials('123456789012.dkr.ecr.eu-central-1.amazonaws.com', { PATH: `${dir}:${process.env.PATH}`, HOME: dir });
      expect(credentials).toEqual({ username: 'AWS', password: 'token-123', source: 'aws ecr get-login-password' });
      expect((await readFile(path.join(dir, 'args'), 'utf8')).trim()).toBe('ecr get-login-password --region eu-central-1');
      await writeFile(path.join(dir, 'aws'), '#!/bin/sh\necho "Unable to locate credentials" >&2\nexit 253\n', { mode: 0o755 });
      await expect(resolveCredentials('123456789012.dkr.ecr.eu-central-1.amazonaws.com', { PATH: `${dir}:${process.env.PATH}`, HOME: dir })).rejects.toThrow(
        'aws ecr get-login-password --region eu-central-1 failed (exit 253)',
      );
      expect(await resolveCredentials('registry.example.com', { PATH: `${dir}:${process.env.PATH}`, HOME: dir })).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('vertex plan tests (gcloud through the exec seam; no cloud account here)', () => {
  const target: VertexTarget = { ...TARGET_DEFAULTS.vertex, project: 'acme', region: 'europe-west4', canary: [10, 50, 100] };
  const base = '--project acme --region europe-west4';

  function project(options: { serving?: Record<string, number>; deployFails?: boolean; predict?: (deployedId: string) => unknown } = {}) {
    let newId = '';
    return scripted((line, args) => {
      if (line.includes('endpoints describe'))
        return options.serving
          ? {
              stdout: JSON.stringify({
                deployedModels: Object.keys(options.serving).map((id) => ({ id, model: `projects/acme/locations/europe-west4/models/old-${id}` })),
                trafficSplit: options.serving,
              }),
            }
          : { exitCode: 1, stderr: 'NOT_FOUND' };
      if (line.includes('models describe')) return { exitCode: 1, stderr: 'NOT_FOUND' };
      if (line.includes('deploy-model') && !line.includes('undeploy')) {
        newId = args.find((a) => a.startsWith('--deployed-model-id='))!.split('=')[1];
        return options.deployFails ? { exitCode: 1, stderr: 'ERROR: Model server never became ready.' } : {};
      }
      if (line.includes('endpoints predict'))
        return { stdout: JSON.stringify(options.predict?.(newId) ?? { predictions: [[0.25, 0.75]], deployedModelId: newId }) };
      if (line.includes('logging read')) return { stdout: 'model failed' };
      return {};
    });
  }

  it('first deploy: endpoint, model upload with the container routes, deploy with all traffic, smoke predict', async () => {
    const { runner, calls } = project();
    const outcome = await vertexAdapter.deploy(target, v2, null, ctx({ runner }));
    expect(outcome).toMatchObject({
      status: 'deployed',
      url: 'https://europe-west4-aiplatform.googleapis.com/v1/projects/acme/locations/europe-west4/endpoints/bc:predict',
    });
    const model = calls[3].match(/--model-id=(\S+)/)![1];
    expect(model).toMatch(/^bc-v1-1-0-[0-9a-f]{8}$/);
    const deployed = calls[4].match(/--deployed-model-id=(\d+)/)![1];
    expect(deployed).toMatch(/^\d{10}$/);
    expect(calls).toEqual([
      `gcloud ai endpoints describe bc ${base} --format=json`,
      `gcloud ai endpoints create ${base} --display-name=bc --endpoint-id=bc --labels=managed-by=mlops`,
      `gcloud ai models describe ${model} ${base} --format=json`,
      `gcloud ai models upload ${base} --model-id=${model} --display-name=${model} --container-image-uri=${v2.image} --container-ports=8080 --container-health-route=/v2/health/ready --container-predict-route=/v1/models/bc:predict --labels=mlops-version=1-1-0,managed-by=mlops`,
      `gcloud ai endpoints deploy-model bc ${base} --model=${model} --deployed-model-id=${deployed} --display-name=${model} --machine-type=n1-standard-2 --min-replica-count=1 --max-replica-count=3 --traffic-split=0=100`,
      expect.stringMatching(new RegExp(`^gcloud ai endpoints predict bc ${base} --json-request=\\S+request\\.json --format=json$`)),
    ]);
  });

  it('update: the new model takes 10%, then 50%, then all; the old one is undeployed', async () => {
    const { runner, calls } = project({ serving: { '111': 100 } });
    expect((await vertexAdapter.deploy(target, v2, v1, ctx({ runner }))).status).toBe('deployed');
    const deployed = calls.find((c) => c.includes('deploy-model'))!.match(/--deployed-model-id=(\d+)/)![1];
    expect(calls.find((c) => c.includes('deploy-model'))).toContain('--traffic-split=0=10,111=90');
    expect(calls.filter((c) => c.includes('endpoints update'))).toEqual([
      `gcloud ai endpoints update bc ${base} --traffic-split=${deployed}=50,111=50`,
      `gcloud ai endpoints update bc ${base} --traffic-split=${deployed}=100`,
    ]);
    expect(calls.at(-1)).toBe(`gcloud ai endpoints undeploy-model bc ${base} --deployed-model-id=111`);
  });

  it('a failed smoke test moves traffic back and undeploys the new model', async () => {
    const { runner, calls } = project({ serving: { '111': 100 }, predict: () => ({ predictions: [] }) });
    const outcome = await vertexAdapter.deploy(target, v2, v1, ctx({ runner }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'smoke-failure', restored: v1, logs: 'model failed' });
    expect((outcome as { message: string }).message).toContain('the answer has 0 predictions for 1 instances');
    const deployed = calls.find((c) => c.includes('deploy-model'))!.match(/--deployed-model-id=(\d+)/)![1];
    expect(calls.slice(-2)).toEqual([
      `gcloud ai endpoints update bc ${base} --traffic-split=111=100`,
      `gcloud ai endpoints undeploy-model bc ${base} --deployed-model-id=${deployed}`,
    ]);
  });

  it('a deploy-model that never becomes ready leaves the old traffic as it was', async () => {
    const { runner, calls } = project({ serving: { '111': 100 }, deployFails: true });
    const outcome = await vertexAdapter.deploy(target, v2, v1, ctx({ runner }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'health-timeout', restored: v1 });
    expect(calls.some((c) => c.includes('endpoints predict') || c.includes('undeploy-model'))).toBe(false);
    expect(calls.at(-1)).toBe(`gcloud ai endpoints update bc ${base} --traffic-split=111=100`);
  });

  it('a smoke test the new model never answered is a warning, not a failure', async () => {
    const logs: string[] = [];
    const { runner, calls } = project({ serving: { '111': 100 }, predict: () => ({ predictions: [[0.5, 0.5]], deployedModelId: '111' }) });
    expect((await vertexAdapter.deploy({ ...target, canary: [10, 100] }, v2, v1, ctx({ runner, logs }))).status).toBe('deployed');
    expect(calls.filter((c) => c.includes('endpoints predict'))).toHaveLength(10);
    expect(logs.some((l) => l.includes('none of 10 smoke predictions was served by the new model'))).toBe(true);
  });

  it('recover: a split left by a deploy that died goes back to the serving release, whose deployed model id it derives, and the rest is undeployed', async () => {
    // The deployed model ids a deploy of v1 would have used.
    const first = project();
    await vertexAdapter.deploy(target, v1, null, ctx({ runner: first.runner }));
    const servingId = first.calls.find((c) => c.includes('deploy-model'))!.match(/--deployed-model-id=(\d+)/)![1];
    const state = {
      deployedModels: [
        { id: servingId, displayName: 'bc-v1-0-0-x' },
        { id: '4242', displayName: 'bc-v1-1-0-y', model: 'projects/acme/locations/europe-west4/models/bc-v1-1-0-y' },
      ],
      trafficSplit: { [servingId]: 90, '4242': 10 },
    };
    const { runner, calls } = scripted(() => ({ stdout: JSON.stringify(state) }));
    const recovery = await vertexAdapter.recover(target, ctx({ runner }), v1);
    expect(recovery).toMatchObject({ candidate: { version: 'bc-v1-1-0-y' }, outcome: 'restored', serving: v1 });
    expect(calls.slice(1)).toEqual([
      `gcloud ai endpoints update bc ${base} --traffic-split=${servingId}=100`,
      `gcloud ai endpoints undeploy-model bc ${base} --deployed-model-id=4242`,
    ]);
    const alone = scripted(() => ({ stdout: JSON.stringify({ deployedModels: [{ id: servingId }], trafficSplit: { [servingId]: 100 } }) }));
    expect(await vertexAdapter.recover(target, ctx({ runner: alone.runner }), v1)).toBeNull();
  });

  it('splits what traffic is left over the old models in proportion', () => {
    expect(trafficSplit('0', 10, { a: 50, b: 50 })).toBe('0=10,a=45,b=45');
    expect(trafficSplit('0', 25, { a: 67, b: 33 })).toBe('0=25,a=51,b=24');
    expect(trafficSplit('n', 100, { a: 100 })).toBe('n=100');
  });
});

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

/**
 * The real CLIs parse every planned command: botocore checks each JSON argument against SageMaker's
 * service model and gcloud its flags, then both stop where they would need an account or the network.
 */
const aws = probeTool('aws', 'apt-get install awscli');
const gcloudInstalled = await run('sh', ['-c', 'command -v gcloud']).then(
  () => true,
  () => false,
);

describe.skipIf(!aws.ok)(`the aws CLI accepts every planned command${aws.ok ? '' : ` (skipped: ${aws.reason})`}`, () => {
  it('parses and validates each one against the SageMaker service model', async () => {
    const target: SageMakerTarget = {
      ...TARGET_DEFAULTS.sagemaker,
      region: 'eu-west-1',
      executionRoleArn: 'arn:aws:iam::123456789012:role/SageMakerExecution',
      canary: [10, 100],
      alarms: ['bc-5xx'],
    };
    const steps = [
      ...(await planArgv((c) => sageMakerAdapter.deploy(target, v2, v1, c))),
      ...(await planArgv((c) => sageMakerAdapter.deploy({ ...target, mode: 'serverless', canary: [20, 40, 60, 80, 100] }, v2, v1, c))),
      ...(await planArgv((c) => sageMakerAdapter.inferenceLogs(target, c, new Date('2026-11-01T00:00:00Z')))),
    ];
    const dir = await mkdtemp(path.join(tmpdir(), 'mlops-aws-check-'));
    try {
      const body = path.join(dir, 'request.json');
      await writeFile(body, '{}');
      // --output's files, as `aws sagemaker <call> --cli-input-json` reads them.
      await sageMakerAdapter.deploy(target, v2, v1, ctx({ outputDir: dir }));
      for (const [call, kind] of [
        ['create-model', 'model'],
        ['create-endpoint-config', 'endpoint-config'],
        ['create-endpoint', 'endpoint'],
        ['update-endpoint', 'endpoint'],
      ]) {
        steps.push(['sagemaker', call, '--cli-input-json', `file://${path.join(dir, `bc-${kind}.json`)}`, '--region', 'eu-west-1']);
      }
      const env = {
        ...process.env,
        AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
        AWS_SECRET_ACCESS_KEY: 'example',
        AWS_MAX_ATTEMPTS: '1',
        AWS_RETRY_MODE: 'standard',
        AWS_CONFIG_FILE: '/dev/null',
        AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
      };
      for (const args of steps) {
        const fixed = args.map((a) => (a.startsWith('fileb://') ? `fileb://${body}` : a.endsWith('answer.json') ? path.join(dir, 'answer.json') : a));
        // Nothing listens on port 9: a call that passed validation fails to connect.
        const result = await run(aws.path, [...fixed, '--endpoint-url', 'http://127.0.0.1:9', '--cli-connect-timeout', '1'], { env, timeout: 60_000 }).then(
          () => ({ stderr: '' }),
          (e) => ({ stderr: String(e.stderr) }),
        );
        expect(result.stderr, `aws ${args.join(' ')}`).toMatch(/Could not connect to the endpoint URL/);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe.skipIf(!gcloudInstalled)(
  `gcloud accepts every planned command${gcloudInstalled ? '' : ' (skipped: gcloud is not installed; Debian does not package it)'}`,
  () => {
    it('parses each one and stops only for want of an account', async () => {
      const target: VertexTarget = {
        ...TARGET_DEFAULTS.vertex,
        project: 'acme',
        region: 'europe-west4',
        canary: [10, 50, 100],
        serviceAccount: 'ml@acme.iam.gserviceaccount.com',
      };
      const steps = [
        ...(await planArgv((c) => vertexAdapter.deploy(target, v2, v1, c))),
        ...(await planArgv((c) => vertexAdapter.inferenceLogs(target, c, undefined))),
      ];
      const config = await mkdtemp(path.join(tmpdir(), 'mlops-gcloud-check-'));
      try {
        const env = { ...process.env, CLOUDSDK_CONFIG: config, CLOUDSDK_CORE_DISABLE_PROMPTS: '1', CLOUDSDK_CORE_CHECK_GCE_METADATA: 'false' };
        for (const args of steps) {
          const result = await run('gcloud', args, { env, timeout: 60_000 }).then(
            () => ({ stderr: '' }),
            (e) => ({ stderr: String(e.stderr) }),
          );
          expect(result.stderr, `gcloud ${args.join(' ')}`).toMatch(/You do not currently have an active account selected/);
        }
      } finally {
        await rm(config, { recursive: true, force: true });
      }
    }, 120_000);
  },
);
