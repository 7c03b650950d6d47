import { DEFAULTS, TARGET_DEFAULTS, type Config, type TargetConfig } from './defaults.js';
import type { RawConfig } from './schema.js';

/** Defaults first, the user's values over them, section by section. */
export function applyDefaults(raw: RawConfig): Config {
  const merge = <T extends object>(defaults: T, given: object | undefined): T => {
    const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
    for (const [key, value] of Object.entries(given ?? {})) {
      if (value === undefined) continue;
      const base = (defaults as Record<string, unknown>)[key];
      const isSection = base && typeof base === 'object' && !Array.isArray(base) && Object.keys(base).length > 0;
      out[key] = isSection ? merge(base as object, value as object) : value;
    }
    return out as T;
  };
  const { $schema: _ignored, targets, ...rest } = raw as RawConfig & { $schema?: string };
  const config = merge(structuredClone(DEFAULTS) as unknown as Config, rest);
  config.targets = Object.fromEntries(
    Object.entries(targets ?? {}).map(([name, target]) => [name, merge(structuredClone(TARGET_DEFAULTS[target.type]) as TargetConfig, target)]),
  );
  return config;
}
