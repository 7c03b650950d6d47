// `npm run local-base`: a base image for machines that cannot pull one (offline, or no registry
// reachable): FROM scratch with this machine's node binary and the shared libraries node and
// ONNX Runtime load (from ldd). It prints the image's name, for image.base or `mlops build --base`.
// The tests, benchmarks and demo build their images on it too. Elsewhere the default is node:20-slim.
// Linux x64 only: it copies the host's node and the x64 ONNX Runtime library.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import tar from 'tar-fs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const LOCAL_BASE_IMAGE = `mlops-local-base:node${process.versions.node}`;

function sharedLibraries(binary) {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  return [...out.matchAll(/(\/[^\s]+\.so[^\s]*)/g)].map((m) => m[1]).filter((lib) => !lib.includes('node_modules'));
}

/** Builds the image once per engine; later calls reuse it. */
export async function ensureLocalBaseImage(docker) {
  const existing = await docker
    .getImage(LOCAL_BASE_IMAGE)
    .inspect()
    .catch(() => undefined);
  if (existing) return LOCAL_BASE_IMAGE;
  const dir = await mkdtemp(path.join(tmpdir(), 'mlops-base-'));
  try {
    const rootfs = path.join(dir, 'rootfs');
    const node = await realpath(process.execPath);
    const ort = path.join(ROOT, 'node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1');
    // sharp's binding (images that decode images) loads libresolv too; its libvips ships beside it in the image.
    const vips = path.join(ROOT, 'node_modules/@img/sharp-libvips-linux-x64/lib');
    const vipsLibs = existsSync(vips)
      ? readdirSync(vips)
          .filter((f) => f.startsWith('libvips-cpp.so'))
          .map((f) => path.join(vips, f))
      : [];
    const libs = new Set([...sharedLibraries(node), ...sharedLibraries(ort), ...vipsLibs.flatMap(sharedLibraries)]);
    await mkdir(path.join(rootfs, 'usr/local/bin'), { recursive: true });
    await copyFile(node, path.join(rootfs, 'usr/local/bin/node'));
    for (const lib of libs) {
      await mkdir(path.join(rootfs, path.dirname(lib)), { recursive: true });
      await copyFile(await realpath(lib), path.join(rootfs, lib));
    }
    await mkdir(path.join(rootfs, 'tmp'));
    await chmod(path.join(rootfs, 'tmp'), 0o1777);
    await writeFile(path.join(dir, 'Dockerfile'), 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/bin:/usr/bin:/bin\n');
    const stream = await docker.buildImage(tar.pack(dir), { t: LOCAL_BASE_IMAGE, rm: true });
    await new Promise((resolve, reject) => docker.modem.followProgress(stream, (e, out) => (e ? reject(e) : resolve(out))));
    await docker.getImage(LOCAL_BASE_IMAGE).inspect();
    return LOCAL_BASE_IMAGE;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// Run as a script: build (or find) it and print its name.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { default: Docker } = await import('dockerode');
  const docker = new Docker({ socketPath: process.env.DOCKER_HOST?.replace('unix://', '') || '/var/run/docker.sock' });
  try {
    process.stdout.write(`${await ensureLocalBaseImage(docker)}\n`);
  } catch (error) {
    process.stderr.write(`error: could not build the local base image: ${error.message}\nhint: it needs a Docker engine (dockerd) on this machine\n`);
    process.exitCode = 3;
  }
}
