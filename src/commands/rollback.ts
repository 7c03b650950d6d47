import type { CommandContext } from './context.js';
import { runRollback, type DeployFlags } from './deploy.js';

export const run = (flags: DeployFlags, ctx: CommandContext) => runRollback(flags, ctx);
