import type { Config, TargetConfig } from '../config/defaults.js';
import { inputError } from '../errors.js';
import { azureMLAdapter } from './azureml.js';
import { cloudRunAdapter } from './cloudrun.js';
import { containerAppAdapter } from './containerapp.js';
import { kserveAdapter } from './kserve.js';
import { kubernetesAdapter } from './kubernetes.js';
import { lambdaAdapter } from './lambda.js';
import { localAdapter } from './local.js';
import { sageMakerAdapter } from './sagemaker.js';
import type { TargetAdapter } from './types.js';
import { vertexAdapter } from './vertex.js';

/** Every adapter, by target type. Adding one means a file and a line here; commands do not change. */
const ADAPTERS: { [K in TargetConfig['type']]: TargetAdapter<Extract<TargetConfig, { type: K }>> } = {
  local: localAdapter,
  kubernetes: kubernetesAdapter,
  cloudrun: cloudRunAdapter,
  kserve: kserveAdapter,
  sagemaker: sageMakerAdapter,
  vertex: vertexAdapter,
  lambda: lambdaAdapter,
  azureml: azureMLAdapter,
  containerapp: containerAppAdapter,
};

/** The target types `--output <dir>` writes files for. */
export const OUTPUT_TYPES = Object.values(ADAPTERS)
  .filter((a) => a.output !== null)
  .map((a) => a.type);

export function selectTarget(config: Config, name: string | undefined): { name: string; target: TargetConfig; adapter: TargetAdapter } {
  const names = Object.keys(config.targets);
  if (!name)
    throw inputError(
      'no target given',
      names.length ? `pass --target ${names.join(' | ')}` : 'define one under "targets" in config (see mlops.config.example.json)',
    );
  const target = config.targets[name];
  if (!target) {
    throw inputError(
      `unknown target '${name}'`,
      names.length ? `the targets in config are: ${names.join(', ')}` : 'define it under "targets" in config (see mlops.config.example.json)',
    );
  }
  return { name, target, adapter: ADAPTERS[target.type] };
}
