import path from 'node:path';
import { IMAGE_MODELS_DIR } from '../contract/image.js';
import { rm } from 'node:fs/promises';
import type { Config } from '../config/defaults.js';
import { connectDocker } from '../docker/client.js';
import { copyFromContainer, startModelContainer, type ModelContainer } from '../docker/container.js';
import { inputError } from '../errors.js';
import { readLastBuild } from '../project/last-build.js';
import { defaultModelName } from '../model/inspect.js';
import { MODELS_LABEL, MODEL_FILES_LABEL, MODEL_INPUTS_LABEL, MODEL_NAME_LABEL } from '../model/labels.js';
import { openLocalPredictor, remotePredictor, type Predictor, type Protocol } from './predictor.js';
import type { ClientSecurity } from '../protocol/client-security.js';

/** In-process ONNX Runtime on the model file. */
export interface LocalPlace {
  kind: 'local';
}

/** A server already running: its REST base (http://, https://) or its gRPC endpoint (grpc://, grpcs://). */
export interface UrlPlace {
  kind: 'url';
  url: URL;
  /** How to speak to it (default: what the url says, and REST JSON over http). */
  protocol?: Protocol;
  /** What the client presents to the server (token, CA, client certificate). */
  security: ClientSecurity;
}

/** An image run in a container, asked over its own server. */
export interface ImagePlace {
  kind: 'image';
  /** undefined: the last build's image. */
  image?: string;
  protocol?: Protocol;
  security: ClientSecurity;
}

/** Where a command runs the model. */
export type ModelPlace = LocalPlace | UrlPlace | ImagePlace;

/** The model a command runs, and where. */
export interface TargetOptions {
  where: ModelPlace;
  /**
   * The model file (absolute): what runs in-process; elsewhere, the folder whose processing files say how
   * images and texts become tensors (image mode: unless the image's own copy is taken), and the default model name.
   */
  modelFile: string;
  /** The model to use on a server that serves several (a Triton or KServe repository): wins over model.name. */
  modelName?: string;
}

/** What a command that runs a model over a holdout takes: the project, where the model runs, the holdout. */
export interface HoldoutRun {
  cwd: string;
  projectDir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  /** Where the model runs, and which. */
  target: TargetOptions;
  /** The holdout (a path against cwd, which the report names as given), and for an .npy one its labels file. */
  holdoutFile: string;
  labelsFile?: string;
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
  /** What the client presents to the server (token, CA, client certificate); nothing in-process. */
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
  target: TargetOptions;
  cwd: string;
  projectDir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  /** Image mode only: also load the image's model in-process, for parity checks. */
  withReference?: boolean;
  purpose: string;
}

/** --model-name, else model.name, else the model file's own name. */
const configuredName = ({ target, config }: OpenTargetOptions) => target.modelName || config.model.name || defaultModelName(target.modelFile);

/** Where a command runs the model: in-process, a server at a url, or an image (the last built, by default). */
export async function openTarget(options: OpenTargetOptions): Promise<OpenedTarget> {
  const { where, modelFile } = options.target;
  if (where.kind === 'url') return await openUrl(where, options);
  if (where.kind === 'image') return await openImage(where, options);
  const predictor = await openLocalPredictor(path.relative(options.cwd, modelFile) || modelFile, configuredName(options), options.cwd);
  return { mode: 'local', predictor, modelName: predictor.modelName, security: {}, modelPath: modelFile, close: () => predictor.close() };
}

/** --url: a server already running, over REST or gRPC. */
async function openUrl({ url, protocol, security }: UrlPlace, options: OpenTargetOptions): Promise<OpenedTarget> {
  // Only a name the config gives counts here: otherwise a single-model server is asked for its model.
  const modelName = options.target.modelName || options.config.model.name || undefined;
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
    modelPath: options.target.modelFile,
    close: () => predictor.close(),
  };
}

/** A model image's models, as its labels list them (name, version, role). */
function modelsInImage(labels: Record<string, string>): { labelled?: string; several?: { name: string; version: string; shadow: boolean }[] } {
  const labelled = labels[MODEL_NAME_LABEL];
  // An image of several models lists them in mlops.models; mlops.model.* describe the first.
  const several = labels[MODELS_LABEL] ? (JSON.parse(labels[MODELS_LABEL]) as { name: string; version: string; shadow: boolean }[]) : undefined;
  return { labelled, several };
}

/** --image, or the last build's: the image run in a container, asked over its own server. */
async function openImage(where: ImagePlace, options: OpenTargetOptions): Promise<OpenedTarget> {
  const { protocol, security } = where;
  const wanted = options.target.modelName;
  const image = where.image ?? (await readLastBuild(options.projectDir)).tags[0];
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
    if (wanted && served.length > 0 && !served.includes(wanted))
      throw inputError(
        `--model-name ${wanted}: image ${image} serves ${served.map((n) => `'${n}'`).join(', ')}`,
        `pass one of ${served.join(', ')}, or leave it out`,
      );
    const modelName = wanted || labelled || configuredName(options);
    // A model with versions side by side is judged on its first serving version (the one its config's path names), not on the split.
    const versions = several?.filter((m) => m.name === modelName) ?? [];
    const version = versions.length > 1 ? versions.find((m) => !m.shadow)?.version : undefined;
    const predictor = await remotePredictor({ url: container.url, grpcAddress: container.grpcAddress, modelName, modelVersion: version, protocol, security });
    opened.push(predictor);
    if (modelName === labelled) withDimensionNames(predictor, container.labels[MODEL_INPUTS_LABEL]);
    let reference: Predictor | undefined;
    let modelPath = options.target.modelFile;
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
