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
import { z } from 'zod';
import { DEFAULTS, MODEL_ENTRY_DEFAULTS } from '../config/defaults.js';
import { describeIssues } from '../config/schema.js';
import { inputError } from '../errors.js';
import type { ModelSpec } from './model-repository.js';

const entry = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, { error: 'expected a model name (lowercase letters, digits, ".", "_", "-")' }),
    version: z.string().min(1, { error: 'expected a version' }),
    path: z.string().min(1, { error: 'expected the path of an .onnx file' }),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, { error: 'expected 64 lowercase hex digits' }).optional(),
    profile: z.string().optional(),
    weight: z.number().min(0).optional(),
    shadow: z.boolean().optional(),
    workers: z.number().int().min(0).max(64).optional(),
    batching: z.object({ enabled: z.boolean(), maxBatchSize: z.number().int().min(1).max(65536), maxWaitMs: z.number().min(0).max(10_000) }).partial().strict().optional(),
  })
  .strict();
const file = z.object({ models: z.array(entry).min(1, { error: 'expected at least one model' }) }).strict();

export type RepositoryEntry = z.infer<typeof entry>;

/** The file's versions as the server loads them; the server's own workers and batching where an entry sets none. */
export async function readRepositoryFile(where: string, server: { workers: number; batching: ModelSpec['batching'] } = DEFAULTS.server): Promise<ModelSpec[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(where, 'utf8'));
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw inputError(`model repository ${where}: ${missing ? 'no such file' : `not valid JSON (${(error as Error).message})`}`, 'set MLOPS_MODEL_REPOSITORY to the repository file, or rebuild the image');
  }
  const result = file.safeParse(parsed);
  if (!result.success) throw inputError(`model repository ${where}: ${describeIssues(result.error)[0]}`, 'see docs/server.md, "Several models"');
  const dir = path.dirname(where);
  return result.data.models.map((m) => ({
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
