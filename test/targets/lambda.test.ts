/**
 * The Lambda target's plans: the aws CLI through the exec seam against a scripted account (no AWS
 * account is reachable here), and every planned command parsed by the real aws CLI against Lambda's
 * service model.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { TARGET_DEFAULTS, type LambdaTarget } from '../../src/config/defaults.js';
import { applyDefaults } from '../../src/config/normalize.js';
import { validateConfig } from '../../src/config/load.js';
import { isMlopsError } from '../../src/errors.js';
import { eventToRequest } from '../../src/server/lambda-runtime.js';
import { initDurations, lambdaAdapter, PUBLISHED_VERSION, smokeEvent } from '../../src/targets/lambda.js';
import { scripted } from '../scripted-cli.js';
import { exitCodeOf, goodAnswer, planArgv, releases, targetContext as ctx } from './target-context.js';
import { probeTool } from '../tools.js';

const run = promisify(execFile);
const ecr = '123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/bc';
const [v1, v2] = releases(ecr);
const target: LambdaTarget = {
  ...TARGET_DEFAULTS.lambda,
  region: 'eu-west-1',
  roleArn: 'arn:aws:iam::123456789012:role/mlops-lambda',
  canary: [10, 50, 100],
  waitIntervalSeconds: 0,
  alarms: ['bc-errors'],
};
const tail = '--region eu-west-1 --output json';
const REPORT = 'REPORT RequestId: 1 Duration: 12.5 ms Billed Duration: 13 ms Memory Size: 2048 MB Max Memory Used: 180 MB Init Duration: 301.27 ms';

/** An AWS account in a script: a function, its published versions and its alias, changed by the calls it sees. */
function account(
  options: {
    serving?: string;
    weights?: Record<string, number>;
    packageType?: string;
    updateStatus?: string;
    codeFails?: boolean;
    answer?: unknown;
    statusCode?: number;
    functionError?: boolean;
    alarmAt?: number;
    url?: string;
  } = {},
) {
  let exists = options.serving !== undefined || options.packageType !== undefined;
  let alias: { FunctionVersion: string; RoutingConfig?: { AdditionalVersionWeights: Record<string, number> } } | null = options.serving
    ? { FunctionVersion: options.serving, ...(options.weights ? { RoutingConfig: { AdditionalVersionWeights: options.weights } } : {}) }
    : null;
  let published = Number(options.serving ?? 0);
  let url = options.url;
  let step = 0;
  const descriptions: Record<string, string> = { [String(published)]: 'mlops-version=1.0.0' };
  const result = scripted(async (line, args) => {
    const arg = (flag: string) => args[args.indexOf(flag) + 1];
    const missing = (what: string) => ({
      exitCode: 254,
      stderr: `An error occurred (ResourceNotFoundException) when calling the ${what} operation: Function not found`,
    });
    if (line.startsWith('aws lambda get-function ')) {
      if (!exists) return missing('GetFunction');
      const qualifier = args.includes('--qualifier') ? arg('--qualifier') : undefined;
      const version = qualifier === target.alias ? alias?.FunctionVersion : qualifier;
      return {
        stdout: JSON.stringify({
          Configuration: {
            PackageType: options.packageType ?? 'Image',
            State: 'Active',
            LastUpdateStatus: options.codeFails && step > 0 ? 'Failed' : (options.updateStatus ?? 'Successful'),
            LastUpdateStatusReason: options.codeFails ? 'ImageAccessDenied: Lambda does not have permission to access the ECR image' : undefined,
            Description: version ? descriptions[version] : undefined,
            LastModified: '2026-11-30T10:00:00.000+0000',
          },
          Code: { ImageUri: version === '1' ? v1.image : v2.image },
          ...(options.serving ? { Concurrency: { ReservedConcurrentExecutions: 5 } } : {}),
        }),
      };
    }
    if (line.startsWith('aws lambda get-alias')) return alias ? { stdout: JSON.stringify(alias) } : missing('GetAlias');
    if (line.startsWith('aws lambda create-function ')) exists = true;
    if (line.startsWith('aws lambda update-function-code')) step = 1;
    if (line.startsWith('aws lambda wait function-updated-v2') && options.codeFails && step > 0)
      return {
        exitCode: 255,
        stderr:
          'Waiter FunctionUpdatedV2 failed: Waiter encountered a terminal failure state: For expression "Configuration.LastUpdateStatus" we matched expected path: "Failed"',
      };
    if (line.startsWith('aws lambda publish-version')) {
      published += 1;
      descriptions[String(published)] = arg('--description');
      return { stdout: JSON.stringify({ Version: String(published) }) };
    }
    if (line.startsWith('aws lambda invoke')) {
      const payload = options.answer ?? {
        statusCode: options.statusCode ?? 200,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(goodAnswer),
        isBase64Encoded: false,
      };
      await writeFile(
        args.at(-1)!,
        JSON.stringify(
          options.functionError ? { errorType: 'Runtime.ExitError', errorMessage: 'RequestId: 1 Error: Runtime exited with error: exit status 1' } : payload,
        ),
      );
      return {
        stdout: JSON.stringify({
          StatusCode: 200,
          ExecutedVersion: arg('--qualifier'),
          LogResult: Buffer.from(`START RequestId: 1\n${REPORT}\n`).toString('base64'),
          ...(options.functionError ? { FunctionError: 'Unhandled' } : {}),
        }),
      };
    }
    if (line.startsWith('aws lambda create-alias')) alias = { FunctionVersion: arg('--function-version') };
    if (line.startsWith('aws lambda update-alias')) {
      alias = { FunctionVersion: arg('--function-version'), RoutingConfig: JSON.parse(arg('--routing-config')) };
    }
    if (line.startsWith('aws cloudwatch describe-alarms')) {
      const weight = Object.values(alias?.RoutingConfig?.AdditionalVersionWeights ?? {})[0] ?? 1;
      return {
        stdout: JSON.stringify({
          MetricAlarms: options.alarmAt !== undefined && weight * 100 >= options.alarmAt ? [{ AlarmName: 'bc-errors', StateValue: 'ALARM' }] : [],
          CompositeAlarms: [],
        }),
      };
    }
    if (line.startsWith('aws lambda get-provisioned-concurrency-config')) return { exitCode: 254, stderr: 'ProvisionedConcurrencyConfigNotFoundException' };
    if (line.startsWith('aws lambda get-function-url-config'))
      return url ? { stdout: JSON.stringify({ FunctionUrl: url, AuthType: 'AWS_IAM' }) } : missing('GetFunctionUrlConfig');
    if (line.startsWith('aws lambda create-function-url-config')) {
      url = 'https://abc123.lambda-url.eu-west-1.on.aws/';
      return { stdout: JSON.stringify({ FunctionUrl: url, AuthType: arg('--auth-type') }) };
    }
    if (line.startsWith('aws lambda list-versions-by-function'))
      return {
        stdout: JSON.stringify({
          Versions: [
            { Version: '$LATEST' },
            ...Object.entries(descriptions).map(([Version, Description]) => ({ Version, Description, LastModified: '2026-11-30T10:00:00.000+0000' })),
          ],
        }),
      };
    if (line.startsWith('aws logs filter-log-events'))
      return {
        stdout: JSON.stringify({ events: [{ message: REPORT }, { message: REPORT.replace('301.27', '280.5') }, { message: REPORT.replace('301.27', '350') }] }),
      };
    return {};
  });
  return { ...result, alias: () => alias };
}

