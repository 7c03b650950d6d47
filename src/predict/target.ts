import path from 'node:path';
import { IMAGE_MODELS_DIR } from '../contract/image.js';
import { rm } from 'node:fs/promises';
import type { Config } from '../config/defaults.js';
import { connectDocker } from '../docker/client.js';
import { copyFromContainer, startModelContainer, type ModelContainer } from '../docker/container.js';
import { inputError } from '../errors.js';
import { readLastBuild } from '../project/last-build.js';
import { defaultModelName } from '../model/inspect.js';
import { MODEL_FILES_LABEL } from '../model/labels.js';
import { openLocalPredictor, parseProtocol, remotePredictor, type Predictor } from './predictor.js';
import { resolveClientSecurity, type ClientSecurity, type ClientSecurityFlags } from '../protocol/client-security.js';

export interface TargetFlags extends ClientSecurityFlags {
  image?: string;
  url?: string;
  local?: boolean;
  model?: string;
  /** The model to use on a server that serves several (a Triton or KServe repository): wins over model.name. */
  modelName?: string;
  protocol?: string;
}

export interface OpenedTarget {
  mode: 'image' | 'url' | 'local';
  predictor: Predictor;
  modelName: string;
  image?: string;
  /** The server's REST base (also for /metrics); undefined for a grpc:// url. */
  url?: string;
  /** host:port of the server's gRPC endpoint, when there is one. */
  grpcAddress?: string;
  /** That endpoint speaks TLS (a grpcs:// or https:// url). */
  grpcSecure?: boolean;
  container?: ModelContainer;
  /** What the client presents to the server (token, CA, client certificate). */
  security: ClientSecurity;
  /** In-process ONNX Runtime on the image's own model file (image mode, when asked for). */
  reference?: Predictor;
  /**
   * The model file whose folder says how images and texts become its tensors: the image's own copy
   * (image mode), else the configured model. Commands read image and text holdouts through it.
   */
  modelPath: string;
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
  const protocol = parseProtocol(flags.protocol);
  const security = resolveClientSecurity(flags, options.env, options.cwd);
  if (protocol && flags.local) throw inputError('--protocol goes with --image or --url, not --local');
  const configuredModel = flags.model ? path.resolve(options.cwd, flags.model) : path.resolve(projectDir, config.model.path);
  const configuredName = flags.modelName || config.model.name || defaultModelName(configuredModel);

  if (flags.local) {
    const predictor = await openLocalPredictor(path.relative(options.cwd, configuredModel) || configuredModel, configuredName, options.cwd);
    return { mode: 'local', predictor, modelName: predictor.modelName, security, modelPath: configuredModel, close: () => predictor.close() };
  }
  const opening = { protocol, security, configuredModel };
  if (flags.url !== undefined) return await openUrl(flags.url, options, opening);
  return await openImage(options, { ...opening, configuredName });
}

/** What openTarget settled before choosing where the model runs. */
interface Opening {
  protocol: ReturnType<typeof parseProtocol>;
  security: ClientSecurity;
  /** The model file the config or --model names. */
  configuredModel: string;
}

/** --url: a server already running, over REST or gRPC. */
async function openUrl(given: string, options: OpenTargetOptions, { protocol, security, configuredModel }: Opening): Promise<OpenedTarget> {
  let url: URL;
  try {
    url = new URL(given);
  } catch {
    throw inputError(`--url ${given}: not a URL`, 'pass the server base, e.g. http://127.0.0.1:8080, or grpc://127.0.0.1:8081 (https:// and grpcs:// for TLS)');
  }
  if (!['http:', 'https:', 'grpc:', 'grpcs:'].includes(url.protocol)) throw inputError(`--url ${given}: expected http://, https://, grpc:// or grpcs://`);
  // Only a name the config gives counts here: otherwise a single-model server is asked for its model.
  const modelName = options.flags.modelName || options.config.model.name || undefined;
  const predictor = await remotePredictor({ url: url.href, modelName, protocol, security });
  const grpc = url.protocol === 'grpc:' || url.protocol === 'grpcs:';
  return {
    mode: 'url',
    predictor,
    modelName: predictor.modelName,
    url: grpc ? undefined : url.href,
    grpcAddress: grpc ? url.host : undefined,
    grpcSecure: url.protocol === 'grpcs:' || url.protocol === 'https:',
    security,
    modelPath: configuredModel,
    close: () => predictor.close(),
  };
}

