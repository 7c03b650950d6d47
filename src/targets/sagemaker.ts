import { notFoundOrThrow, type CommandResult } from './exec.js';
import { inferenceRecords, recentLogLines } from './cloudwatch.js';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { SageMakerTarget } from '../config/defaults.js';
import { environmentError, inputError } from '../errors.js';
import { defaultModelName } from '../model/inspect.js';
import { encodeRestRequest } from '../protocol/rest.js';
import { revisionTag } from './cloudrun.js';
import { checkOutputs, smokeThroughCli, type SmokeFailure, rawSmokeBody } from './smoke.js';
import { fileLock } from './lock.js';
import { rollout, type Failure } from './rollout.js';
import { servingOnly, type DeployContext, type DeployOutcome, type ModelSignature, type Release, type TargetAdapter, type TargetStatus } from './types.js';

/** SageMaker pulls only from ECR (private registries need a VPC setup mlops does not make). */
export const ECR_HOST = /^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/;
/** Blue/green needs the same variant name in the old and new endpoint configs. */
const VARIANT = 'AllTraffic';

interface EndpointDescription {
  EndpointName?: string;
  EndpointConfigName?: string;
  EndpointStatus?: string;
  FailureReason?: string;
  CreationTime?: string;
  LastModifiedTime?: string;
  ProductionVariants?: { VariantName?: string; DeployedImages?: { SpecifiedImage?: string; ResolvedImage?: string }[]; CurrentInstanceCount?: number }[];
}

