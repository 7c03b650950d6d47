import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { link, mkdir, readFile, rename, rm, stat, writeFile, copyFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DIGEST, sha256Digest } from './media.js';

/**
 * Content-addressed blobs in an OCI layout's `blobs/sha256/` folder. A blob is written under a
 * temporary name and renamed once its digest is known, so readers never see half a blob and two
 * builds writing the same blob at once are harmless.
 */
export class BlobStore {
  constructor(readonly dir: string) {}

  path(digest: string): string {
    if (!DIGEST.test(digest)) throw new Error(`not a sha256 digest: ${digest}`);
    return path.join(this.dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
  }

  async has(digest: string): Promise<boolean> {
    return stat(this.path(digest)).then(
      () => true,
      () => false,
    );
  }

  async size(digest: string): Promise<number> {
    return (await stat(this.path(digest))).size;
  }

  read(digest: string): Promise<Buffer> {
    return readFile(this.path(digest));
  }

  open(digest: string): Readable {
    return createReadStream(this.path(digest));
  }

  async put(bytes: Buffer): Promise<string> {
    const digest = sha256Digest(bytes);
    if (await this.has(digest)) return digest;
    const temporary = await this.temporary();
    await writeFile(temporary, bytes);
    await this.settle(temporary, digest);
    return digest;
  }

  /** Writes a stream; resolves to its digest and size. A digest given is checked, and the blob refused when it differs. */
  async write(source: Readable | AsyncIterable<Buffer>, expected?: string): Promise<{ digest: string; size: number }> {
    const temporary = await this.temporary();
    const hash = createHash('sha256');
    let size = 0;
    const count = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        size += chunk.length;
        callback(null, chunk);
      },
    });
    try {
      await pipeline(source, count, createWriteStream(temporary));
    } catch (error) {
      await rm(temporary, { force: true });
      throw error;
    }
    const digest = `sha256:${hash.digest('hex')}`;
    if (expected && digest !== expected) {
      await rm(temporary, { force: true });
      throw new Error(`blob ${expected} arrived with digest ${digest}`);
    }
    await this.settle(temporary, digest);
    return { digest, size };
  }

  /** The blob into another store: a hard link where both are on one file system, else a copy. */
  async copyTo(other: BlobStore, digest: string): Promise<void> {
    if (await other.has(digest)) return;
    await mkdir(path.dirname(other.path(digest)), { recursive: true });
    const temporary = await other.temporary();
    await link(this.path(digest), temporary).catch(() => copyFile(this.path(digest), temporary));
    await other.settle(temporary, digest);
  }

  private async temporary(): Promise<string> {
    const folder = path.join(this.dir, 'blobs', 'sha256');
    await mkdir(folder, { recursive: true });
    return path.join(folder, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  private async settle(temporary: string, digest: string): Promise<void> {
    await rename(temporary, this.path(digest));
  }
}

/**
 * The blob cache shared by every build on this machine: base layers fetched once, and the runtime's
 * compressed layer made once per mlops version. MLOPS_CACHE_DIR, else $XDG_CACHE_HOME/mlops, else
 * ~/.cache/mlops. A build without it (a clean runner) gives the same digests, only slower.
 */
export function cacheDir(env: NodeJS.ProcessEnv): string {
  if (env.MLOPS_CACHE_DIR) return path.resolve(env.MLOPS_CACHE_DIR);
  return path.join(env.XDG_CACHE_HOME ? path.resolve(env.XDG_CACHE_HOME) : path.join(homedir(), '.cache'), 'mlops');
}

export function sharedBlobStore(env: NodeJS.ProcessEnv): BlobStore {
  return new BlobStore(path.join(cacheDir(env), 'oci'));
}