const verbs = (calls: string[]) => calls.map((c) => c.split(' ').slice(1, 3).join(' '));

describe('lambda plan tests (aws CLI through the exec seam; no AWS account here)', () => {
  it('first deploy: create-function, wait, publish a version, smoke-invoke it, then the alias and its Function URL (AWS_IAM)', async () => {
    const { runner, calls, alias } = account();
    const logs: string[] = [];
    const outcome = await lambdaAdapter.deploy(target, v2, null, ctx({ runner, logs }));
    expect(outcome).toMatchObject({ status: 'deployed', url: 'https://abc123.lambda-url.eu-west-1.on.aws/' });
    expect(verbs(calls)).toEqual([
      'lambda get-function',
      'lambda create-function',
      'lambda wait',
      'lambda get-function',
      'lambda publish-version',
      'lambda wait',
      'lambda invoke',
      'lambda create-alias',
      'lambda get-provisioned-concurrency-config',
      'lambda get-function-url-config',
      'lambda create-function-url-config',
    ]);
    expect(calls[1]).toBe(
      `aws lambda create-function --function-name bc --package-type Image --code {"ImageUri":"${v2.image}"} --role arn:aws:iam::123456789012:role/mlops-lambda --memory-size 2048 --ephemeral-storage {"Size":512} --timeout 30 --architectures x86_64 --tags {"managed-by":"mlops"} ${tail}`,
    );
    expect(calls[2]).toBe(`aws lambda wait function-active-v2 --function-name bc ${tail}`);
    expect(calls[4]).toBe(`aws lambda publish-version --function-name bc --description mlops-version=1.1.0 ${tail}`);
    expect(calls[5]).toBe(`aws lambda wait published-version-active --function-name bc --qualifier 1 ${tail}`);
    expect(calls[6]).toMatch(
      /^aws lambda invoke --function-name bc --qualifier 1 --log-type Tail --payload fileb:\/\/\S+request\.json --region eu-west-1 --output json \S+answer\.json$/,
    );
    expect(calls[10]).toBe(`aws lambda create-function-url-config --function-name bc --qualifier live --auth-type AWS_IAM ${tail}`);
    expect(alias()).toEqual({ FunctionVersion: '1' });
    expect(logs).toContain("cold start of version 1: 301.27 ms (Lambda's Init Duration)");
  });

  it('the smoke event is a Function URL event the image routes to the inference route', () => {
    const event = smokeEvent('/v2/models/bc/infer', '{"inputs":[]}');
    expect(eventToRequest(event)).toEqual({
      method: 'POST',
      path: '/v2/models/bc/infer',
      headers: { 'content-type': 'application/json', 'user-agent': 'mlops-smoke' },
      body: Buffer.from('{"inputs":[]}'),
    });
  });

  it('update with canary steps: configuration, code, wait, publish, smoke, then weighted alias steps with the alarms checked at each', async () => {
    const { runner, calls, alias } = account({ serving: '1', url: 'https://abc123.lambda-url.eu-west-1.on.aws/' });
    const outcome = await lambdaAdapter.deploy({ ...target, reservedConcurrency: 20, provisionedConcurrency: 2 }, v2, v1, ctx({ runner }));
    expect(outcome).toMatchObject({ status: 'deployed', previous: v1, url: 'https://abc123.lambda-url.eu-west-1.on.aws/' });
    expect(verbs(calls)).toEqual([
      'lambda get-function',
      'lambda get-alias',
      'lambda update-function-configuration',
      'lambda wait',
      'lambda update-function-code',
      'lambda wait',
      'lambda get-function',
      'lambda put-function-concurrency',
      'lambda publish-version',
      'lambda wait',
      'lambda invoke',
      'lambda update-alias',
      'cloudwatch describe-alarms',
      'lambda update-alias',
      'cloudwatch describe-alarms',
      'lambda update-alias',
      'cloudwatch describe-alarms',
      'lambda put-provisioned-concurrency-config',
      'lambda get-function-url-config',
    ]);
    expect(calls[4]).toBe(`aws lambda update-function-code --function-name bc --image-uri ${v2.image} --architectures x86_64 ${tail}`);
    const aliasSteps = calls.filter((c) => c.includes('update-alias')).map((c) => c.split('--function-version ')[1].replace(` ${tail}`, ''));
    expect(aliasSteps).toEqual([
      '1 --routing-config {"AdditionalVersionWeights":{"2":0.1}}',
      '1 --routing-config {"AdditionalVersionWeights":{"2":0.5}}',
      '2 --routing-config {"AdditionalVersionWeights":{}}',
    ]);
    expect(calls.find((c) => c.includes('describe-alarms'))).toBe(`aws cloudwatch describe-alarms --alarm-names bc-errors --state-value ALARM ${tail}`);
    expect(calls.find((c) => c.includes('put-provisioned'))).toBe(
      `aws lambda put-provisioned-concurrency-config --provisioned-concurrent-executions 2 --function-name bc --qualifier live ${tail}`,
    );
    expect(alias()).toEqual({ FunctionVersion: '2', RoutingConfig: { AdditionalVersionWeights: {} } });
  });

  it('a redeploy Lambda publishes no new version for leaves the alias as it is', async () => {
    const { runner, calls } = scripted(async (line, args) => {
      if (line.startsWith('aws lambda get-function '))
        return { stdout: JSON.stringify({ Configuration: { PackageType: 'Image', State: 'Active', LastUpdateStatus: 'Successful' } }) };
      if (line.startsWith('aws lambda get-alias')) return { stdout: JSON.stringify({ FunctionVersion: '4' }) };
      if (line.startsWith('aws lambda publish-version')) return { stdout: JSON.stringify({ Version: '4' }) };
      if (line.startsWith('aws lambda invoke')) {
        await writeFile(args.at(-1)!, JSON.stringify({ statusCode: 200, body: JSON.stringify(goodAnswer) }));
        return { stdout: '{"StatusCode":200}' };
      }
      if (line.startsWith('aws lambda get-function-url-config'))
        return { stdout: JSON.stringify({ FunctionUrl: 'https://x.lambda-url.eu-west-1.on.aws/', AuthType: 'AWS_IAM' }) };
      if (line.startsWith('aws lambda get-provisioned')) return { exitCode: 254, stderr: 'ProvisionedConcurrencyConfigNotFoundException' };
      return {};
    });
    const logs: string[] = [];
    expect(await lambdaAdapter.deploy(target, v2, v1, ctx({ runner, logs }))).toMatchObject({ status: 'deployed' });
    expect(calls.some((c) => c.includes('update-alias'))).toBe(false);
    expect(logs).toContain('version 4 already serves alias live; nothing to move');
  });

  it('an alarm during a canary step puts the alias back on the serving version: rolled back', async () => {
    const { runner, calls, alias } = account({ serving: '1', alarmAt: 50 });
    const outcome = await lambdaAdapter.deploy(target, v2, v1, ctx({ runner }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'rollout-failed', restored: v1 });
    expect((outcome as { message: string }).message).toBe('alarm bc-errors fired with 50% of traffic on version 2; alias live is back on version 1');
    expect(alias()).toEqual({ FunctionVersion: '1', RoutingConfig: { AdditionalVersionWeights: {} } });
    expect(calls.some((c) => c.includes('function-url-config'))).toBe(false);
  });

  it('alarms that cannot be read put the alias back too: an unread alarm is no pass', async () => {
    const inner = account({ serving: '1' });
    const { runner, calls } = scripted(async (line, args, input) =>
      line.startsWith('aws cloudwatch describe-alarms')
        ? { exitCode: 254, stderr: 'An error occurred (AccessDenied) when calling the DescribeAlarms operation' }
        : inner.runner('aws', args.slice(0), { input }).then((r) => r),
    );
    const outcome = await lambdaAdapter.deploy(target, v2, v1, ctx({ runner }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'rollout-failed', restored: v1 });
    expect((outcome as { message: string }).message).toMatch(
      /^the alarms could not be read \(.*DescribeAlarms.*\) with 10% of traffic on version 2; alias live is back on version 1$/,
    );
    expect(inner.alias()).toEqual({ FunctionVersion: '1', RoutingConfig: { AdditionalVersionWeights: {} } });
    expect(calls.filter((c) => c.includes('update-alias'))).toHaveLength(2);
  });

  it('an alarm after moving all traffic at once moves it back too', async () => {
    const { runner, alias } = account({ serving: '1', alarmAt: 100 });
    const outcome = await lambdaAdapter.deploy({ ...target, canary: [100] }, v2, v1, ctx({ runner }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'rollout-failed' });
    expect(alias()?.FunctionVersion).toBe('1');
  });

  it('a failed smoke test never touches the alias: rolled back on an update, failed on a first deploy', async () => {
    for (const failing of [
      { statusCode: 500 },
      { functionError: true },
      { answer: { statusCode: 200, body: JSON.stringify({ outputs: [{ name: 'probabilities', shape: [1, 2], data: [null, 1] }] }) } },
    ]) {
      const update = account({ serving: '1', ...failing });
      const outcome = await lambdaAdapter.deploy(target, v2, v1, ctx({ runner: update.runner }));
      expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'smoke-failure', restored: v1, logs: expect.stringContaining('REPORT') });
      expect(update.calls.some((c) => c.includes('update-alias'))).toBe(false);
      const first = account(failing);
      expect(await lambdaAdapter.deploy(target, v2, null, ctx({ runner: first.runner }))).toMatchObject({
        status: 'failed',
        reason: 'smoke-failure',
        restored: null,
      });
      expect(first.alias()).toBeNull();
    }
    const messages = await Promise.all(
      [{ statusCode: 500 }, { functionError: true }].map(
        async (f) => ((await lambdaAdapter.deploy(target, v2, v1, ctx({ runner: account({ serving: '1', ...f }).runner }))) as { message: string }).message,
      ),
    );
    expect(messages[0]).toContain('inference answered HTTP 500');
    expect(messages[1]).toContain('version 2 failed the invocation (Unhandled): Runtime.ExitError');
  });

  it('an image the function cannot take (LastUpdateStatus Failed) publishes nothing and leaves the alias', async () => {
    const { runner, calls, alias } = account({ serving: '1', codeFails: true });
    const outcome = await lambdaAdapter.deploy(target, v2, v1, ctx({ runner }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'rollout-failed', restored: v1 });
    expect((outcome as { message: string }).message).toContain('ImageAccessDenied');
    expect(calls.some((c) => c.includes('publish-version'))).toBe(false);
    expect(alias()).toEqual({ FunctionVersion: '1' });
  });

  it('refuses what it cannot deploy: an image outside ECR or in another region, a .zip function (exit 2); an update under way or a split alias (exit 3)', async () => {
    const none = account();
    expect(await exitCodeOf(lambdaAdapter.deploy(target, { ...v2, image: '127.0.0.1:5000/bc@sha256:x' }, null, ctx({ runner: none.runner })))).toBe(2);
    expect(
      await exitCodeOf(lambdaAdapter.deploy(target, { ...v2, image: v2.image.replace('eu-west-1', 'us-east-1') }, null, ctx({ runner: none.runner }))),
    ).toBe(2);
    expect(none.calls).toEqual([]);
    expect(await exitCodeOf(lambdaAdapter.deploy(target, v2, null, ctx({ runner: account({ packageType: 'Zip' }).runner })))).toBe(2);
    const busy = await lambdaAdapter.deploy(target, v2, v1, ctx({ runner: account({ serving: '1', updateStatus: 'InProgress' }).runner })).catch((e) => e);
    expect(isMlopsError(busy) && busy.exitCode).toBe(3);
    expect(busy.hint).toContain('aws lambda wait function-updated-v2 --function-name bc');
    expect(await exitCodeOf(lambdaAdapter.deploy(target, v2, v1, ctx({ runner: account({ serving: '1', weights: { '3': 0.1 } }).runner })))).toBe(3);
  });

  it('a lookup AWS could not answer is an environment error, never "no function"', async () => {
    const { runner, calls } = scripted(() => ({
      exitCode: 255,
      stderr: 'Unable to locate credentials. You can configure credentials by running "aws configure".',
    }));
    const error = await lambdaAdapter.deploy(target, v2, v1, ctx({ runner })).catch((e) => e);
    expect(isMlopsError(error) && error.exitCode).toBe(3);
    expect(error.message).toContain('Unable to locate credentials');
    expect(calls).toHaveLength(1);
  });

  it('--dry-run lists every aws command, the smoke invoke included, and runs none', async () => {
    const { runner, calls } = account();
    const c = ctx({ dryRun: true, runner });
    expect((await lambdaAdapter.deploy({ ...target, functionUrl: 'NONE' }, v2, v1, c)).status).toBe('planned');
    expect(calls).toEqual([]);
    const steps = c.exec.steps.map((s) => s.command);
    expect(verbs(steps)).toEqual([
      'lambda get-function',
      'lambda create-function',
      'lambda wait',
      'lambda publish-version',
      'lambda wait',
      'lambda invoke',
      'lambda create-alias',
      'lambda get-provisioned-concurrency-config',
      'lambda get-function-url-config',
      'lambda create-function-url-config',
      'lambda add-permission',
    ]);
    expect(steps[6]).toContain(`--function-version '${PUBLISHED_VERSION}'`);
    expect(steps[10]).toBe(
      `aws lambda add-permission --function-name bc --qualifier live --statement-id mlops-function-url-public --action lambda:InvokeFunctionUrl --principal '*' --function-url-auth-type NONE ${tail}`,
    );
  });

  it('--output is refused: Lambda has no file form', () => {
    expect(lambdaAdapter.output).toBeNull();
  });

  it('status: the version the alias serves, its Function URL and the cold starts CloudWatch recorded', async () => {
    const { runner } = account({ serving: '1', url: 'https://abc123.lambda-url.eu-west-1.on.aws/' });
    expect(await lambdaAdapter.status(target, ctx({ runner }))).toMatchObject({
      deployed: true,
      version: '1.0.0',
      image: v1.image,
      health: 'ready',
      url: 'https://abc123.lambda-url.eu-west-1.on.aws/',
      detail: {
        function: 'bc',
        alias: 'live',
        functionVersion: '1',
        urlAuth: 'AWS_IAM',
        coldStart: { samples: 3, lastMs: 350, medianMs: 301.27, maxMs: 350, window: '24h' },
      },
    });
    expect(await lambdaAdapter.status(target, ctx({ runner: account().runner }))).toMatchObject({ deployed: false, health: 'not deployed' });
    expect(initDurations(`${REPORT}\nREPORT RequestId: 2 Duration: 3 ms`)).toEqual([301.27]);
  });

  it('recover: a canary split left by a deploy that died goes back to the serving version', async () => {
    const { runner, alias } = account({ serving: '1', weights: { '1': 0.1 } });
    const recovery = await lambdaAdapter.recover(target, ctx({ runner }), v1);
    expect(recovery).toMatchObject({ outcome: 'restored', serving: v1, candidate: { version: '1.0.0' } });
    expect(alias()).toEqual({ FunctionVersion: '1', RoutingConfig: { AdditionalVersionWeights: {} } });
    expect(await lambdaAdapter.recover(target, ctx({ runner }), v1)).toBeNull();
  });

  it('history --rebuild: the versions mlops published, with the one the alias serves', async () => {
    const { runner } = account({ serving: '1' });
    expect(await lambdaAdapter.recordedReleases(target, ctx({ runner }))).toEqual([
      { version: '1.0.0', image: v1.image, at: '2026-11-30T10:00:00.000+0000', serving: true },
    ]);
  });

  it("inference logs: the records CloudWatch Logs kept from the function's stdout", async () => {
    const { runner, calls } = scripted(() => ({ stdout: JSON.stringify({ events: [{ message: '{"type":"mlops.inference","id":"a"}' }] }) }));
    const logs = await lambdaAdapter.inferenceLogs(target, ctx({ runner }), new Date('2026-11-22T00:00:00Z'));
    expect(calls).toEqual([
      `aws logs filter-log-events --log-group-name /aws/lambda/bc --filter-pattern { $.type = "mlops.inference" } --start-time ${Date.parse('2026-11-22T00:00:00Z')} ${tail}`,
    ]);
    expect(logs).toEqual([{ from: 'CloudWatch Logs, function bc', text: '{"type":"mlops.inference","id":"a"}' }]);
  });

  it('config: required fields, limits and the provisioned-within-reserved rule are checked with the field named', () => {
    const base = { type: 'lambda', region: 'eu-west-1', roleArn: 'arn:aws:iam::123456789012:role/x' };
    expect(applyDefaults(validateConfig({ targets: { fn: base } }, 'mlops.config.json')).targets.fn).toMatchObject({
      alias: 'live',
      memorySizeMb: 2048,
      functionUrl: 'AWS_IAM',
    });
    for (const [bad, field] of [
      [{ memorySizeMb: 64 }, 'memorySizeMb'],
      [{ timeoutSeconds: 901 }, 'timeoutSeconds'],
      [{ alias: '12' }, 'alias'],
      [{ reservedConcurrency: 2, provisionedConcurrency: 3 }, 'provisionedConcurrency'],
      [{ functionUrl: 'PUBLIC' }, 'functionUrl'],
    ] as const) {
      expect(() => validateConfig({ targets: { fn: { ...base, ...bad } } }, 'mlops.config.json')).toThrow(`targets.fn.${field}`);
    }
  });
});

