import { createWriteStream } from 'node:fs';
import { copyFile, cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import tar from 'tar-fs';
import { packEntries, treeEntries } from '../oci/layer.js';
import { IMAGE_MODELS_DIR, IMAGE_REPOSITORY_FILE, IMAGE_RUNTIME } from '../contract/image.js';
import { dockerfileString } from '../docker/dockerfile.js';
import { packageDir } from '../packages.js';
import { MlopsError, ExitCode, inputError } from '../errors.js';
import { PROFILE_IMAGE_PATH } from '../monitor/profile.js';
import { PROCESSING_FILE } from '../processing/plan.js';

/** The package's own folder, from src/image or dist/image alike. */
const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export const PLATFORMS = { 'linux/amd64': 'x64', 'linux/arm64': 'arm64' } as const;
export type Platform = keyof typeof PLATFORMS;

export interface ContextInput {
  modelPath: string;
  /** External data files, relative to the model's folder; they go beside it in the image. */
  externalData?: string[];
  modelSha256: string;
  modelName: string;
  modelVersion: string;
  baseImage: string;
  platform: Platform;
  port: number;
  /** 0: no gRPC. */
  grpcPort: number;
  labels: Record<string, string>;
  /** The reference profile's JSON, placed beside the model. */
  referenceProfile: string;
  /** Server settings from config that the image carries as environment variables (see SERVER_ENV). */
  serverEnv: Record<string, string>;
  /** Several models (or versions): each its own layer under /app/models/{name}/{version}/, with the repository file; the fields above are then the first one's. */
  repository?: ImageModel[];
  /** The model folder's processing files (config.json, preprocessor_config.json, tokenizer.json...), copied beside the model. */
  modelFiles?: string[];
  /** The config's model.preprocess and model.postprocess, written beside the model as mlops.processing.json when set. */
  processing?: object;
  /** A model takes images: sharp and libvips for the platform go in a layer of their own. */
  imaging?: boolean;
}

/** One model version of an image of several. */
export interface ImageModel {
  name: string;
  version: string;
  modelPath: string;
  externalData: string[];
  sha256: string;
  referenceProfile: string;
  /** As ContextInput's, for this version. */
  modelFiles?: string[];
  processing?: object;
  weight: number;
  shadow: boolean;
  workers: number;
  batching: { enabled: boolean; maxBatchSize: number; maxWaitMs: number };
}

/** One layer: a folder of the context and the folder it fills in the image, or a tar of the context unpacked at /. */
export type RecipeLayer = { kind: 'folder'; source: string; target: string; comment: string } | { kind: 'tar'; source: string; comment: string };

/** The image as both builders make it from the context: its layers in order, environment, ports and labels. */
export interface ImageRecipe {
  platform: Platform;
  layers: RecipeLayer[];
  /** In order, after the base image's. */
  env: [string, string][];
  exposedPorts: number[];
  labels: Record<string, string>;
}

export function renderTemplate(template: string, values: Record<string, string | number>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (whole, key: string) => {
    if (!(key in values)) throw new Error(`template value ${key} is missing`);
    return String(values[key]);
  });
}

async function copyTree(from: string, to: string, keep: (relative: string) => boolean, base = from): Promise<void> {
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    const relative = path.relative(base, source);
    if (entry.isDirectory()) await copyTree(source, path.join(to, entry.name), keep, base);
    else if (keep(relative)) {
      await mkdir(to, { recursive: true });
      await copyFile(source, path.join(to, entry.name));
    }
  }
}

/** ONNX Runtime for one platform into runtime/node_modules: JavaScript, binding and libonnxruntime, no other node_modules. */
async function copyRuntime(dir: string, arch: string): Promise<void> {
  const ortNode = packageDir('onnxruntime-node');
  const ortCommon = packageDir('onnxruntime-common', ortNode);
  const runtime = path.join(dir, 'runtime', 'node_modules');
  const binaries = path.join('bin', 'napi-v6', 'linux', arch);
  // JavaScript and the package.json files that say how Node should load it (dist/cjs has its own).
  const isCode = (rel: string) => rel.endsWith('.js') || path.basename(rel) === 'package.json';
  await copyTree(
    ortNode,
    path.join(runtime, 'onnxruntime-node'),
    (rel) => rel === 'package.json' || (rel.startsWith(`dist${path.sep}`) && isCode(rel)) || rel.startsWith(binaries + path.sep),
  );
  await copyTree(
    ortCommon,
    path.join(runtime, 'onnxruntime-common'),
    (rel) => rel === 'package.json' || (rel.startsWith(path.join('dist', 'cjs') + path.sep) && isCode(rel)),
  );
}

