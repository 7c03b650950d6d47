// Bundles the inference server into one file for images: no node_modules tree,
// only onnxruntime-node (a native addon) stays external and is copied beside it.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
await build({
  entryPoints: [new URL('../src/server/entry.ts', import.meta.url).pathname],
  outfile: new URL('../dist/server.bundle.mjs', import.meta.url).pathname,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  minify: true,
  legalComments: 'none',
  external: ['onnxruntime-node'],
  define: { __MLOPS_VERSION__: JSON.stringify(version) },
  // Some bundled CommonJS calls require(); give ESM output a require of its own.
  banner: { js: "import { createRequire as __mlopsRequire } from 'node:module'; const require = __mlopsRequire(import.meta.url);" },
  logLevel: 'warning',
});