/** A model image's models, as its labels list them (name, version, role). */
function modelsInImage(labels: Record<string, string>): { labelled?: string; several?: { name: string; version: string; shadow: boolean }[] } {
  const labelled = labels['mlops.model.name'];
  // An image of several models lists them in mlops.models; mlops.model.* describe the first.
  const several = labels['mlops.models'] ? (JSON.parse(labels['mlops.models']) as { name: string; version: string; shadow: boolean }[]) : undefined;
  return { labelled, several };
}

/** --image, or the last build's: the image run in a container, asked over its own server. */
async function openImage(
  options: OpenTargetOptions,
  { protocol, security, configuredModel, configuredName }: Opening & { configuredName: string },
): Promise<OpenedTarget> {
  const { flags } = options;
  const image = flags.image ?? (await readLastBuild(options.projectDir)).tags[0];
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
    const { labelled, several } = modelsInImage(container.labels);
    const served = several ? [...new Set(several.map((m) => m.name))] : labelled ? [labelled] : [];
    if (flags.modelName && served.length > 0 && !served.includes(flags.modelName))
      throw inputError(
        `--model-name ${flags.modelName}: image ${image} serves ${served.map((n) => `'${n}'`).join(', ')}`,
        `pass one of ${served.join(', ')}, or leave it out`,
      );
    const modelName = flags.modelName || labelled || configuredName;
    // A model with versions side by side is judged on its first serving version (the one its config's path names), not on the split.
    const versions = several?.filter((m) => m.name === modelName) ?? [];
    const version = versions.length > 1 ? versions.find((m) => !m.shadow)?.version : undefined;
    const predictor = await remotePredictor({ url: container.url, grpcAddress: container.grpcAddress, modelName, modelVersion: version, protocol, security });
    opened.push(predictor);
    if (modelName === labelled) withDimensionNames(predictor, container.labels['mlops.model.inputs']);
    let reference: Predictor | undefined;
    let modelPath = configuredModel;
    // The model's folder as the image holds it: its processing files (an export folder's) come along.
    const takesRaw = Boolean(container.labels[MODEL_FILES_LABEL]) || several !== undefined;
    if (options.withReference || takesRaw) {
      const served = several?.find((m) => m.name === modelName && !m.shadow)?.version;
      extracted = await copyFromContainer(docker, container.id, served === undefined ? '/app/model' : `${IMAGE_MODELS_DIR}/${modelName}/${served}`);
      modelPath = path.join(extracted, 'model.onnx');
    }
    if (options.withReference) {
      reference = await openLocalPredictor(modelPath, modelName);
      opened.push(reference);
    }
    return {
      mode: 'image',
      predictor,
      modelName,
      image,
      url: container.url,
      grpcAddress: container.grpcAddress,
      container,
      reference,
      security,
      modelPath,
      close: cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/** The image's labelled signature names the symbolic dimensions its server reports only as -1. */
function withDimensionNames(predictor: Predictor, label: string | undefined): void {
  let labelled: { name?: string; dims?: (number | string)[] }[];
  try {
    labelled = JSON.parse(label ?? '[]') as typeof labelled;
  } catch {
    return;
  }
  for (const input of predictor.inputs) {
    const dims = labelled.find((l) => l.name === input.name)?.dims;
    if (Array.isArray(dims) && dims.length === input.shape.length) input.dims = dims;
  }
}