/** The bundled server, its worker, gRPC's .proto files and the health check into server/. */
async function copyServer(dir: string): Promise<void> {
  const dist = path.join(PACKAGE_ROOT, 'dist');
  const bundle = path.join(dist, 'server.bundle.mjs');
  await mkdir(path.join(dir, 'server'), { recursive: true });
  try {
    await copyFile(bundle, path.join(dir, 'server', 'server.mjs'));
    // Its worker threads, and the .proto files gRPC loads at start.
    await copyFile(path.join(dist, 'inference-worker.mjs'), path.join(dir, 'server', 'inference-worker.mjs'));
    // The batch mode (MLOPS_MODE=batch) and its worker threads.
    await copyFile(path.join(dist, 'batch.bundle.mjs'), path.join(dir, 'server', 'batch.mjs'));
    await copyFile(path.join(dist, 'batch-worker.mjs'), path.join(dir, 'server', 'batch-worker.mjs'));
    await copyFile(path.join(dist, 'open_inference_grpc.proto'), path.join(dir, 'server', 'open_inference_grpc.proto'));
    await cp(path.join(dist, 'grpc-health-check'), path.join(dir, 'server', 'grpc-health-check'), { recursive: true });
  } catch {
    throw new MlopsError(`the bundled server is missing: ${bundle}`, {
      exitCode: ExitCode.internal,
      hint: 'run `npm run build` in the mlops package',
    });
  }
  await copyFile(path.join(PACKAGE_ROOT, 'templates', 'healthcheck.mjs'), path.join(dir, 'server', 'healthcheck.mjs'));
}

/**
 * The models of an image of several: each version a layer of its own under /app/models/{name}/{version}/,
 * then the repository file that lists them.
 */
