import path from 'node:path';
import type { Config } from '../config/defaults.js';
import { defaultModelName } from '../model/inspect.js';

/** image.repository, or the model's name: where builds and versions of this model live. */
export function configuredRepository(config: Config, projectDir: string): string {
  return config.image.repository || config.model.name || defaultModelName(path.resolve(projectDir, config.model.path));
}
