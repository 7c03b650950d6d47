import { access, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULTS } from '../config/defaults.js';
import { CONFIG_SEARCH_PLACES } from '../config/load.js';
import { ExitCode, inputError } from '../errors.js';
import { defaultModelName, inspectModel } from '../model/inspect.js';
import { describePlan, loadProcessing, servableSignature } from '../processing/plan.js';
import type { CommandContext } from './context.js';

export interface InitFlags {
  model: string;
  force?: boolean;
}

const exists = (file: string) =>
  access(file).then(
    () => true,
    () => false,
  );

export async function run(flags: InitFlags, ctx: CommandContext): Promise<number> {
  const target = path.resolve(ctx.cwd, ctx.globals.config ?? 'mlops.config.json');
  if (!flags.force) {
    const candidates = ctx.globals.config ? [target] : CONFIG_SEARCH_PLACES.filter((p) => p !== 'package.json').map((p) => path.join(ctx.cwd, p));
    for (const candidate of candidates) {
      if (await exists(candidate)) {
        throw inputError(`${path.relative(ctx.cwd, candidate)} already exists; not overwriting it`, 'pass --force to replace it');
      }
    }
  }
  const modelPath = path.resolve(ctx.cwd, flags.model);
  const info = await inspectModel(flags.model, { cwd: ctx.cwd });
  // An export folder: what it takes and answers, from its processing files.
  const receives = describePlan(await loadProcessing(info.path, servableSignature(info), {}));
  const relativeModel = path.relative(path.dirname(target), modelPath).split(path.sep).join('/');
  const config = {
    model: { path: relativeModel, name: defaultModelName(modelPath), version: DEFAULTS.model.version },
    server: { host: DEFAULTS.server.host, port: DEFAULTS.server.port },
    test: { gates: {} },
  };
  // Written beside the target and renamed, so a failure never leaves half a file.
  const temporary = `${target}.${process.pid}.tmp`;
  await writeFile(temporary, JSON.stringify(config, null, 2) + '\n');
  await rename(temporary, target);
  ctx.reporter.result({ path: target, config, inputs: info.inputs.map((i) => i.name), outputs: info.outputs.map((o) => o.name), receives }, (r, s) =>
    [
      `${s.green('✔')} wrote ${path.relative(ctx.cwd, r.path)} for model '${r.config.model.name}' (inputs: ${r.inputs.join(', ')}; outputs: ${r.outputs.join(', ')})`,
      ...r.receives.map((line) => `  ${line}`),
    ].join('\n'),
  );
  return ExitCode.ok;
}