async function repositoryLayers(dir: string, repository: ImageModel[]): Promise<RecipeLayer[]> {
  const layers: RecipeLayer[] = [];
  const entries = [];
  await mkdir(path.join(dir, 'models'), { recursive: true });
  const stage = await mkdtemp(path.join(tmpdir(), 'mlops-models-'));
  try {
    for (const m of repository) {
      const folder = path.posix.join('models', m.name, m.version);
      await copyModel(path.join(stage, m.name, m.version), folder, m.modelPath, m.externalData, m.referenceProfile, m.modelFiles ?? [], m.processing);
      // One layer per version, ADDed from a tar whose every entry (the parent folders too) has fixed times
      // and owners: COPY stamps the folders it creates with the build's time, so a layer built again after
      // an earlier model changed would get a new digest; this one keeps it.
      const archive = `${m.name}-${m.version}.tar`;
      await pipeline(
        packEntries(await treeEntries(path.join(stage, m.name, m.version, folder), `app/${folder}/`)),
        createWriteStream(path.join(dir, 'models', archive)),
      );
      layers.push({ kind: 'tar', source: `models/${archive}`, comment: `${m.name} version ${m.version}.` });
      entries.push({
        name: m.name,
        version: m.version,
        path: `${m.name}/${m.version}/model.onnx`,
        sha256: m.sha256,
        profile: `${m.name}/${m.version}/${path.basename(PROFILE_IMAGE_PATH)}`,
        weight: m.weight,
        shadow: m.shadow,
        workers: m.workers,
        batching: m.batching,
      });
    }
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
  await mkdir(path.join(dir, 'repository'), { recursive: true });
  await writeFile(path.join(dir, 'repository', 'repository.json'), JSON.stringify({ models: entries }, null, 2) + '\n');
  layers.push({ kind: 'folder', source: 'repository', target: `${IMAGE_MODELS_DIR}/`, comment: 'The repository file that lists them.' });
  return layers;
}

/**
 * Lays out everything the Dockerfile copies: ONNX Runtime for one platform
 * (JavaScript, binding and libonnxruntime, no other node_modules), the bundled
 * server, the health check and the model.
 */
export async function assembleContext(dir: string, input: ContextInput): Promise<ImageRecipe> {
  const arch = PLATFORMS[input.platform];
  if (!arch) throw inputError(`unsupported platform ${input.platform}`, `use one of ${Object.keys(PLATFORMS).join(', ')}`);
  await copyRuntime(dir, arch);
  await copyServer(dir);

  const layers: RecipeLayer[] = [
    { kind: 'folder', source: 'runtime', target: '/app/', comment: `ONNX Runtime for ${input.platform} only: the largest layer, the same in every build.` },
    { kind: 'folder', source: 'server', target: '/app/', comment: 'The inference server, bundled into one file, and its health check.' },
  ];
  if (input.imaging) {
    await copyImaging(path.join(dir, 'imaging', 'node_modules'), arch, input.platform);
    layers.push({
      kind: 'folder',
      source: 'imaging',
      target: '/app/',
      comment: `sharp and libvips for ${input.platform}: images are decoded in the server for this model.`,
    });
  }
  const env: [string, string][] = [
    ['NODE_ENV', 'production'],
    ['HOST', '0.0.0.0'],
    ['PORT', String(input.port)],
    ['GRPC_PORT', String(input.grpcPort)],
    ['MLOPS_MODEL_PATH', '/app/model/model.onnx'],
    // ONNX Runtime's telemetry off: no warnings about it at start, and nothing sent from a base with CA certificates.
    ['ORT_DISABLE_TELEMETRY', '1'],
  ];
  if (!input.repository) {
    await copyModel(dir, 'model', input.modelPath, input.externalData ?? [], input.referenceProfile, input.modelFiles ?? [], input.processing);
    layers.push({ kind: 'folder', source: 'model', target: '/app/model/', comment: 'The model and its reference profile.' });
    env.push(
      ['MLOPS_MODEL_SHA256', input.modelSha256],
      ['MLOPS_MODEL_NAME', input.modelName],
      ['MLOPS_MODEL_VERSION', input.modelVersion],
      ['MLOPS_PROFILE_PATH', PROFILE_IMAGE_PATH],
    );
  } else {
    layers.push(...(await repositoryLayers(dir, input.repository)));
    env.push(['MLOPS_MODEL_REPOSITORY', IMAGE_REPOSITORY_FILE]);
  }
  env.push(...Object.entries(input.serverEnv));
  const recipe: ImageRecipe = {
    platform: input.platform,
    layers,
    env,
    exposedPorts: input.grpcPort > 0 ? [input.port, input.grpcPort] : [input.port],
    labels: input.labels,
  };
  await writeFile(path.join(dir, 'Dockerfile'), await renderDockerfile(input.baseImage, recipe));
  return recipe;
}

/** The Dockerfile for the engine's builder, from the same recipe the daemonless builder reads. */
export async function renderDockerfile(baseImage: string, recipe: ImageRecipe): Promise<string> {
  const template = await readFile(path.join(PACKAGE_ROOT, 'templates', 'Dockerfile'), 'utf8');
  const copy = (layer: RecipeLayer) => `# ${layer.comment}\n${layer.kind === 'folder' ? `COPY ${layer.source}/ ${layer.target}` : `ADD ${layer.source} /`}`;
  const [runtime, server, ...rest] = recipe.layers;
  const imaging = rest[0]?.kind === 'folder' && rest[0].source === 'imaging' ? rest.shift() : undefined;
  const fixed = 6;
  const h = IMAGE_RUNTIME.healthcheck;
  return renderTemplate(template, {
    baseImage,
    platform: recipe.platform,
    workdir: IMAGE_RUNTIME.workdir,
    runtimeLayers: [runtime, server, ...(imaging ? [imaging] : [])].map(copy).join('\n'),
    env: recipe.env
      .slice(0, fixed)
      .map(([k, v]) => `${k}=${v}`)
      .join(' '),
    user: IMAGE_RUNTIME.user,
    exposed: recipe.exposedPorts.join(' '),
    stopSignal: IMAGE_RUNTIME.stopSignal,
    healthcheck: `--interval=${h.intervalSeconds}s --timeout=${h.timeoutSeconds}s --start-period=${h.startPeriodSeconds}s --retries=${h.retries} CMD ${JSON.stringify(h.command)}`,
    entrypoint: JSON.stringify(IMAGE_RUNTIME.entrypoint),
    modelLayers: rest.map(copy).join('\n'),
    modelEnv: recipe.env
      .slice(fixed)
      .map(([k, v], i) => `${i === 0 ? '' : ' '}${k}=${dockerfileString(v)}`)
      .join(''),
    labels: Object.entries(recipe.labels)
      .map(([key, value]) => `${key}=${dockerfileString(value)}`)
      .join(' \\\n      '),
  });
}

/** A model file, its external data and processing files beside it, and its reference profile, into `folder` of the context. */
async function copyModel(
  dir: string,
  folder: string,
  modelPath: string,
  externalData: string[],
  referenceProfile: string,
  modelFiles: string[],
  processing: object | undefined,
): Promise<void> {
  await mkdir(path.join(dir, folder), { recursive: true });
  await copyFile(modelPath, path.join(dir, folder, 'model.onnx'));
  for (const file of modelFiles) await copyFile(file, path.join(dir, folder, path.basename(file)));
  if (processing) await writeFile(path.join(dir, folder, PROCESSING_FILE), JSON.stringify(processing, null, 2) + '\n');
  for (const file of externalData) {
    await mkdir(path.dirname(path.join(dir, folder, file)), { recursive: true });
    await copyFile(path.join(path.dirname(modelPath), file), path.join(dir, folder, file));
  }
  await writeFile(path.join(dir, folder, path.basename(PROFILE_IMAGE_PATH)), referenceProfile);
}

/** The packages sharp loads, and its prebuilt binary and libvips for the platform. */
export const IMAGING_PACKAGES = ['sharp', '@img/colour', 'detect-libc', 'semver'];

async function copyImaging(to: string, arch: string, platform: string): Promise<void> {
  const sharpDir = packageDir('sharp');
  // Each package hoisted beside sharp, or nested in its own node_modules.
  const installed = async (name: string) => {
    for (const dir of [path.join(path.dirname(sharpDir), ...name.split('/')), path.join(sharpDir, 'node_modules', ...name.split('/'))]) {
      if (await readdir(dir).catch(() => undefined)) return dir;
    }
    return undefined;
  };
  for (const name of IMAGING_PACKAGES) {
    const from = name === 'sharp' ? sharpDir : await installed(name);
    if (!from) throw new MlopsError(`${name}, which sharp loads, is not installed`, { exitCode: ExitCode.internal, hint: 'run `npm ci` in the mlops package' });
    // sharp's C++ sources and install scripts are not needed at run time.
    await copyTree(
      from,
      path.join(to, name),
      (rel) =>
        !rel.startsWith(`src${path.sep}`) &&
        !rel.startsWith(`install${path.sep}`) &&
        !rel.endsWith('.d.ts') &&
        !rel.endsWith('.d.mts') &&
        !rel.endsWith('.d.cts'),
    );
  }
  for (const name of [`@img/sharp-linux-${arch}`, `@img/sharp-libvips-linux-${arch}`]) {
    const from = await installed(name);
    if (!from)
      throw inputError(
        `${name} is not installed: the image for ${platform} needs sharp's binary for that platform to decode images`,
        `npm install --no-save --os=linux --cpu=${arch} ${name}`,
      );
    await copyTree(from, path.join(to, name), () => true);
  }
}

/**
 * The context as an uncompressed tar (gzip would cost seconds on the 45 MB
 * runtime library every build), with owners and times zeroed so that the
 * engine's layer cache depends on content alone.
 */
export function packContext(dir: string): NodeJS.ReadableStream {
  const pack = tar.pack(dir, {
    map: (header) => ({ ...header, uid: 0, gid: 0, mtime: new Date(0) }),
  });
  return pack as unknown as NodeJS.ReadableStream;
}
