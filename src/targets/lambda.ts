import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { LambdaTarget } from '../config/defaults.js';
import { environmentError, inputError } from '../errors.js';
import { defaultModelName } from '../model/inspect.js';
import { encodeRestRequest } from '../protocol/rest.js';
import { inferenceRecords, matchingLogLines, recentLogLines } from './cloudwatch.js';
import { notFoundOrThrow } from './exec.js';
import { rollout, type Failure } from './rollout.js';
import { fileLock } from './lock.js';
import { ECR_HOST } from './sagemaker.js';
import { checkOutputs, smokeThroughCli, type SmokeFailure, rawSmokeBody } from './smoke.js';
import type { DeployContext, DeployOutcome, ModelSignature, RecordedRelease, Release, TargetAdapter, TargetStatus } from './types.js';

/** What a dry run names the version publish-version would return. */
export const PUBLISHED_VERSION = '<published-version>';
/** Each published version's description: Lambda keeps no tag per version, and this is how status tells which release serves. */
const DESCRIPTION = 'mlops-version=';
const NOT_FOUND = /ResourceNotFoundException|Function not found|Alias not found|Cannot find alias/i;

interface FunctionDescription {
  Configuration?: {
    PackageType?: string;
    State?: string;
    StateReason?: string;
    LastUpdateStatus?: string;
    LastUpdateStatusReason?: string;
    Description?: string;
    LastModified?: string;
    Version?: string;
  };
  Code?: { ImageUri?: string; ResolvedImageUri?: string };
  Concurrency?: { ReservedConcurrentExecutions?: number };
}

interface AliasDescription {
  FunctionVersion?: string;
  RoutingConfig?: { AdditionalVersionWeights?: Record<string, number> };
}

