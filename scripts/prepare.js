// `prepare`: npm runs it after `npm ci` here, and when mlops is installed from a git URL
// (`npm install --global git+https://…/mlops.git#<commit>`), in a clone, before packing it. Under a
// global install npm runs that clone's own `npm install` as a global one too (npm_config_global is
// inherited), so the clone gets no node_modules at all and the build tools are missing. Then the
// locked dependencies are installed into a folder of their own (from npm's cache when it has them),
// linked in for the build, and unlinked before npm packs the clone.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const modules = path.join(root, 'node_modules');
const build = () => {
  execFileSync(process.execPath, [path.join(modules, 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  execFileSync(process.execPath, [path.join(root, 'scripts', 'bundle-server.js')], { cwd: root, stdio: 'inherit' });
};

if (existsSync(path.join(modules, 'typescript'))) {
  build();
} else {
  process.stderr.write('mlops prepare: no build tools in this clone (a global install from git); installing them aside\n');
  const aside = mkdtempSync(path.join(tmpdir(), 'mlops-prepare-'));
  try {
    for (const file of ['package.json', 'package-lock.json', '.npmrc']) if (existsSync(path.join(root, file))) copyFileSync(path.join(root, file), path.join(aside, file));
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_(config_global|config_location|config_prefix|lifecycle_event|package_json)$/i.test(k)));
    execFileSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund', '--include=dev'], { cwd: aside, env, stdio: ['ignore', 'ignore', 'inherit'] });
    rmSync(modules, { recursive: true, force: true });
    symlinkSync(path.join(aside, 'node_modules'), modules, 'dir');
    build();
  } finally {
    rmSync(modules, { force: true });
    rmSync(aside, { recursive: true, force: true });
  }
}