export function endpointName(target: SageMakerTarget, ctx: Pick<DeployContext, 'config' | 'projectDir'>): string {
  const name = target.endpoint || ctx.config.model.name || defaultModelName(path.resolve(ctx.projectDir, ctx.config.model.path));
  return name
    .replace(/[^a-zA-Z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
}

/** A SageMaker resource name (at most 63 of [a-zA-Z0-9-]) ending in a short hash, so it can be cut without colliding. */
function resourceName(prefix: string, hashed: string): string {
  const hash = createHash('sha256').update(hashed).digest('hex').slice(0, 8);
  return `${prefix.slice(0, 54).replace(/-+$/, '')}-${hash}`;
}

/** The model a deploy of this release makes (or made): a batch transform job reuses it by this name. */
export function modelName(target: SageMakerTarget, release: Release, ctx: Pick<DeployContext, 'config' | 'projectDir'>): string {
  return resourceName(`${endpointName(target, ctx)}-${revisionTag(release.version)}`, `${release.image}\n${target.executionRoleArn}`);
}

/** The endpoint config's variants: instances for real-time, memory and concurrency for serverless. */
function productionVariants(target: SageMakerTarget, model: string): unknown[] {
  const { serverless } = target;
  return [
    target.mode === 'serverless'
      ? {
          VariantName: VARIANT,
          ModelName: model,
          ServerlessConfig: {
            MemorySizeInMB: serverless.memorySizeMb,
            MaxConcurrency: serverless.maxConcurrency,
            ...(serverless.provisionedConcurrency > 0 ? { ProvisionedConcurrency: serverless.provisionedConcurrency } : {}),
          },
        }
      : { VariantName: VARIANT, ModelName: model, InitialInstanceCount: target.instanceCount, InstanceType: target.instanceType, InitialVariantWeight: 1 },
  ];
}

/** The canary steps as SageMaker's blue/green traffic routing, with auto-rollback on the user's alarms. */
export function deploymentConfig(target: SageMakerTarget): unknown {
  const steps = target.canary;
  const wait = target.waitIntervalSeconds;
  const routing =
    steps.length === 1
      ? { Type: 'ALL_AT_ONCE', WaitIntervalInSeconds: wait }
      : steps.length === 2
        ? { Type: 'CANARY', CanarySize: { Type: 'CAPACITY_PERCENT', Value: steps[0] }, WaitIntervalInSeconds: wait }
        : { Type: 'LINEAR', LinearStepSize: { Type: 'CAPACITY_PERCENT', Value: steps[0] }, WaitIntervalInSeconds: wait };
  return {
    BlueGreenUpdatePolicy: { TrafficRoutingConfiguration: routing, TerminationWaitInSeconds: 0 },
    ...(target.alarms.length ? { AutoRollbackConfiguration: { Alarms: target.alarms.map((AlarmName) => ({ AlarmName })) } } : {}),
  };
}

const tagList = (release: Release) => [
  { Key: 'mlops-version', Value: release.version },
  { Key: 'managed-by', Value: 'mlops' },
];
const tags = (release: Release) => JSON.stringify(tagList(release));
const primaryContainer = (release: Release) => ({ Image: release.image, Mode: 'SingleModel' });

/** SageMaker through the aws CLI, for one target's endpoint. */
function sageMakerCli(ctx: DeployContext, target: SageMakerTarget) {
  const endpoint = endpointName(target, ctx);
  const aws = (args: string[], options?: { allowFailure?: boolean; timeoutMs?: number }) =>
    ctx.exec.run('aws', ['sagemaker', ...args, '--region', target.region, '--output', 'json'], options);
  /** The endpoint, or null when there is none. */
  const describe = async () => {
    const result = await aws(['describe-endpoint', '--endpoint-name', endpoint], { allowFailure: true });
    if (result.exitCode !== 0 && !/Could not find endpoint|ValidationException/.test(result.stderr)) {
      throw environmentError(
        `aws sagemaker describe-endpoint ${endpoint} failed`,
        'check the AWS credentials and region (aws sts get-caller-identity)',
        result.stderr.trim(),
      );
    }
    return result.exitCode === 0 && result.stdout ? (JSON.parse(result.stdout) as EndpointDescription) : null;
  };
  return { ctx, endpoint, aws, describe };
}

type SageMakerCli = ReturnType<typeof sageMakerCli>;

/** SageMaker updates an endpoint only when it is InService: a Failed one has to go, a changing one finish. */
function checkUpdatable(before: EndpointDescription | null, endpoint: string, target: SageMakerTarget): void {
  if (before?.EndpointStatus === 'Failed') {
    throw environmentError(
      `SageMaker endpoint ${endpoint} is Failed (${before.FailureReason ?? 'no reason given'}) and cannot be updated`,
      `delete it (aws sagemaker delete-endpoint --endpoint-name ${endpoint} --region ${target.region}), then deploy again`,
    );
  }
  if (before && before.EndpointStatus !== 'InService') {
    throw environmentError(
      `SageMaker endpoint ${endpoint} is ${before.EndpointStatus}: another change is under way`,
      `wait for it (aws sagemaker wait endpoint-in-service --endpoint-name ${endpoint}), then deploy again`,
    );
  }
}

/** The release's model and endpoint config, made once: their names say what they hold, so a redeploy finds them. */
async function createModelAndConfig(
  cli: SageMakerCli,
  target: SageMakerTarget,
  release: Release,
  model: string,
  config: string,
  variants: string,
): Promise<void> {
  const { aws } = cli;
  const known = await aws(['describe-model', '--model-name', model], { allowFailure: true });
  // A dry run's describe answers nothing, so its plan shows what a first deploy makes.
  if (known.exitCode !== 0 || !known.stdout) {
    const container = JSON.stringify(primaryContainer(release));
    await aws([
      'create-model',
      '--model-name',
      model,
      '--execution-role-arn',
      target.executionRoleArn,
      '--primary-container',
      container,
      '--tags',
      tags(release),
    ]);
  }
  const knownConfig = await aws(['describe-endpoint-config', '--endpoint-config-name', config], { allowFailure: true });
  if (knownConfig.exitCode !== 0 || !knownConfig.stdout) {
    await aws(['create-endpoint-config', '--endpoint-config-name', config, '--production-variants', variants, '--tags', tags(release)]);
  }
}

/**
 * After the wait: InService on the new config, or why not. SageMaker's blue/green puts the old fleet
 * back by itself when an alarm fires while traffic moves: that is a rollout-failed it already undid.
 */
async function inService(cli: SageMakerCli, target: SageMakerTarget, config: string, waited: CommandResult): Promise<Failure | undefined> {
  // The endpoint read after the wait is one a dry run's plan leaves out, as it has nothing to read.
  if (cli.ctx.exec.dryRun) return undefined;
  const after = await cli.describe();
  const endpoint = cli.endpoint;
  if (waited.exitCode !== 0 || after?.EndpointStatus !== 'InService') {
    const said = after?.FailureReason ?? waited.stderr.trim().split('\n').at(-1) ?? '';
    return { reason: 'health-timeout', message: `endpoint ${endpoint} did not come into service (${after?.EndpointStatus ?? 'gone'}): ${said}` };
  }
  if (after.EndpointConfigName === config) return undefined;
  const alarm = target.alarms.length ? ` (an alarm fired: ${target.alarms.join(', ')})` : '';
  return {
    reason: 'rollout-failed',
    message: `SageMaker rolled endpoint ${endpoint} back to ${after.EndpointConfigName}${alarm}: ${after.FailureReason ?? ''}`.trim(),
  };
}

/**
 * --output: the three calls' inputs as files for `aws sagemaker <call> --cli-input-json file://...`
 * (or a pipeline of your own). The endpoint file fits create-endpoint and update-endpoint alike.
 */
async function writeInputs(
  dir: string,
  target: SageMakerTarget,
  release: Release,
  names: { endpoint: string; model: string; config: string },
): Promise<DeployOutcome> {
  await mkdir(dir, { recursive: true });
  const documents: [string, unknown][] = [
    ['model', { ModelName: names.model, ExecutionRoleArn: target.executionRoleArn, PrimaryContainer: primaryContainer(release), Tags: tagList(release) }],
    ['endpoint-config', { EndpointConfigName: names.config, ProductionVariants: productionVariants(target, names.model), Tags: tagList(release) }],
    ['endpoint', { EndpointName: names.endpoint, EndpointConfigName: names.config, DeploymentConfig: deploymentConfig(target) }],
  ];
  const files: string[] = [];
  for (const [kind, document] of documents) {
    const file = path.join(dir, `${names.endpoint}-${kind}.json`);
    await writeFile(file, `${JSON.stringify(document, null, 2)}\n`);
    files.push(file);
  }
  return { status: 'written', release, files };
}

/**
 * The aws CLI through the exec seam. A model and an endpoint config per release (named by what they
 * hold, so a redeploy reuses them), then create-endpoint, or update-endpoint with a blue/green
 * deployment config; wait for InService, smoke-test with invoke-endpoint, and on failure put the
 * previous endpoint config back.
 */
export const sageMakerAdapter: TargetAdapter<SageMakerTarget> = {
  type: 'sagemaker',
  needsRegistry: true,
  output: 'the create-model, create-endpoint-config and create/update-endpoint inputs as JSON for `aws sagemaker ... --cli-input-json`',

  // The platform has no lock to offer mlops: a lock file in the project (best effort, docs/deploy.md).
  lock: (_target, ctx, holder) => fileLock(ctx.projectDir, ctx.targetName, holder),
  // An interrupted update carries on or rolls back on the platform's side; the next deploy starts from what serves.
  recover: async () => null,

  async deploy(target, release, previous, ctx): Promise<DeployOutcome> {
    const host = release.image.split('/')[0];
    if (!ECR_HOST.test(host)) {
      throw inputError(
        `SageMaker pulls images from Amazon ECR only, and ${host} is not an ECR registry`,
        'set image.repository to <account>.dkr.ecr.<region>.amazonaws.com/<name>, then `mlops push`',
      );
    }
    const cli = sageMakerCli(ctx, target);
    const { aws, endpoint } = cli;
    const model = modelName(target, release, ctx);
    const variants = JSON.stringify(productionVariants(target, model));
    const config = resourceName(model, variants);
    if (ctx.outputDir) return writeInputs(ctx.outputDir, target, release, { endpoint, model, config });
    const before = await cli.describe();
    checkUpdatable(before, endpoint, target);
    const previousConfig = before?.EndpointConfigName;
    let rolledBackByPlatform = false;
    const logs = () => recentLogLines(ctx, target, `/aws/sagemaker/Endpoints/${endpoint}`);
    const waitInService = () =>
      aws(['wait', 'endpoint-in-service', '--endpoint-name', endpoint], { allowFailure: true, timeoutMs: target.readyTimeoutSeconds * 1000 });
    return rollout(ctx, release, previous, target, {
      // SageMaker's blue/green moves the traffic in the canary steps and watches the alarms itself (deploymentConfig).
      serving: false,
      describe: () => ({ candidate: config }),
      async create() {
        await createModelAndConfig(cli, target, release, model, config, variants);
        if (before) {
          await aws([
            'update-endpoint',
            '--endpoint-name',
            endpoint,
            '--endpoint-config-name',
            config,
            '--deployment-config',
            JSON.stringify(deploymentConfig(target)),
          ]);
        } else await aws(['create-endpoint', '--endpoint-name', endpoint, '--endpoint-config-name', config, '--tags', tags(release)]);
        return undefined;
      },
      async ready() {
        const failure = await inService(cli, target, config, await waitInService());
        rolledBackByPlatform = failure?.reason === 'rollout-failed';
        return failure;
      },
      smoke: () => invokeSmoke(ctx, target, endpoint, release),
      promote: async () => `https://runtime.sagemaker.${target.region}.amazonaws.com/endpoints/${endpoint}/invocations`,
      async fallBack(failure) {
        const lines = await logs();
        if (rolledBackByPlatform) return { restored: previous, logs: lines };
        if (!previousConfig || !previous) return { restored: null, logs: lines };
        await aws(['update-endpoint', '--endpoint-name', endpoint, '--endpoint-config-name', previousConfig]);
        if ((await waitInService()).exitCode !== 0)
          return { restored: null, logs: lines, message: `${failure.message}; and putting ${previousConfig} back did not finish either` };
        return { restored: previous, logs: lines };
      },
    });
  },

  async replicas(_target, ctx) {
    throw inputError(
      `target '${ctx.targetName}' (SageMaker): instances cannot be reached one by one, so their live profiles cannot be summed`,
      'scrape them with a Prometheus that reaches the endpoint, or use --url with a local run of the same image',
    );
  },

  async inferenceLogs(target, ctx, since) {
    const endpoint = endpointName(target, ctx);
    // SageMaker sends a container's stdout to CloudWatch, one stream per instance.
    return inferenceRecords(ctx, target, `/aws/sagemaker/Endpoints/${endpoint}`, `CloudWatch Logs, endpoint ${endpoint}`, since);
  },

  // The platform keeps no record of earlier versions here: what serves now.
  async recordedReleases(target, ctx) {
    return servingOnly(await this.status(target, ctx));
  },

  async status(target, ctx): Promise<TargetStatus> {
    const endpoint = endpointName(target, ctx);
    const result = await ctx.exec.run('aws', ['sagemaker', 'describe-endpoint', '--endpoint-name', endpoint, '--region', target.region, '--output', 'json'], {
      allowFailure: true,
    });
    if (result.exitCode !== 0) {
      notFoundOrThrow(
        result,
        /Could not find endpoint/i,
        `SageMaker endpoint ${endpoint} (region ${target.region})`,
        'check the AWS credentials and region: aws sts get-caller-identity',
      );
      return {
        target: ctx.targetName,
        type: 'sagemaker',
        deployed: false,
        version: null,
        image: null,
        health: 'not deployed',
        url: null,
        startedAt: null,
        detail: { endpoint },
      };
    }
    const description = JSON.parse(result.stdout) as EndpointDescription;
    const variant = description.ProductionVariants?.[0];
    return {
      target: ctx.targetName,
      type: 'sagemaker',
      deployed: true,
      version: await servingVersion(ctx, target, description.EndpointConfigName),
      image: variant?.DeployedImages?.[0]?.SpecifiedImage ?? null,
      health: description.EndpointStatus === 'InService' ? 'ready' : (description.EndpointStatus ?? 'unknown'),
      url: `https://runtime.sagemaker.${target.region}.amazonaws.com/endpoints/${endpoint}/invocations`,
      startedAt: description.CreationTime ?? null,
      detail: {
        endpoint,
        endpointConfig: description.EndpointConfigName,
        instances: variant?.CurrentInstanceCount ?? null,
        ...(description.FailureReason ? { failure: description.FailureReason } : {}),
      },
    };
  },
};

/** One OIP v2 request through invoke-endpoint (SageMaker's own route to /invocations), checked like every smoke test. */
function invokeSmoke(ctx: DeployContext, target: SageMakerTarget, endpoint: string, release: Release): Promise<SmokeFailure | undefined> {
  const encode = async (signature: ModelSignature) =>
    release.takes ? rawSmokeBody(release.takes, 'oip') : encodeRestRequest(signature.inputs, await ctx.sampleInputs(signature.inputs), { binary: false }).body;
  return smokeThroughCli(ctx, release, 'invoke-endpoint', encode, async (request, dir, signature) => {
    const answer = path.join(dir, 'answer.json');
    const invoked = await ctx.exec.run(
      'aws',
      [
        'sagemaker-runtime',
        'invoke-endpoint',
        '--endpoint-name',
        endpoint,
        '--content-type',
        'application/json',
        '--accept',
        'application/json',
        '--body',
        `fileb://${request}`,
        '--region',
        target.region,
        answer,
      ],
      { allowFailure: true, timeoutMs: 120_000 },
    );
    if (invoked.exitCode !== 0) return { reason: 'smoke-failure', message: `invoke-endpoint failed: ${invoked.stderr.trim().split('\n').at(-1) ?? ''}` };
    checkOutputs(signature.outputs, JSON.parse(await readFile(answer, 'utf8')));
    return undefined;
  });
}

/** The mlops-version tag of the model the endpoint config serves: SageMaker keeps no version of its own. */
async function servingVersion(ctx: DeployContext, target: SageMakerTarget, config: string | undefined): Promise<string | null> {
  if (!config) return null;
  const aws = (args: string[]) => ctx.exec.run('aws', ['sagemaker', ...args, '--region', target.region, '--output', 'json'], { allowFailure: true });
  const described = await aws(['describe-endpoint-config', '--endpoint-config-name', config]);
  const model =
    described.exitCode === 0
      ? (JSON.parse(described.stdout) as { ProductionVariants?: { ModelName?: string }[] }).ProductionVariants?.[0]?.ModelName
      : undefined;
  if (!model) return null;
  const modelDescription = await aws(['describe-model', '--model-name', model]);
  const arn = modelDescription.exitCode === 0 ? (JSON.parse(modelDescription.stdout) as { ModelArn?: string }).ModelArn : undefined;
  if (!arn) return null;
  const listed = await aws(['list-tags', '--resource-arn', arn]);
  const tagList = listed.exitCode === 0 ? (JSON.parse(listed.stdout) as { Tags?: { Key: string; Value: string }[] }).Tags : undefined;
  return tagList?.find((t) => t.Key === 'mlops-version')?.Value ?? null;
}
