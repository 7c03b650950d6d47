/** Two releases, a runner scripted by rules, and a deploy context: what the kubernetes and cloudrun plan tests deploy with. */
import { defaultAzureSeam } from '../../src/targets/azure.js';
import { TARGET_DEFAULTS, type KubernetesTarget } from '../../src/config/defaults.js';
import { applyDefaults } from '../../src/config/normalize.js';
import { createExecSeam, type Runner } from '../../src/targets/exec.js';
import { configuredSampleInputs } from '../../src/targets/smoke.js';
import type { DeployContext, Release } from '../../src/targets/types.js';

export const v1: Release = {
  version: '1.0.0',
  image: '127.0.0.1:5000/team/bc@sha256:' + 'a'.repeat(64),
  digest: 'sha256:' + 'a'.repeat(64),
  modelName: 'bc',
  modelSha256: 'f'.repeat(64),
};
export const v2: Release = { ...v1, version: '1.1.0', image: '127.0.0.1:5000/team/bc@sha256:' + 'b'.repeat(64), digest: 'sha256:' + 'b'.repeat(64) };

/** Answers as kubectl or gcloud would, by the first rule whose pattern matches the command line. */
export function scripted(rules: [RegExp, { exitCode?: number; stdout?: string; stderr?: string }][]): { runner: Runner; calls: string[] } {
  const calls: string[] = [];
  const runner: Runner = async (command, args) => {
    const line = [command, ...args].join(' ');
    calls.push(line);
    const rule = rules.find(([pattern]) => pattern.test(line));
    return { exitCode: rule?.[1].exitCode ?? 0, stdout: rule?.[1].stdout ?? '', stderr: rule?.[1].stderr ?? '' };
  };
  return { runner, calls };
}

export function ctx(options: { dryRun?: boolean; runner?: Runner; smoke?: DeployContext['smoke']; outputDir?: string } = {}): DeployContext {
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

export const k8s: KubernetesTarget = { ...TARGET_DEFAULTS.kubernetes, context: 'prod-cluster', namespace: 'ml' };
