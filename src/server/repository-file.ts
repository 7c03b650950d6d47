/**
 * The model repository file: the models and versions a server loads, one entry per version, as
 * `mlops build` writes it into an image of several models (MLOPS_MODEL_REPOSITORY) and as anyone
 * may write it by hand. Paths are relative to the file.
 *
 *   {"models": [{"name": "fraud", "version": "2", "path": "fraud/2/model.onnx", "sha256": "…",
 *                "profile": "fraud/2/profile.json", "weight": 90, "shadow": false,
 *                "workers": 2, "batching": {"enabled": true, "maxBatchSize": 32, "maxWaitMs": 2}}]}
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULTS, MODEL_ENTRY_DEFAULTS } from '../config/defaults.js';
import { inputError } from '../errors.js';
import type { ModelSpec } from './model-repository.js';

export interface RepositoryEntry {
  name: string;
  version: string;
  path: string;
  sha256?: string;
  profile?: string;
  weight?: number;
  shadow?: boolean;
  workers?: number;
  batching?: Partial<ModelSpec['batching']>;
}

const FIELDS = new Set(['name', 'version', 'path', 'sha256', 'profile', 'weight', 'shadow', 'workers', 'batching']);
const BATCHING = new Set(['enabled', 'maxBatchSize', 'maxWaitMs']);

/**
 * The file's problem, "models.1.weight: ...", or null. Checked by hand, not with the config's zod
 * schema: zod in the server bundle took it from 0.74 MB to 1.23 MB (measured), which every image and
 * every Lambda cold start would carry for one small file.
 */
function problemOf(parsed: unknown): string | null {
  const models = (parsed as { models?: unknown } | null)?.models;
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return '(top level): expected {"models": [...]}';
  const extra = Object.keys(parsed).find((k) => k !== 'models');
  if (extra) return `${extra}: unknown field`;
  if (!Array.isArray(models) || models.length === 0) return 'models: expected a list of at least one model';
  for (const [i, m] of models.entries()) {
    const at = `models.${i}`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) return `${at}: expected an object`;
    const e = m as Record<string, unknown>;
    const unknown = Object.keys(e).find((k) => !FIELDS.has(k));
    if (unknown) return `${at}.${unknown}: unknown field`;
    if (typeof e.name !== 'string' || !/^[a-z0-9][a-z0-9._-]*$/.test(e.name))
      return `${at}.name: expected a model name (lowercase letters, digits, ".", "_", "-")`;
    if (typeof e.version !== 'string' || e.version === '') return `${at}.version: expected a version`;
    if (typeof e.path !== 'string' || e.path === '') return `${at}.path: expected the path of an .onnx file`;
    if (e.sha256 !== undefined && (typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256))) return `${at}.sha256: expected 64 lowercase hex digits`;
    if (e.profile !== undefined && typeof e.profile !== 'string') return `${at}.profile: expected the path of a reference profile`;
    if (e.weight !== undefined && !(typeof e.weight === 'number' && e.weight >= 0)) return `${at}.weight: expected a share of traffic >= 0`;
    if (e.shadow !== undefined && typeof e.shadow !== 'boolean') return `${at}.shadow: expected true or false`;
    if (e.workers !== undefined && !(Number.isInteger(e.workers) && (e.workers as number) >= 0 && (e.workers as number) <= 64))
      return `${at}.workers: expected a thread count from 0 to 64`;
    if (e.batching !== undefined) {
      const b = e.batching as Record<string, unknown>;
      if (typeof b !== 'object' || b === null || Array.isArray(b)) return `${at}.batching: expected an object`;
      const field = Object.keys(b).find((k) => !BATCHING.has(k));
      if (field) return `${at}.batching.${field}: unknown field`;
      if (b.enabled !== undefined && typeof b.enabled !== 'boolean') return `${at}.batching.enabled: expected true or false`;
      if (b.maxBatchSize !== undefined && !(Number.isInteger(b.maxBatchSize) && (b.maxBatchSize as number) >= 1 && (b.maxBatchSize as number) <= 65536))
        return `${at}.batching.maxBatchSize: expected a batch size from 1 to 65536`;
      if (b.maxWaitMs !== undefined && !(typeof b.maxWaitMs === 'number' && b.maxWaitMs >= 0 && b.maxWaitMs <= 10_000))
        return `${at}.batching.maxWaitMs: expected milliseconds from 0 to 10000`;
    }
  }
  return null;
}

/** The file's versions as the server loads them; the server's own workers and batching where an entry sets none. */
export async function readRepositoryFile(where: string, server: { workers: number; batching: ModelSpec['batching'] } = DEFAULTS.server): Promise<ModelSpec[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(where, 'utf8'));
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw inputError(
      `model repository ${where}: ${missing ? 'no such file' : `not valid JSON (${(error as Error).message})`}`,
      'set MLOPS_MODEL_REPOSITORY to the repository file, or rebuild the image',
    );
  }
  const problem = problemOf(parsed);
  if (problem) throw inputError(`model repository ${where}: ${problem}`, 'see docs/server.md, "Several models"');
  const dir = path.dirname(where);
  return (parsed as { models: RepositoryEntry[] }).models.map((m) => ({
    name: m.name,
    version: m.version,
    path: path.resolve(dir, m.path),
    expectedSha256: m.sha256,
    profilePath: m.profile ? path.resolve(dir, m.profile) : '',
    weight: m.weight ?? MODEL_ENTRY_DEFAULTS.weight,
    shadow: m.shadow ?? MODEL_ENTRY_DEFAULTS.shadow,
    workers: m.workers ?? server.workers,
    batching: { ...server.batching, ...m.batching },
  }));
}
