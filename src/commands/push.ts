import { ExitCode } from '../errors.js';
import { pushVersion } from '../release/push-version.js';
import { isCI } from '../ui/environment.js';
import type { CommandContext } from './context.js';

export interface PushFlags {
  yes?: boolean;
}

export async function run(flags: PushFlags, ctx: CommandContext, version: string | undefined): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const pushed = await pushVersion({
    projectDir: baseDir,
    config,
    env: ctx.env,
    version,
    ci: isCI(ctx.env),
    confirmAliasMoves: Boolean(flags.yes),
    reporter: ctx.reporter,
  });
  if (!pushed.signed)
    ctx.reporter.warn(`${pushed.version} was pushed unsigned: no signing key (set MLOPS_SIGNING_KEY or sign.keyFile; \`mlops keygen\` makes a pair)`);
  ctx.reporter.result(pushed, (r, s) =>
    [
      `${s.bold('digest')} ${r.digest}`,
      `${s.bold('pushed')} ${r.pushed.join(', ')}`,
      `${s.bold('signed')} ${r.supplyChain.signature ? `yes, key ${r.supplyChain.signature.keyId.slice(0, 12)}` : 'no'}`,
      `${s.bold('sbom')}   ${r.supplyChain.sbom.file}`,
    ].join('\n'),
  );
  return ExitCode.ok;
}
