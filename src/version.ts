import { readFileSync } from 'node:fs';

// Set by esbuild when the server is bundled into an image, where package.json is absent.
declare const __MLOPS_VERSION__: string | undefined;

export const VERSION: string =
  typeof __MLOPS_VERSION__ === 'string'
    ? __MLOPS_VERSION__
    : (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
