import { loadConfig, type LoadedConfig } from '../config/load.js';
import type { Reporter } from '../ui/reporter.js';

export interface GlobalOptions {
  config?: string;
  json: boolean;
  verbose: boolean;
  color: boolean;
}

/** What every command handler gets: where it runs, how it reports, and the config (loaded once, on demand). */
export interface CommandContext {
  cwd: string;
  env: NodeJS.ProcessEnv;
  reporter: Reporter;
  globals: GlobalOptions;
  config(): Promise<LoadedConfig>;
}

export function createContext(cwd: string, env: NodeJS.ProcessEnv, reporter: Reporter, globals: GlobalOptions): CommandContext {
  let loaded: Promise<LoadedConfig> | undefined;
  return {
    cwd,
    env,
    reporter,
    globals,
    config: () => (loaded ??= loadConfig({ cwd, configPath: globals.config })),
  };
}