export function functionName(target: LambdaTarget, ctx: Pick<DeployContext, 'config' | 'projectDir'>): string {
  const name = target.function || ctx.config.model.name || defaultModelName(path.resolve(ctx.projectDir, ctx.config.model.path));
  return name
    .replace(/[^a-zA-Z0-9_-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 64);
}

const versionOf = (description: string | undefined) => (description?.startsWith(DESCRIPTION) ? description.slice(DESCRIPTION.length) : null);
const routing = (weights: Record<string, number>) => JSON.stringify({ AdditionalVersionWeights: weights });

/** One Lambda API through the aws CLI, as the SageMaker adapter calls SageMaker: both AWS targets share one way in. */
function lambdaCli(ctx: DeployContext, target: LambdaTarget) {
  const name = functionName(target, ctx);
  const aws = (service: string, args: string[], options?: { allowFailure?: boolean; timeoutMs?: number }) =>
    ctx.exec.run('aws', [service, ...args, '--region', target.region, '--output', 'json'], options);
  const lambda = (args: string[], options?: { allowFailure?: boolean; timeoutMs?: number }) => aws('lambda', args, options);
  /** A get that may find nothing: null when the thing is not there, an environment error when AWS could not be asked. */
  const lookup = async <T>(args: string[], what: string): Promise<T | null> => {
    const result = await lambda(args, { allowFailure: true });
    if (result.exitCode !== 0) {
      notFoundOrThrow(result, NOT_FOUND, what, 'check the AWS credentials and region: aws sts get-caller-identity');
      return null;
    }
    return result.stdout ? (JSON.parse(result.stdout) as T) : null;
  };
  return {
    name,
    aws,
    lambda,
    getFunction: (qualifier?: string) =>
      lookup<FunctionDescription>(
        ['get-function', '--function-name', name, ...(qualifier ? ['--qualifier', qualifier] : [])],
        `Lambda function ${name}${qualifier ? `:${qualifier}` : ''} (region ${target.region})`,
      ),
    getAlias: () =>
      lookup<AliasDescription>(
        ['get-alias', '--function-name', name, '--name', target.alias],
        `Lambda alias ${name}:${target.alias} (region ${target.region})`,
      ),
    getUrl: () =>
      lookup<{ FunctionUrl?: string; AuthType?: string }>(
        ['get-function-url-config', '--function-name', name, '--qualifier', target.alias],
        `the Function URL of ${name}:${target.alias}`,
      ),
  };
}

/**
 * A container-image function through the aws CLI: create-function or update-function-code (after the
 * configuration), a wait for LastUpdateStatus, publish-version, a smoke `invoke` of that version before
 * any traffic, then the alias moved in weighted steps (AdditionalVersionWeights) with the configured
 * CloudWatch alarms watched at each; a failure leaves or puts the alias back on the previous version.
 */
export const lambdaAdapter: TargetAdapter<LambdaTarget> = {
  type: 'lambda',
  needsRegistry: true,
  output: null,

  // Lambda has no lock to offer mlops: a lock file in the project (best effort, docs/deploy.md).
  lock: (_target, ctx, holder) => fileLock(ctx.projectDir, ctx.targetName, holder),

  async recover(target, ctx, current) {
    const cli = lambdaCli(ctx, target);
    const alias = await cli.getAlias();
    const weighted = Object.keys(alias?.RoutingConfig?.AdditionalVersionWeights ?? {});
    if (!alias?.FunctionVersion || weighted.length === 0) return null;
    // A canary step left by a deploy that died: its version had passed the smoke test but not its bake.
    const candidate = await cli.getFunction(weighted[0]);
    await cli.lambda([
      'update-alias',
      '--function-name',
      cli.name,
      '--name',
      target.alias,
      '--function-version',
      alias.FunctionVersion,
      '--routing-config',
      routing({}),
    ]);
    return {
      candidate: { version: versionOf(candidate?.Configuration?.Description) ?? `Lambda version ${weighted[0]}`, image: candidate?.Code?.ImageUri ?? '' },
      outcome: 'restored',
      serving: current,
      message: `alias ${target.alias} sent part of its traffic to version ${weighted[0]}; it sends all to version ${alias.FunctionVersion} again`,
    };
  },

  async deploy(target, release, previous, ctx): Promise<DeployOutcome> {
    checkImageRegion(release, target);
    const cli = lambdaCli(ctx, target);
    const { name, lambda } = cli;
    const waitFor = (waiter: string, qualifier?: string) =>
      lambda(['wait', waiter, '--function-name', name, ...(qualifier ? ['--qualifier', qualifier] : [])], {
        allowFailure: true,
        timeoutMs: target.readyTimeoutSeconds * 1000,
      });
    const { before, alias } = await updatableFunction(cli, target);
    const settings = [
      '--role',
      target.roleArn,
      '--memory-size',
      String(target.memorySizeMb),
      '--ephemeral-storage',
      JSON.stringify({ Size: target.ephemeralStorageMb }),
    ];
    settings.push('--timeout', String(target.timeoutSeconds));

    const serves = alias?.FunctionVersion;
    let version = PUBLISHED_VERSION;
    const moves = () => Boolean(serves) && serves !== version;
    const logs = () => recentLogLines(ctx, target, `/aws/lambda/${name}`);
    const setAlias = (to: string, weights: Record<string, number>) =>
      lambda(['update-alias', '--function-name', name, '--name', target.alias, '--function-version', to, '--routing-config', routing(weights)]);
    return rollout(ctx, release, previous, target, {
      get serving() {
        return moves();
      },
      get watchesFullTraffic() {
        return moves() && target.alarms.length > 0;
      },
      describe: () => ({ candidate: `version ${version}`, ...(target.alarms.length ? { watching: target.alarms.join(', ') } : {}) }),
      async create() {
        const failure = await updateFunction(ctx, target, release, before, settings);
        if (failure) return failure;
        const published = await lambda(['publish-version', '--function-name', name, '--description', `${DESCRIPTION}${release.version}`]);
        // A dry run's publish answers nothing: its plan names the version by a placeholder.
        version = (JSON.parse(published.stdout || '{}') as { Version?: string }).Version ?? PUBLISHED_VERSION;
        await waitFor('published-version-active', version);
        return undefined;
      },
      smoke: () => invokeSmoke(ctx, target, name, version, release),
      async shift(percent) {
        if (!alias) return void (await lambda(['create-alias', '--function-name', name, '--name', target.alias, '--function-version', version]));
        // Lambda publishes no new version for unchanged code and configuration: the alias already serves it.
        if (!moves()) return void ctx.log(`version ${version} already serves alias ${target.alias}; nothing to move`);
        if (percent === target.canary[0] && target.canary.length > 1 && target.alarms.length === 0)
          ctx.log(`warning: target '${ctx.targetName}' moves traffic in steps but names no alarms, so nothing is watched while each step bakes`);
        await setAlias(percent === 100 ? version : serves!, percent === 100 ? {} : { [version]: percent / 100 });
        return undefined;
      },
      async watch(percent) {
        // An alarm that cannot be read is no pass: the traffic goes back as for one that fired.
        const fired = await firingAlarms(ctx, target).catch((error: Error) => error);
        if (!(fired instanceof Error) && fired.length === 0) return undefined;
        const said = fired instanceof Error ? (fired as { details?: string }).details?.trim().split('\n').at(-1) || fired.message.split('\n')[0] : '';
        const what = fired instanceof Error ? `the alarms could not be read (${said})` : `alarm ${fired.join(', ')} fired`;
        return { reason: 'rollout-failed', message: `${what} with ${percent}% of traffic on version ${version}` };
      },
      async promote() {
        await setProvisionedConcurrency(ctx, target, name);
        return setFunctionUrl(ctx, target, name);
      },
      async fallBack(failure, stage) {
        // Before traffic moved the alias was not touched: what served still serves.
        if (stage === 'create') return { restored: serves ? previous : null, logs: '' };
        if (stage !== 'traffic') return { restored: serves ? previous : null, logs: await logs() };
        await setAlias(serves!, {});
        return { restored: previous, logs: await logs(), message: `${failure.message}; alias ${target.alias} is back on version ${serves}` };
      },
    });
  },

  async replicas(_target, ctx) {
    throw inputError(
      `target '${ctx.targetName}' (Lambda): execution environments cannot be reached one by one, so their live profiles cannot be summed`,
      'read the inference log with mlops monitor --labels, or use --url with a local run of the same image',
    );
  },

  async inferenceLogs(target, ctx, since) {
    const name = functionName(target, ctx);
    // Lambda sends the function's stdout to CloudWatch, one stream per execution environment.
    return inferenceRecords(ctx, target, `/aws/lambda/${name}`, `CloudWatch Logs, function ${name}`, since);
  },

  /** Lambda keeps every published version: those mlops published, oldest first. */
  async recordedReleases(target, ctx): Promise<RecordedRelease[]> {
    const cli = lambdaCli(ctx, target);
    const listed = await cli.lambda(['list-versions-by-function', '--function-name', cli.name], { allowFailure: true });
    if (listed.exitCode !== 0) {
      notFoundOrThrow(
        listed,
        NOT_FOUND,
        `Lambda function ${cli.name} (region ${target.region})`,
        'check the AWS credentials and region: aws sts get-caller-identity',
      );
      return [];
    }
    const alias = await cli.getAlias();
    const versions = (
      (JSON.parse(listed.stdout || '{}') as { Versions?: { Version?: string; Description?: string; LastModified?: string }[] }).Versions ?? []
    ).filter((v) => versionOf(v.Description));
    const releases: RecordedRelease[] = [];
    for (const v of versions) {
      const described = await cli.getFunction(v.Version);
      releases.push({
        version: versionOf(v.Description)!,
        image: described?.Code?.ImageUri ?? '',
        at: v.LastModified ?? null,
        serving: v.Version === alias?.FunctionVersion,
      });
    }
    return releases;
  },

  async status(target, ctx): Promise<TargetStatus> {
    const cli = lambdaCli(ctx, target);
    const alias = await cli.getAlias();
    const notDeployed = {
      target: ctx.targetName,
      type: 'lambda' as const,
      deployed: false,
      version: null,
      image: null,
      health: 'not deployed',
      url: null,
      startedAt: null,
      detail: { function: cli.name, alias: target.alias },
    };
    if (!alias?.FunctionVersion) return notDeployed;
    const described = await cli.getFunction(target.alias);
    const configuration = described?.Configuration;
    const url = target.functionUrl === 'off' ? null : await cli.getUrl();
    const weights = alias.RoutingConfig?.AdditionalVersionWeights ?? {};
    return {
      target: ctx.targetName,
      type: 'lambda',
      deployed: true,
      version: versionOf(configuration?.Description),
      image: described?.Code?.ImageUri ?? null,
      health: configuration?.State === 'Active' ? 'ready' : (configuration?.State ?? 'unknown'),
      url: url?.FunctionUrl ?? null,
      startedAt: configuration?.LastModified ?? null,
      detail: {
        function: cli.name,
        alias: target.alias,
        functionVersion: alias.FunctionVersion,
        ...(Object.keys(weights).length ? { canary: weights } : {}),
        ...(url ? { urlAuth: url.AuthType } : {}),
        coldStart: await coldStarts(ctx, target, cli.name),
      },
    };
  },
};

/** Lambda runs images from ECR in the function's own region. */
function checkImageRegion(release: Release, target: LambdaTarget): void {
  const host = release.image.split('/')[0];
  const ecr = ECR_HOST.exec(host);
  if (!ecr)
    throw inputError(
      `Lambda runs images from Amazon ECR only, and ${host} is not an ECR registry`,
      'set image.repository to <account>.dkr.ecr.<region>.amazonaws.com/<name>, then `mlops push`',
    );
  if (ecr[2] !== target.region)
    throw inputError(
      `Lambda runs images from the function's own region, and ${host} is in ${ecr[2]}, not ${target.region}`,
      `push to an ECR repository in ${target.region}, or set the target's region to ${ecr[2]}`,
    );
}

/** The function and its alias as they are, when a deploy may change them: an image function, no update or canary under way. */
async function updatableFunction(cli: ReturnType<typeof lambdaCli>, target: LambdaTarget) {
  const { name } = cli;
  const before = await cli.getFunction();
  if (before && before.Configuration?.PackageType !== 'Image') {
    throw inputError(
      `Lambda function ${name} is a .zip function, and mlops deploys container images`,
      'name another function in the target\'s "function", or delete this one',
    );
  }
  if (before?.Configuration?.LastUpdateStatus === 'InProgress') {
    throw environmentError(
      `Lambda function ${name} is being updated: another change is under way`,
      `wait for it (aws lambda wait function-updated-v2 --function-name ${name}), then deploy again`,
    );
  }
  const alias = before ? await cli.getAlias() : null;
  if (Object.keys(alias?.RoutingConfig?.AdditionalVersionWeights ?? {}).length > 0) {
    throw environmentError(
      `alias ${name}:${target.alias} already splits its traffic: another rollout is under way`,
      'let it finish, or put the alias on one version (aws lambda update-alias ... --routing-config AdditionalVersionWeights={}), then deploy again',
    );
  }
  return { before, alias };
}

/** The function made, or its configuration and code updated, and waited for; a failure when Lambda did not take the image. */
async function updateFunction(
  ctx: DeployContext,
  target: LambdaTarget,
  release: Release,
  before: FunctionDescription | null,
  settings: string[],
): Promise<Failure | undefined> {
  const cli = lambdaCli(ctx, target);
  const { name, lambda } = cli;
  const waitFor = (waiter: string) => lambda(['wait', waiter, '--function-name', name], { allowFailure: true, timeoutMs: target.readyTimeoutSeconds * 1000 });
  if (!before) {
    const code = JSON.stringify({ ImageUri: release.image });
    const tags = JSON.stringify({ 'managed-by': 'mlops' });
    await lambda([
      'create-function',
      '--function-name',
      name,
      '--package-type',
      'Image',
      '--code',
      code,
      ...settings,
      '--architectures',
      target.architecture,
      '--tags',
      tags,
    ]);
  } else {
    await lambda(['update-function-configuration', '--function-name', name, ...settings]);
    await waitFor('function-updated-v2');
    await lambda(['update-function-code', '--function-name', name, '--image-uri', release.image, '--architectures', target.architecture]);
  }
  const waited = await waitFor(before ? 'function-updated-v2' : 'function-active-v2');
  if (!ctx.exec.dryRun) {
    const state = (await cli.getFunction())?.Configuration;
    if (waited.exitCode !== 0 || state?.State === 'Failed' || state?.LastUpdateStatus === 'Failed') {
      const said = state?.LastUpdateStatusReason ?? state?.StateReason ?? waited.stderr.trim().split('\n').at(-1) ?? 'no reason given';
      return { reason: 'rollout-failed', message: `function ${name} did not take the image: ${said}` };
    }
  }
  if (target.reservedConcurrency !== undefined) {
    await lambda(['put-function-concurrency', '--function-name', name, '--reserved-concurrent-executions', String(target.reservedConcurrency)]);
  } else if (before?.Concurrency?.ReservedConcurrentExecutions !== undefined) {
    await lambda(['delete-function-concurrency', '--function-name', name]);
  }
  return undefined;
}

/**
 * A Function URL event (payload 2.0) carrying one OIP v2 request, invoked on the new version before
 * it takes traffic; the answer is the server's HTTP answer in the event format, checked like every smoke test.
 */
function invokeSmoke(ctx: DeployContext, target: LambdaTarget, name: string, version: string, release: Release): Promise<SmokeFailure | undefined> {
  const encode = async (signature: ModelSignature) => {
    const body = release.takes
      ? rawSmokeBody(release.takes, 'oip')
      : encodeRestRequest(signature.inputs, await ctx.sampleInputs(signature.inputs), { binary: false }).body;
    const route = `/v2/models/${encodeURIComponent(release.modelName)}/infer`;
    return JSON.stringify(smokeEvent(route, Buffer.from(body).toString('utf8')));
  };
  return smokeThroughCli(ctx, release, 'lambda invoke', encode, async (request, dir, signature) => {
    const answer = path.join(dir, 'answer.json');
    const invoked = await ctx.exec.run(
      'aws',
      [
        'lambda',
        'invoke',
        '--function-name',
        name,
        '--qualifier',
        version,
        '--log-type',
        'Tail',
        '--payload',
        `fileb://${request}`,
        '--region',
        target.region,
        '--output',
        'json',
        answer,
      ],
      { allowFailure: true, timeoutMs: (target.timeoutSeconds + 60) * 1000 },
    );
    if (invoked.exitCode !== 0) return { reason: 'smoke-failure', message: `lambda invoke failed: ${invoked.stderr.trim().split('\n').at(-1) ?? ''}` };
    const result = JSON.parse(invoked.stdout || '{}') as { FunctionError?: string; LogResult?: string };
    const init = initDurations(Buffer.from(result.LogResult ?? '', 'base64').toString('utf8'));
    if (init.length) ctx.log(`cold start of version ${version}: ${init[0]} ms (Lambda's Init Duration)`);
    const payload = JSON.parse(await readFile(answer, 'utf8')) as {
      statusCode?: number;
      body?: string;
      isBase64Encoded?: boolean;
      errorMessage?: string;
      errorType?: string;
    };
    if (result.FunctionError)
      return {
        reason: 'smoke-failure',
        message: `version ${version} failed the invocation (${result.FunctionError}): ${payload.errorType ?? ''} ${payload.errorMessage ?? ''}`.trim(),
      };
    const body = payload.isBase64Encoded ? Buffer.from(payload.body ?? '', 'base64').toString('utf8') : (payload.body ?? '');
    if (payload.statusCode !== 200)
      return { reason: 'smoke-failure', message: `inference answered HTTP ${payload.statusCode ?? '(none)'}: ${body.slice(0, 200)}` };
    checkOutputs(signature.outputs, JSON.parse(body));
    return undefined;
  });
}

/** The event a Function URL would send for POST <route> with a JSON body. */
export function smokeEvent(route: string, body: string): Record<string, unknown> {
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: route,
    rawQueryString: '',
    headers: { 'content-type': 'application/json', 'user-agent': 'mlops-smoke' },
    requestContext: {
      http: { method: 'POST', path: route, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'mlops-smoke' },
      routeKey: '$default',
      stage: '$default',
      requestId: 'mlops-smoke',
    },
    body,
    isBase64Encoded: false,
  };
}

