import path from 'node:path';
import { ExitCode } from '../errors.js';
import { writeKeyPair } from '../supply-chain/keys.js';
import type { CommandContext } from './context.js';

export interface KeygenFlags {
  output: string;
}

export async function run(flags: KeygenFlags, ctx: CommandContext): Promise<number> {
  const pair = await writeKeyPair(path.resolve(ctx.cwd, flags.output));
  ctx.reporter.result({ privateKey: pair.privateKeyFile, publicKey: pair.publicKeyFile, keyId: pair.keyId }, (r, s) =>
    [
      `${s.green('✔')} wrote ${s.bold(r.privateKey)} (mode 0600) and ${s.bold(r.publicKey)}; key ${r.keyId.slice(0, 12)}`,
      '  sign: give the private key to CI as a secret in MLOPS_SIGNING_KEY (or sign.keyFile); never commit it',
      '  verify: commit the public key and set deploy.verify.key to it',
    ].join('\n'),
  );
  return ExitCode.ok;
}
