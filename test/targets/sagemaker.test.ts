import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { TARGET_DEFAULTS, type SageMakerTarget } from '../../src/config/defaults.js';
import { isMlopsError } from '../../src/errors.js';
import { recordsInLine } from '../../src/monitor/inference-records.js';
import { sageMakerAdapter } from '../../src/targets/sagemaker.js';
import { scripted } from '../scripted-cli.js';
import { exitCodeOf, goodAnswer, planArgv, releases, targetContext } from './target-context.js';
import { probeTool } from '../tools.js';

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
});

/**
 * The real aws CLI parses every planned command: botocore checks each JSON argument against SageMaker's
 * service model, then stops where it would need an account or the network.
 */
const aws = probeTool('aws', 'apt-get install awscli');

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
