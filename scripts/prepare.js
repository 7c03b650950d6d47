// `prepare`: npm runs it after `npm ci` here, and when mlops is installed from a git URL
// (`npm install --global git+https://…/mlops.git#<commit>`), after installing the dependencies in a
// clone. Under a global install npm leaves the devDependencies out of that clone, so TypeScript may be
// missing: the sources are then transpiled by esbuild, a runtime dependency already (it bundles the
// server), giving the same dist/ without the type check `npm test` runs.
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(file);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [file] : [];
  });
}

let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc');
} catch {
  tsc = undefined;
}
if (tsc) {
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
} else {
  process.stderr.write('mlops prepare: TypeScript is not installed here; transpiling src/ with esbuild\n');
  const { build } = await import('esbuild');
  await build({ entryPoints: sources(path.join(root, 'src')), outdir: path.join(root, 'dist'), outbase: path.join(root, 'src'), format: 'esm', platform: 'node', target: 'node20', sourcemap: true, logLevel: 'warning' });
}
execFileSync(process.execPath, [path.join(root, 'scripts', 'bundle-server.js')], { cwd: root, stdio: 'inherit' });
