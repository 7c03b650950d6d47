import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { inputError } from '../errors.js';

export interface BuildRecord {
  /** Absent in records written before the daemonless builder: docker. */
  builder?: 'docker' | 'oci';
  /** The oci builder's manifest (or index) digest; null from the engine's builder. */
  digest?: string | null;
  imageId: string;
  tags: string[];
  repository: string;
  baseImage: string;
  platform: string;
  sizeBytes: number;
  builtAt: string;
  model: { path: string; name: string; version: string; sha256: string };
}

export const LAST_BUILD = path.join('.mlops', 'last-build.json');

/** test, bench, tag, push and deploy default to the image recorded here. */
export async function writeLastBuild(projectDir: string, record: BuildRecord): Promise<string> {
  const file = path.join(projectDir, LAST_BUILD);
  await mkdir(path.dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, JSON.stringify(record, null, 2) + '\n');
  await rename(temporary, file);
  return file;
}

export async function readLastBuild(projectDir: string): Promise<BuildRecord> {
  const file = path.join(projectDir, LAST_BUILD);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw inputError(`no image built yet: ${LAST_BUILD} does not exist`, 'run `mlops build` first, or pass --image <ref>');
  }
  try {
    return JSON.parse(text) as BuildRecord;
  } catch {
    throw inputError(`${LAST_BUILD} is not valid JSON`, 'run `mlops build` again to rewrite it');
  }
}
