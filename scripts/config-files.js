// Writes what the config schema (src/config/schema.ts) is the source of, through src/config/generate.ts:
// mlops.config.example.json, the reference section of docs/configuration.md and src/config/default-values.ts.
// test/config/load.test.ts fails when one of them differs from what this writes. esbuild compiles the
// TypeScript here, so no build is needed first.
//   npm run config-files
import { build } from 'esbuild';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import * as prettier from 'prettier';

const root = new URL('../', import.meta.url);
const { outputFiles } = await build({
  entryPoints: [new URL('src/config/generate.ts', root).pathname],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  packages: 'external',
  write: false,
});
// Beside this script, so that zod resolves from the project's node_modules.
const compiled = new URL(`.config-files.${process.pid}.mjs`, import.meta.url);
writeFileSync(compiled, outputFiles[0].text);
try {
  const { exampleConfig, withReference, defaultValuesSource } = await import(compiled.href);
  writeFileSync(new URL('mlops.config.example.json', root), exampleConfig());
  const page = new URL('docs/configuration.md', root);
  writeFileSync(page, withReference(readFileSync(page, 'utf8')));
  const defaults = new URL('src/config/default-values.ts', root);
  const options = await prettier.resolveConfig(defaults.pathname);
  writeFileSync(defaults, await prettier.format(defaultValuesSource(), { ...options, filepath: defaults.pathname }));
} finally {
  unlinkSync(compiled);
}
