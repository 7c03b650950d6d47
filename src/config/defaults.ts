/**
 * The config's types (config/types.ts, read off the schema) and its defaults, which `npm run config-files`
 * writes from the schema into config/default-values.ts: what most modules take from config, in one import.
 */
export type * from './types.js';
export { DEFAULTS, MODEL_ENTRY_DEFAULTS, TARGET_DEFAULTS } from './default-values.js';
