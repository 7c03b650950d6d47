import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../report/files.js';
import type { ModelSignature, Release } from './types.js';

export interface HistoryEntry {
  action: 'deploy' | 'rollback';
  version: string;
  image: string;
  digest: string | null;
  modelName?: string;
  modelSha256: string | null;
  /** The model's inputs and outputs, so a rollback's smoke test needs no registry (absent in entries before issue 13). */
  signature?: ModelSignature | null;
  at: string;
  outcome: 'deployed' | 'rolled-back' | 'failed';
  reason?: string;
  /** For automatic rollbacks: the version that was restored. */
  restored?: string;
}

const file = (projectDir: string, target: string) => path.join(projectDir, '.mlops', 'history', `${target}.json`);

export async function readHistory(projectDir: string, target: string): Promise<HistoryEntry[]> {
  try {
    return (JSON.parse(await readFile(file(projectDir, target), 'utf8')) as { entries: HistoryEntry[] }).entries;
  } catch {
    return [];
  }
}

export async function appendHistory(projectDir: string, target: string, entry: HistoryEntry): Promise<void> {
  const entries = await readHistory(projectDir, target);
  await writeFileAtomic(file(projectDir, target), JSON.stringify({ entries: [...entries, entry] }, null, 2) + '\n');
}

/** What is serving now, by the history: the last release that ended up deployed or restored. */
export function currentRelease(entries: HistoryEntry[]): Release | null {
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i];
    if (e.outcome === 'deployed') return toRelease(e);
    if (e.outcome === 'rolled-back' && e.restored) {
      const restored = entries.slice(0, i).reverse().find((p) => p.version === e.restored && p.outcome === 'deployed');
      if (restored) return toRelease(restored);
    }
  }
  return null;
}

/** The release served before the current one (what a plain rollback returns to). */
export function previousRelease(entries: HistoryEntry[]): Release | null {
  const current = currentRelease(entries);
  const deployed = entries.filter((e) => e.outcome === 'deployed');
  for (let i = deployed.length - 1; i >= 0; i--) if (deployed[i].version !== current?.version) return toRelease(deployed[i]);
  return null;
}

export function findRelease(entries: HistoryEntry[], version: string): Release | null {
  const hit = [...entries].reverse().find((e) => e.version === version && e.outcome === 'deployed');
  return hit ? toRelease(hit) : null;
}

function toRelease(e: HistoryEntry): Release {
  return { version: e.version, image: e.image, digest: e.digest, modelName: e.modelName ?? '', modelSha256: e.modelSha256, signature: e.signature ?? null };
}
