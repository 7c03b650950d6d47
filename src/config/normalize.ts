import { DEFAULTS, MODEL_ENTRY_DEFAULTS, TARGET_DEFAULTS, type Config, type ModelEntry, type TargetConfig } from './defaults.js';
import type { RawConfig } from './schema.js';

/**
 * Defaults first, the user's values over them, section by section. A config validateConfig parsed holds
 * the schema's defaults already (what is merged here then changes nothing); tests and the server's entry
 * hand in configs that were never parsed. The defaults that hang on other fields are only here: a config of
 * several models has no `model` section, and each of `models` takes the top-level sections where it is
 * silent and its first serving version as its path and version.
 */
export function applyDefaults(raw: RawConfig): Config {
  const merge = <T extends object>(defaults: T, given: object | undefined): T => {
    const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
    for (const [key, value] of Object.entries(given ?? {})) {
      if (value === undefined) continue;
      const base = (defaults as Record<string, unknown>)[key];
      const isSection = base && typeof base === 'object' && !Array.isArray(base) && Object.keys(base).length > 0;
      out[key] = isSection ? merge(base, value as object) : value;
    }
    return out as T;
  };
  const { $schema: _ignored, targets, models, ...rest } = raw as RawConfig & { $schema?: string };
  const config = merge(structuredClone(DEFAULTS), rest);
  config.models = (models ?? []).map((m): ModelEntry => {
    const versions = (m.versions ?? [{ version: m.version ?? MODEL_ENTRY_DEFAULTS.version, path: m.path! }]).map((v) => ({
      version: v.version,
      path: v.path,
      weight: 'weight' in v && v.weight !== undefined ? v.weight : MODEL_ENTRY_DEFAULTS.weight,
      shadow: 'shadow' in v && v.shadow !== undefined ? v.shadow : MODEL_ENTRY_DEFAULTS.shadow,
    }));
    const first = versions.find((v) => !v.shadow) ?? versions[0];
    return {
      name: m.name,
      path: first.path,
      version: first.version,
      versions,
      shapes: m.shapes ?? config.model.shapes,
      inputData: m.inputData ?? config.model.inputData,
      preprocess: m.preprocess ?? config.model.preprocess,
      postprocess: m.postprocess ?? config.model.postprocess,
      workers: m.workers ?? config.server.workers,
      batching: merge(config.server.batching, m.batching),
      // The top-level sections are every model's defaults.
      test: merge(structuredClone(config.test), m.test),
      monitor: merge(structuredClone(config.monitor), m.monitor),
    };
  });
  config.targets = Object.fromEntries(
    Object.entries(targets ?? {}).map(([name, target]) => [name, merge(structuredClone(TARGET_DEFAULTS[target.type]) as TargetConfig, target)]),
  );
  return config;
}
