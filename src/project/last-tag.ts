import { readFile } from 'node:fs/promises';
import path from 'node:path';

/** What `mlops tag` last did here (.mlops/last-tag.json): push and verify default to its version. */
export interface LastTag {
  version: string;
  reference: string;
  imageId: string;
  repository: string;
  aliases: string[];
  at: string;
  /** The digest of the version `mlops tag --force` replaced: push may overwrite that one, no other. */
  replaces?: string;
}

export async function readLastTag(projectDir: string): Promise<LastTag | undefined> {
  return readFile(path.join(projectDir, '.mlops', 'last-tag.json'), 'utf8')
    .then((text) => JSON.parse(text) as LastTag)
    .catch(() => undefined);
}
