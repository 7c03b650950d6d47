// For the crash tests: `node deploy-killed-at.mjs <stage> <version> <target>`, run in a project
// folder, deploys as `mlops deploy` does, with a checkpoint that ends this process with SIGKILL when
// the deploy reaches <stage>, as a kill -9 or a dead CI runner would. The CLI has no such hook.
import { loadConfig } from '../../dist/config/load.js';
import { deployVersion } from '../../dist/targets/deploy.js';

const [stage, version, target] = process.argv.slice(2);
const { config, baseDir } = await loadConfig({ cwd: process.cwd() });
await deployVersion(
  {
    cwd: process.cwd(),
    projectDir: baseDir,
    config,
    env: { ...process.env, CI: 'true' },
    target,
    dryRun: false,
    log: (line) => process.stderr.write(`${line}\n`),
    checkpoint: (reached) => {
      if (reached === stage) process.kill(process.pid, 'SIGKILL');
    },
  },
  version,
);
process.stderr.write(`the deploy never reached ${stage}\n`);
process.exit(1);
