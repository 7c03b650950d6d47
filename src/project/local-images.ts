import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Descriptor } from '../oci/media.js';
import { writeFileAtomic } from '../report/files.js';

/** An image the daemonless builder made, as this project knows it: its top descriptor in the blob cache, and where its base lives. */
export interface LocalImage {
  top: Descriptor;
  /** The base's registry and repository, for mounts and for fetching its layers when a push needs them. */
  base?: { name: string; registry?: string; repository?: string };
}

export const LOCAL_IMAGES = path.join('.mlops', 'images.json');

/** References (repository:tag) of images built or tagged without a daemon, in .mlops/images.json; their blobs are in the cache. */
export async function readLocalImages(projectDir: string): Promise<Record<string, LocalImage>> {
  try {
    return (JSON.parse(await readFile(path.join(projectDir, LOCAL_IMAGES), 'utf8')) as { images: Record<string, LocalImage> }).images ?? {};
  } catch {
    return {};
  }
}

export async function recordLocalImages(projectDir: string, entries: Record<string, LocalImage>): Promise<void> {
  const images = { ...(await readLocalImages(projectDir)), ...entries };
  await writeFileAtomic(path.join(projectDir, LOCAL_IMAGES), JSON.stringify({ images }, null, 2) + '\n');
}

/** An image by reference, or by its digest or config digest (an image id). */
export async function findLocalImage(projectDir: string, image: string): Promise<{ reference: string; image: LocalImage } | undefined> {
  const images = await readLocalImages(projectDir);
  if (images[image]) return { reference: image, image: images[image] };
  const found = Object.entries(images).find(([, i]) => i.top.digest === image);
  return found ? { reference: found[0], image: found[1] } : undefined;
}
