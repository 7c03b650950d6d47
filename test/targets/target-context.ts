import { applyDefaults } from '../../src/config/normalize.js';
import { isMlopsError } from '../../src/errors.js';
import type { AzureSeam } from '../../src/targets/types.js';
import { createExecSeam, type Runner } from '../../src/targets/exec.js';
import { configuredSampleInputs } from '../../src/targets/smoke.js';
import type { DeployContext, Release } from '../../src/targets/types.js';

export const signature = {
  inputs: [{ name: 'features', datatype: 'FP32' as const, shape: [-1, 30] }],
  outputs: [{ name: 'probabilities', datatype: 'FP32' as const, shape: [-1, 2] }],
};
export const goodAnswer = { model_name: 'bc', outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [1, 2], data: [0.25, 0.75] }] };

/** Two releases of the model "bc" in one repository. */
export function releases(repository: string): [Release, Release] {
  const v1: Release = {
    version: '1.0.0',
    image: `${repository}@sha256:${'a'.repeat(64)}`,
    digest: `sha256:${'a'.repeat(64)}`,
    modelName: 'bc',
    modelSha256: 'f'.repeat(64),
    signature,
  };
  return [v1, { ...v1, version: '1.1.0', image: `${repository}@sha256:${'b'.repeat(64)}`, digest: `sha256:${'b'.repeat(64)}` }];
}

/** A deploy context for target "prod" of the model "bc", with a runner standing in for a cloud CLI. */
export function targetContext(
  options: {
    dryRun?: boolean;
    runner?: Runner;
    smoke?: DeployContext['smoke'];
    outputDir?: string;
    logs?: string[];
    env?: NodeJS.ProcessEnv;
    azure?: AzureSeam;
  } = {},
): DeployContext {
  return {
    targetName: 'prod',
    config: applyDefaults({ model: { name: 'bc' } }),
    projectDir: '/tmp',
    env: options.env ?? {},
    exec: createExecSeam({ dryRun: Boolean(options.dryRun), runner: options.runner }),
    azure: options.azure ?? { credential: () => ({ getToken: async () => ({ token: 'test-token', expiresOnTimestamp: Date.now() + 3_600_000 }) }) },
    dryRun: Boolean(options.dryRun),
    outputDir: options.outputDir,
    log: (line) => options.logs?.push(line),
    sampleInputs: configuredSampleInputs(applyDefaults({}), '/tmp'),
    smoke: options.smoke ?? (async () => undefined),
    checkpoint: () => undefined,
  };
}

export const exitCodeOf = async (promise: Promise<unknown>) =>
  promise.then(
    () => 0,
    (error) => (isMlopsError(error) ? error.exitCode : -1),
  );

/** The argument vectors a dry run would execute. */
export async function planArgv(action: (c: DeployContext) => Promise<unknown>): Promise<string[][]> {
  const argv: string[][] = [];
  const c = targetContext({ dryRun: true });
  const seam = c.exec;
  c.exec = {
    ...seam,
    dryRun: true,
    steps: seam.steps,
    run: async (command, args, options) => (argv.push(args), seam.run(command, args, options)),
    record: (line, input) => seam.record(line, input),
    background: (command, args) => seam.background(command, args),
  };
  await action(c);
  return argv;
}
