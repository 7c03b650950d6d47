/**
 * A config of several models (`models`) seen one model at a time: the commands that judge a model
 * (test, bench, monitor, explain) run once per model with that model's own sections.
 */
import { inputError } from '../errors.js';
import type { Config, ModelEntry } from './defaults.js';

export interface SelectedModel {
  /** The model's name; empty for a one-model config whose name comes from its file. */
  name: string;
  /** The config as this model sees it: its own model, test, monitor, workers and batching. */
  config: Config;
  /** One of several: its commands' reports name it. */
  entry?: ModelEntry;
}

/** The config one of `models` sees: its first serving version as `model`, its own sections over the top-level ones. */
export function configForModel(config: Config, entry: ModelEntry): Config {
  return {
    ...config,
    model: {
      path: entry.path,
      name: entry.name,
      version: entry.version,
      shapes: entry.shapes,
      inputData: entry.inputData,
      preprocess: entry.preprocess,
      postprocess: entry.postprocess,
    },
    models: [],
    test: entry.test,
    monitor: entry.monitor,
    server: { ...config.server, workers: entry.workers, batching: entry.batching },
  };
}

/**
 * The models a command runs over: the one `model`, every one of `models`, or the one `--model-name`
 * picks from them. A name that is not among `models` is exit 2 naming those there are.
 */
export function selectModels(config: Config, modelName?: string): SelectedModel[] {
  if (config.models.length === 0) return [{ name: modelName || config.model.name, config }];
  const chosen = modelName ? config.models.filter((m) => m.name === modelName) : config.models;
  if (chosen.length === 0)
    throw inputError(`--model-name ${modelName}: the config has no such model`, `use one of ${config.models.map((m) => m.name).join(', ')}`);
  return chosen.map((entry) => ({ name: entry.name, config: configForModel(config, entry), entry }));
}

/** `report.html` for model `bc` of several: `report.bc.html`; one model: the path as given. */
export function perModelPath(file: string, name: string, several: boolean): string {
  if (!several) return file;
  const dot = file.lastIndexOf('.');
  return dot > file.lastIndexOf('/') ? `${file.slice(0, dot)}.${name}${file.slice(dot)}` : `${file}.${name}`;
}

/**
 * Where `mlops build` keeps the reference profile `monitor --prometheus` and `--emit` default to: one
 * file for a config of one model, one per model (its first serving version's) for a config of several.
 */
export function lastBuildReference(name: string | undefined): { relative: string; shown: string } {
  const relative = name ? `.mlops/reference-profiles/${name}.json` : '.mlops/reference-profile.json';
  return { relative, shown: `${relative} (the last build)` };
}
