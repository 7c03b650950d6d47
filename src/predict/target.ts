import path from 'node:path';
import { rm } from 'node:fs/promises';
import type { Config } from '../config/defaults.js';
import { connectDocker } from '../docker/client.js';
import { copyFromContainer, startModelContainer, type ModelContainer } from '../docker/container.js';
import { inputError } from '../errors.js';
import { readLastBuild } from '../image/last-build.js';
import { defaultModelName } from '../model/inspect.js';
import { openLocalPredictor, remotePredictor, type Predictor } from './predictor.js';

export interface TargetFlags {
  image?: string;
  url?: string;
  local?: boolean;
  model?: string;
}

export interface OpenedTarget {
  mode: 'image' | 'url' | 'local';
  predictor: Predictor;
  modelName: string;
  image?: string;
  url?: string;
  container?: ModelContainer;
  /** In-process ONNX Runtime on the image's own model file (image mode, when asked for). */
  reference?: Predictor;
  close(): Promise<void>;
}

export interface OpenTargetOptions {
  flags: TargetFlags;
  cwd: string;
  projectDir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  /** Image mode only: also load the image's model in-process, for parity checks. */
  withReference?: boolean;
  purpose: string;
}

/** Where a command runs the model: the last built image (default), --image, --url or --local. */
export async function openTarget(options: OpenTargetOptions): Promise<OpenedTarget> {
  const { flags, config, projectDir } = options;
  const chosen = [flags.image !== undefined, flags.url !== undefined, Boolean(flags.local)].filter(Boolean).length;
  if (chosen > 1) throw inputError('--image, --url and --local exclude each other', 'pick one place to run the model');
  const configuredModel = flags.model ? path.resolve(options.cwd, flags.model) : path.resolve(projectDir, config.model.path);
  const configuredName = config.model.name || defaultModelName(configuredModel);

  if (flags.local) {
    const predictor = await openLocalPredictor(path.relative(options.cwd, configuredModel) || configuredModel, configuredName, options.cwd);
    return { mode: 'local', predictor, modelName: predictor.modelName, close: () => predictor.close() };
  }
  if (flags.url !== undefined) {
    let url: URL;
    try {
      url = new URL(flags.url);
    } catch {
      throw inputError(`--url ${flags.url}: not a URL`, 'pass the server base, e.g. http://127.0.0.1:8080');
    }
    const predictor = await remotePredictor(url.href, configuredName);
    return { mode: 'url', predictor, modelName: configuredName, url: url.href, close: () => predictor.close() };
  }

  const image = flags.image ?? (await readLastBuild(projectDir)).tags[0];
  const docker = await connectDocker(options.env);
  const container = await startModelContainer(docker, image, { purpose: options.purpose });
  const opened: Predictor[] = [];
  let extracted: string | undefined;
  const cleanup = async () => {
    for (const p of opened) await p.close().catch(() => undefined);
    await container.remove();
    if (extracted) await rm(path.dirname(extracted), { recursive: true, force: true });
  };
  try {
    const modelName = container.labels['mlops.model.name'] ?? configuredName;
    const predictor = await remotePredictor(container.url, modelName);
    opened.push(predictor);
    let reference: Predictor | undefined;
    if (options.withReference) {
      extracted = await copyFromContainer(docker, container.id, '/app/model/model.onnx');
      reference = await openLocalPredictor(extracted, modelName);
      opened.push(reference);
    }
    return {
      mode: 'image',
      predictor,
      modelName,
      image,
      url: container.url,
      container,
      reference,
      close: cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
