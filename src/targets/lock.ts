/**
 * One deploy or rollback per target at a time. Each adapter takes its target's lock where the
 * platform can enforce it (the engine for local, a Lease for Kubernetes); the others use a lock file
 * in the project. A lock names its holder, and one whose process is gone is stale and taken over.
 */
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { environmentError } from '../errors.js';

export interface LockHolder {
  pid: number;
  host: string;
  /** What holds it: "mlops deploy 1.0.3". */
  command: string;
  since: string;
}

export type LockAttempt = { release(): Promise<void> } | { holder: LockHolder };

export function thisProcess(command: string): LockHolder {
  return { pid: process.pid, host: hostname(), command, since: new Date().toISOString() };
}

/** A holder on this host whose process has ended: its lock protects nothing. Other hosts cannot be asked. */
export function isStale(holder: LockHolder): boolean {
  if (holder.host !== hostname()) return false;
  try {
    process.kill(holder.pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export const describeHolder = (h: LockHolder) => `${h.command} (pid ${h.pid} on ${h.host}, since ${h.since})`;

/**
 * Tries until the lock is taken or `timeoutSeconds` have passed (0: once), then fails with exit 3
 * naming the holder.
 */
export async function acquireLock(
  targetName: string,
  attempt: () => Promise<LockAttempt>,
  timeoutSeconds: number,
  log: (line: string) => void,
): Promise<{ release(): Promise<void> }> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  let announced = false;
  for (;;) {
    const result = await attempt();
    if ('release' in result) return result;
    if (Date.now() >= deadline) {
      throw environmentError(
        `target '${targetName}' is locked by ${describeHolder(result.holder)}`,
        timeoutSeconds > 0
          ? `it was still held after ${timeoutSeconds} s; wait for it, or raise --lock-timeout`
          : 'wait for it, or pass --lock-timeout <seconds> to wait',
      );
    }
    if (!announced) log(`waiting for ${describeHolder(result.holder)} to finish with target '${targetName}'`);
    announced = true;
    await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(50, deadline - Date.now()))));
  }
}

/**
 * The lock file `.mlops/locks/<target>.lock`, created with O_EXCL. It guards the deploys run from
 * one project folder: the best effort for platforms with no lock of their own.
 */
export async function fileLock(projectDir: string, targetName: string, holder: LockHolder): Promise<LockAttempt> {
  const file = path.join(projectDir, '.mlops', 'locks', `${targetName}.lock`);
  await mkdir(path.dirname(file), { recursive: true });
  for (let tries = 0; tries < 5; tries++) {
    try {
      const handle = await open(file, 'wx');
      try {
        await handle.writeFile(JSON.stringify(holder));
      } finally {
        await handle.close();
      }
      return { release: () => unlink(file).catch(() => undefined) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const current = await readHolder(file);
    if (!current) {
      // Created but not yet written (or removed) this instant: not stale, ask again.
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    if (!isStale(current)) return { holder: current };
    // Moved aside rather than deleted, so a lock taken in between is not the one removed.
    await rename(file, `${file}.stale-${process.pid}`).catch(() => undefined);
    await unlink(`${file}.stale-${process.pid}`).catch(() => undefined);
  }
  return { holder: (await readHolder(file)) ?? { pid: 0, host: 'unknown', command: 'another mlops', since: '' } };
}

async function readHolder(file: string): Promise<LockHolder | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as LockHolder;
  } catch {
    // Being written this instant, or gone: ask again.
    return null;
  }
}