/** The `Init Duration` of each REPORT line: how long Lambda took to start an execution environment. */
export function initDurations(log: string): number[] {
  return [...log.matchAll(/Init Duration: ([\d.]+) ms/g)].map((m) => Number(m[1]));
}

/** The cold starts CloudWatch recorded in the last day: how many, the last and the median Init Duration. */
async function coldStarts(ctx: DeployContext, target: LambdaTarget, name: string): Promise<Record<string, unknown>> {
  const lines = await matchingLogLines(ctx, target, `/aws/lambda/${name}`, '"Init Duration"', new Date(Date.now() - 86_400_000));
  if (!Array.isArray(lines)) return lines;
  const durations = lines.flatMap(initDurations);
  if (durations.length === 0) return { samples: 0, window: '24h' };
  const sorted = [...durations].sort((a, b) => a - b);
  return { samples: durations.length, lastMs: durations.at(-1), medianMs: sorted[Math.floor(sorted.length / 2)], maxMs: sorted.at(-1), window: '24h' };
}

/** The configured alarms in state ALARM; a failed look is an error, never "no alarm". */
async function firingAlarms(ctx: DeployContext, target: LambdaTarget): Promise<string[]> {
  if (target.alarms.length === 0) return [];
  const result = await ctx.exec.run('aws', [
    'cloudwatch',
    'describe-alarms',
    '--alarm-names',
    ...target.alarms,
    '--state-value',
    'ALARM',
    '--region',
    target.region,
    '--output',
    'json',
  ]);
  const found = JSON.parse(result.stdout || '{}') as { MetricAlarms?: { AlarmName: string }[]; CompositeAlarms?: { AlarmName: string }[] };
  return [...(found.MetricAlarms ?? []), ...(found.CompositeAlarms ?? [])].map((a) => a.AlarmName);
}

