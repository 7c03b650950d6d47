import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

/** A package's folder from its entry point (some packages export no ./package.json). */
export function packageDir(name: string, from?: string): string {
  const entry = require.resolve(name, from ? { paths: [from] } : undefined);
  let dir = path.dirname(entry);
  while (path.basename(dir) !== name && dir !== path.dirname(dir)) dir = path.dirname(dir);
  return dir;
}