const aws = probeTool('aws', 'apt-get install awscli');

describe.skipIf(!aws.ok)(`the aws CLI accepts every planned Lambda command${aws.ok ? '' : ` (skipped: ${aws.reason})`}`, () => {
  it('parses and validates each one against the Lambda and CloudWatch service models', async () => {
    const dryRuns = [
      ...(await planArgv((c) => lambdaAdapter.deploy({ ...target, functionUrl: 'NONE', reservedConcurrency: 10, provisionedConcurrency: 1 }, v2, v1, c))),
      ...(await planArgv((c) => lambdaAdapter.status(target, c))),
      ...(await planArgv((c) => lambdaAdapter.recordedReleases(target, c))),
      ...(await planArgv((c) => lambdaAdapter.inferenceLogs(target, c, undefined))),
    ];
    // The paths a dry run leaves out (an existing function, a canary, a rollback, a recovery), from a scripted account.
    const scriptedRuns = account({ serving: '1', weights: { '1': 0.1 } });
    await lambdaAdapter.recover(target, ctx({ runner: scriptedRuns.runner }), v1);
    const update = account({ serving: '1', alarmAt: 50, url: 'https://x.lambda-url.eu-west-1.on.aws/' });
    await lambdaAdapter.deploy({ ...target, functionUrl: 'off' }, v2, v1, ctx({ runner: update.runner }));
    const ok = account({ serving: '1', url: 'https://x.lambda-url.eu-west-1.on.aws/' });
    await lambdaAdapter.deploy({ ...target, functionUrl: 'off' }, v2, v1, ctx({ runner: ok.runner }));
    const steps = [...dryRuns, ...[...scriptedRuns.calls, ...update.calls, ...ok.calls].map(splitLine)];
    const commands = new Set(steps.map((s) => `${s[0]} ${s[1]}${s[1] === 'wait' ? ` ${s[2]}` : ''}`));
    for (const expected of [
      'lambda update-function-code',
      'lambda update-alias',
      'lambda delete-function-url-config',
      'lambda add-permission',
      'cloudwatch describe-alarms',
      'lambda wait function-updated-v2',
      'lambda delete-function-concurrency',
    ])
      expect(commands).toContain(expected);
    const dir = await mkdtemp(path.join(tmpdir(), 'mlops-aws-check-'));
    try {
      const body = path.join(dir, 'request.json');
      await writeFile(body, '{}');
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
        const fixed = args.map((a) =>
          a.startsWith('fileb://') ? `fileb://${body}` : a.endsWith('answer.json') ? path.join(dir, 'answer.json') : a.replaceAll(PUBLISHED_VERSION, '7'),
        );
        // Nothing listens on port 9: a call that passed validation fails to connect (a waiter reports it as its own failure).
        const result = await run(aws.path, [...fixed, '--endpoint-url', 'http://127.0.0.1:9', '--cli-connect-timeout', '1'], { env, timeout: 60_000 }).then(
          () => ({ stderr: '' }),
          (e) => ({ stderr: String(e.stderr) }),
        );
        expect(result.stderr, `aws ${args.join(' ')}`).toMatch(/Could not connect to the endpoint URL/);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});

/** A recorded call back into its arguments (the scripted runner joins them with spaces; JSON arguments here hold none). */
function splitLine(line: string): string[] {
  const args = line.split(' ').slice(1);
  const pattern = args.indexOf('--filter-pattern');
  if (pattern >= 0) {
    const end = args.indexOf('--start-time');
    args.splice(pattern + 1, end - pattern - 1, args.slice(pattern + 1, end).join(' '));
  }
  return args;
}