/** Provisioned concurrency on the alias, so Lambda keeps it on whichever version the alias serves; 0 removes it. */
async function setProvisionedConcurrency(ctx: DeployContext, target: LambdaTarget, name: string): Promise<void> {
  const aws = (args: string[], allowFailure = false) =>
    ctx.exec.run('aws', ['lambda', ...args, '--function-name', name, '--qualifier', target.alias, '--region', target.region, '--output', 'json'], {
      allowFailure,
    });
  if (target.provisionedConcurrency > 0) {
    await aws(['put-provisioned-concurrency-config', '--provisioned-concurrent-executions', String(target.provisionedConcurrency)]);
    return;
  }
  const existing = await aws(['get-provisioned-concurrency-config'], true);
  if (existing.exitCode === 0 && existing.stdout) await aws(['delete-provisioned-concurrency-config']);
}

/** The Function URL on the alias, with the configured auth; NONE also needs the public invoke permission. Null when off. */
async function setFunctionUrl(ctx: DeployContext, target: LambdaTarget, name: string): Promise<string | null> {
  const cli = lambdaCli(ctx, target);
  const existing = await cli.getUrl();
  const on = ['--function-name', name, '--qualifier', target.alias];
  if (target.functionUrl === 'off') {
    if (existing) await cli.lambda(['delete-function-url-config', ...on]);
    return null;
  }
  let configured = existing;
  type UrlConfig = { FunctionUrl?: string; AuthType?: string };
  if (!existing)
    configured = JSON.parse((await cli.lambda(['create-function-url-config', ...on, '--auth-type', target.functionUrl])).stdout || '{}') as UrlConfig;
  else if (existing.AuthType !== target.functionUrl)
    configured = JSON.parse((await cli.lambda(['update-function-url-config', ...on, '--auth-type', target.functionUrl])).stdout || '{}') as UrlConfig;
  if (target.functionUrl === 'NONE' && (!existing || existing.AuthType !== 'NONE')) {
    const granted = await cli.lambda(
      [
        'add-permission',
        ...on,
        '--statement-id',
        'mlops-function-url-public',
        '--action',
        'lambda:InvokeFunctionUrl',
        '--principal',
        '*',
        '--function-url-auth-type',
        'NONE',
      ],
      { allowFailure: true },
    );
    if (granted.exitCode !== 0 && !/ResourceConflictException/.test(granted.stderr)) {
      throw environmentError(
        `the public Function URL of ${name}:${target.alias} could not be opened`,
        'allow lambda:AddPermission to the deploying role, or set "functionUrl": "AWS_IAM"',
        granted.stderr.trim(),
      );
    }
  }
  return configured?.FunctionUrl ?? null;
}
