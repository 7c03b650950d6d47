// Bundles the inference server into files for images: no node_modules tree,
// only onnxruntime-node (a native addon) stays external and is copied beside it.
// dist/server.bundle.mjs: the server; dist/inference-worker.mjs: its worker
// threads; the .proto files gRPC loads at run time sit beside them.
import { build } from 'esbuild';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const path = (p) => new URL(p, import.meta.url).pathname;

// grpc-health-check finds its .proto from __dirname, which an ESM bundle lacks:
// point it at the copy placed beside the bundle.
const healthProtoBeside = {
  name: 'health-proto-beside-bundle',
  setup(b) {
    b.onLoad({ filter: /grpc-health-check[\\/]build[\\/]src[\\/]health\.js$/ }, (args) => ({
      contents: readFileSync(args.path, 'utf8').replaceAll('__dirname', '__mlopsHealthDir'),
      loader: 'js',
    }));
  },
};

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  minify: true,
  legalComments: 'none',
  // sharp is a native addon too, copied into images of models that take images, loaded on first use.
  external: ['onnxruntime-node', 'sharp'],
  define: { __MLOPS_VERSION__: JSON.stringify(version) },
  // Some bundled CommonJS calls require(); give ESM output a require of its own.
  banner: {
    js: [
      "import { createRequire as __mlopsRequire } from 'node:module';",
      'const require = __mlopsRequire(import.meta.url);',
      "const __mlopsHealthDir = new URL('./grpc-health-check/build/src', import.meta.url).pathname;",
    ].join(' '),
  },
  plugins: [healthProtoBeside],
  logLevel: 'warning',
};
const server = await build({ ...common, metafile: true, entryPoints: [path('../src/server/entry.ts')], outfile: path('../dist/server.bundle.mjs') });
// The image's batch mode (MLOPS_MODE=batch): its own bundles, loaded only then, with the storage SDKs.
const batch = await build({ ...common, metafile: true, entryPoints: [path('../src/batch/image-entry.ts')], outfile: path('../dist/batch.bundle.mjs') });
const batchWorker = await build({ ...common, metafile: true, entryPoints: [path('../src/batch/worker.ts')], outfile: path('../dist/batch-worker.mjs') });
const worker = await build({
  ...common,
  metafile: true,
  entryPoints: [path('../src/server/inference-worker.ts')],
  outfile: path('../dist/inference-worker.mjs'),
});

// What the bundles really contain, for the image's SBOM: every npm package esbuild took code from,
// read off its metafile (inputs that contributed bytes), with its package.json's name, version and licence.
const packages = new Map();
for (const { metafile } of [server, worker, batch, batchWorker]) {
  for (const output of Object.values(metafile.outputs)) {
    for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
      const match = /^(.*node_modules\/)((?:@[^/]+\/)?[^/]+)\//.exec(input);
      if (!match || bytesInOutput === 0) continue;
      const dir = match[1] + match[2];
      if (packages.has(dir)) continue;
      const manifest = JSON.parse(readFileSync(new URL(`../${dir}/package.json`, import.meta.url), 'utf8'));
      const license = typeof manifest.license === 'string' ? manifest.license : (manifest.license?.type ?? null);
      const repository = typeof manifest.repository === 'string' ? manifest.repository : (manifest.repository?.url ?? null);
      packages.set(dir, { name: manifest.name, version: manifest.version, license, homepage: manifest.homepage ?? null, repository });
    }
  }
}
const bundled = [...new Map([...packages.values()].map((p) => [`${p.name}@${p.version}`, p])).values()].sort(
  (a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version),
);
writeFileSync(path('../dist/server-packages.json'), JSON.stringify(bundled, null, 2) + '\n');

const proto = path('../src/protocol/open_inference_grpc.proto');
for (const dir of ['../dist/', '../dist/protocol/']) {
  mkdirSync(path(dir), { recursive: true });
  cpSync(proto, path(`${dir}open_inference_grpc.proto`));
}
cpSync(path('../node_modules/grpc-health-check/proto'), path('../dist/grpc-health-check/proto'), { recursive: true });
