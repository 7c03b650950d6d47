import { copyFile, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { environmentError, inputError } from '../errors.js';
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
  /** interrupted: the deploy was killed before its candidate passed the gates; what served before was put back. */
  outcome: 'deployed' | 'rolled-back' | 'failed' | 'interrupted';
  reason?: string;
  /** For automatic rollbacks: the version that was restored. */
  restored?: string;
}

export const historyFile = (projectDir: string, target: string) => path.join(projectDir, '.mlops', 'history', `${target}.json`);

/**
 * The target's history; empty when there is none yet. A file that cannot be read is an error
 * (exit 2) and is never overwritten: rollback depends on it.
 */
export async function readHistory(projectDir: string, target: string): Promise<HistoryEntry[]> {
  const file = historyFile(projectDir, target);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw environmentError(`cannot read ${file}: ${(error as Error).message}`);
  }
  let entries: unknown;
  try {
    entries = (JSON.parse(text) as { entries?: unknown }).entries;
  } catch (error) {
    throw damaged(file, (error as Error).message);
  }
  if (
    !Array.isArray(entries) ||
    (entries as { version?: unknown; outcome?: unknown }[]).some((e) => typeof e?.version !== 'string' || typeof e?.outcome !== 'string')
  )
    throw damaged(file, 'it does not hold a list of entries');
  return entries as HistoryEntry[];
}

const damaged = (file: string, why: string) =>
  inputError(
    `${file} is damaged (${why}); it was left as it is`,
    `restore it from the copy before the last write: cp ${file}.bak ${file}; or deploy with --force to start a new history (the damaged file is kept beside it)`,
  );

/** Atomic (write, then rename); the file as it was before stays beside it as .bak. */
export async function appendHistory(projectDir: string, target: string, entry: HistoryEntry): Promise<void> {
  const file = historyFile(projectDir, target);
  const entries = await readHistory(projectDir, target);
  if (entries.length) await copyFile(file, `${file}.bak`);
  await writeFileAtomic(file, JSON.stringify({ entries: [...entries, entry] }, null, 2) + '\n');
}

/** Replaces the whole history (a rebuild), atomically, the file before kept as .bak. */
export async function replaceHistory(projectDir: string, target: string, entries: HistoryEntry[]): Promise<void> {
  const file = historyFile(projectDir, target);
  await copyFile(file, `${file}.bak`).catch(() => undefined);
  await writeFileAtomic(file, JSON.stringify({ entries }, null, 2) + '\n');
}

/** --force over a damaged history: the file is moved aside, never deleted, and a new one starts. */
export async function setAsideHistory(projectDir: string, target: string): Promise<string> {
  const file = historyFile(projectDir, target);
  const aside = `${file}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  await rename(file, aside);
  return aside;
}

/** What is serving now, by the history: the last release that ended up deployed or restored. */
export function currentRelease(entries: HistoryEntry[]): Release | null {
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i];
    if (e.outcome === 'deployed') return toRelease(e);
    if (e.outcome === 'rolled-back' && e.restored) {
      const restored = entries
        .slice(0, i)
        .reverse()
        .find((p) => p.version === e.restored && p.outcome === 'deployed');
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
