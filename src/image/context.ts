import { copyFile, cp, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import tar from 'tar-fs';
import { MlopsError, ExitCode, inputError } from '../errors.js';
import { PROFILE_IMAGE_PATH } from '../monitor/profile.js';

/** The package's own folder, from src/image or dist/image alike. */
const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(import.meta.url);

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
}

/** A Dockerfile double-quoted string: no variable expansion, no line breaks. */
export function dockerfileString(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$/g, '\\$').replace(/[\r\n]+/g, ' ')}"`;
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

/** A package's folder from its entry point (some packages export no ./package.json). */
export function packageDir(name: string, from?: string): string {
  const entry = require.resolve(name, from ? { paths: [from] } : undefined);
  let dir = path.dirname(entry);
  while (path.basename(dir) !== name && dir !== path.dirname(dir)) dir = path.dirname(dir);
  return dir;
}

/**
 * Lays out everything the Dockerfile copies: ONNX Runtime for one platform
 * (JavaScript, binding and libonnxruntime, no other node_modules), the bundled
 * server, the health check and the model.
 */
export async function assembleContext(dir: string, input: ContextInput): Promise<void> {
  const arch = PLATFORMS[input.platform];
  if (!arch) throw inputError(`unsupported platform ${input.platform}`, `use one of ${Object.keys(PLATFORMS).join(', ')}`);
  const ortNode = packageDir('onnxruntime-node');
  const ortCommon = packageDir('onnxruntime-common', ortNode);
  const runtime = path.join(dir, 'runtime', 'node_modules');
  const binaries = path.join('bin', 'napi-v6', 'linux', arch);
  // JavaScript and the package.json files that say how Node should load it (dist/cjs has its own).
  const isCode = (rel: string) => rel.endsWith('.js') || path.basename(rel) === 'package.json';
  await copyTree(ortNode, path.join(runtime, 'onnxruntime-node'), (rel) =>
    rel === 'package.json' || (rel.startsWith(`dist${path.sep}`) && isCode(rel)) || rel.startsWith(binaries + path.sep),
  );
  await copyTree(ortCommon, path.join(runtime, 'onnxruntime-common'), (rel) =>
    rel === 'package.json' || (rel.startsWith(path.join('dist', 'cjs') + path.sep) && isCode(rel)),
  );

  const dist = path.join(PACKAGE_ROOT, 'dist');
  const bundle = path.join(dist, 'server.bundle.mjs');
  await mkdir(path.join(dir, 'server'), { recursive: true });
  try {
    await copyFile(bundle, path.join(dir, 'server', 'server.mjs'));
    // Its worker threads, and the .proto files gRPC loads at start.
    await copyFile(path.join(dist, 'inference-worker.mjs'), path.join(dir, 'server', 'inference-worker.mjs'));
    await copyFile(path.join(dist, 'open_inference_grpc.proto'), path.join(dir, 'server', 'open_inference_grpc.proto'));
    await cp(path.join(dist, 'grpc-health-check'), path.join(dir, 'server', 'grpc-health-check'), { recursive: true });
  } catch {
    throw new MlopsError(`the bundled server is missing: ${bundle}`, {
      exitCode: ExitCode.internal,
      hint: 'run `npm run build` in the mlops package',
    });
  }
  await copyFile(path.join(PACKAGE_ROOT, 'templates', 'healthcheck.mjs'), path.join(dir, 'server', 'healthcheck.mjs'));

  await mkdir(path.join(dir, 'model'), { recursive: true });
  await copyFile(input.modelPath, path.join(dir, 'model', 'model.onnx'));
  for (const file of input.externalData ?? []) {
    await mkdir(path.dirname(path.join(dir, 'model', file)), { recursive: true });
    await copyFile(path.join(path.dirname(input.modelPath), file), path.join(dir, 'model', file));
  }

  await writeFile(path.join(dir, 'model', path.basename(PROFILE_IMAGE_PATH)), input.referenceProfile);

  const template = await readFile(path.join(PACKAGE_ROOT, 'templates', 'Dockerfile'), 'utf8');
  await writeFile(
    path.join(dir, 'Dockerfile'),
    renderTemplate(template, {
      baseImage: input.baseImage,
      platform: input.platform,
      port: input.port,
      grpcPort: input.grpcPort,
      exposed: input.grpcPort > 0 ? `${input.port} ${input.grpcPort}` : String(input.port),
      modelSha256: input.modelSha256,
      profilePath: PROFILE_IMAGE_PATH,
      serverEnv: Object.entries(input.serverEnv)
        .map(([key, value]) => ` ${key}=${dockerfileString(value)}`)
        .join(''),
      modelName: input.modelName,
      modelVersion: dockerfileString(input.modelVersion),
      labels: Object.entries(input.labels)
        .map(([key, value]) => `${key}=${dockerfileString(value)}`)
        .join(' \\\n      '),
    }),
  );
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
