// Bundles the inference server into files for images: no node_modules tree,
// only onnxruntime-node (a native addon) stays external and is copied beside it.
// dist/server.bundle.mjs: the server; dist/inference-worker.mjs: its worker
// threads; the .proto files gRPC loads at run time sit beside them.
import { build } from 'esbuild';
import { cpSync, mkdirSync, readFileSync } from 'node:fs';

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
  external: ['onnxruntime-node'],
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
await build({ ...common, entryPoints: [path('../src/server/entry.ts')], outfile: path('../dist/server.bundle.mjs') });
await build({ ...common, entryPoints: [path('../src/server/inference-worker.ts')], outfile: path('../dist/inference-worker.mjs') });

const proto = path('../src/protocol/open_inference_grpc.proto');
for (const dir of ['../dist/', '../dist/protocol/']) {
  mkdirSync(path(dir), { recursive: true });
  cpSync(proto, path(`${dir}open_inference_grpc.proto`));
}
cpSync(path('../node_modules/grpc-health-check/proto'), path('../dist/grpc-health-check/proto'), { recursive: true });
