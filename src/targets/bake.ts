import type { DeployContext } from './types.js';

/** Waits a canary step's bake (none in a dry run), saying what is baking. */
export async function bake(ctx: DeployContext, seconds: number, what: string): Promise<void> {
  if (ctx.dryRun || seconds === 0) return;
  ctx.log(`baking ${what} for ${seconds} s`);
  await new Promise((r) => setTimeout(r, seconds * 1000));
}
