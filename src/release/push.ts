import type Docker from 'dockerode';
import { environmentError, inputError, MlopsError } from '../errors.js';
import { RegistryClient } from '../registry/client.js';
import { resolveCredentials, type Credentials } from '../registry/credentials.js';
import { localName, parseReference } from '../registry/reference.js';

export type PushProgress = (line: string, transient: boolean) => void;

export interface PushOptions {
  docker: Docker;
  env: NodeJS.ProcessEnv;
  /** Full references to push, e.g. registry/team/model:1.2.0 and :staging; the first is the version. */
  references: string[];
  /** Registered with the reporter so it never prints them. */
  onSecret?: (secret: string) => void;
  /** transient: byte counts, for a spinner; otherwise a layer's state changed (or a retry). */
  onProgress?: PushProgress;
  /** Tries a transient failure this many times in all. */
  attempts?: number;
  /** Milliseconds before the first retry; doubles each time. */
  backoffMs?: number;
}

export interface PushResult {
  registry: string;
  /** The manifest digest the registry stored: the same for every tag pushed. */
  digest: string;
  sizeBytes: number | null;
  pushed: string[];
  attempts: number;
}

interface PushEvent {
  status?: string;
  id?: string;
  progressDetail?: { current?: number; total?: number };
  error?: string;
  errorDetail?: { message?: string };
  aux?: { Tag?: string; Digest?: string; Size?: number };
}

const AUTH_FAILURE = /unauthorized|authentication required|denied|forbidden|401|403/i;
const TRANSIENT = /timeout|timed out|connection reset|ECONNRESET|EOF|broken pipe|50[0-9]|temporar|TLS handshake|i\/o/i;

async function pushOnce(docker: Docker, reference: string, auth: Record<string, string>, onProgress?: PushProgress) {
  const colon = reference.lastIndexOf(':');
  const image = docker.getImage(reference.slice(0, colon));
  const stream = await image.push({ tag: reference.slice(colon + 1), authconfig: auth });
  let digest: string | undefined;
  let size: number | undefined;
  let failure: string | undefined;
  const layers = new Map<string, string>();
  await new Promise<void>((resolve, reject) =>
    docker.modem.followProgress(
      stream,
      (error: Error | null) => (error ? reject(error) : resolve()),
      (event: PushEvent) => {
        if (event.error) failure = event.errorDetail?.message ?? event.error;
        if (event.aux?.Digest) {
          digest = event.aux.Digest;
          size = event.aux.Size;
        }
        if (event.id && event.status) {
          // A layer's state changes (Preparing, Pushing, Pushed) are worth a line each; its byte counts only move a spinner.
          const state = `layer ${event.id}: ${event.status}`;
          if (layers.get(event.id) !== state) {
            layers.set(event.id, state);
            onProgress?.(state, false);
          } else if (event.progressDetail?.total) {
            onProgress?.(`${state} ${((event.progressDetail.current ?? 0) / 1e6).toFixed(1)}/${(event.progressDetail.total / 1e6).toFixed(1)} MB`, true);
          }
        }
      },
    ),
  );
  return { digest, size, failure };
}

/**
 * Pushes through the Docker Engine, with credentials from the environment or
 * Docker's config. Checks the registry and the login first, so that a registry
 * that is down or a wrong password fails fast and clearly (exit 3); retries a
 * transient failure with exponential backoff.
 */
export async function pushImages(options: PushOptions): Promise<PushResult> {
  const refs = options.references.map((r) => parseReference(r));
  const registry = refs[0].registry;
  if (refs.some((r) => r.registry !== registry)) throw inputError('all pushed tags must be in one registry');
  for (const reference of options.references) {
    await options.docker
      .getImage(reference)
      .inspect()
      .catch(() => {
        throw inputError(`no local image ${reference}`, 'run `mlops tag <version>` first');
      });
  }
  const credentials: Credentials | undefined = await resolveCredentials(registry, options.env);
  if (credentials) options.onSecret?.(credentials.password);
  await new RegistryClient(registry, credentials).ping();
  const auth: Record<string, string> = credentials ? { username: credentials.username, password: credentials.password, serveraddress: registry } : {};

  const attempts = options.attempts ?? 3;
  let backoff = options.backoffMs ?? 1000;
  let tries = 0;
  let digest: string | undefined;
  let size: number | null = null;
  const pushed: string[] = [];
  for (const [i, reference] of options.references.entries()) {
    const name = `${localName(refs[i])}:${refs[i].tag}`;
    for (let attempt = 1; ; attempt++) {
      tries++;
      let outcome: Awaited<ReturnType<typeof pushOnce>>;
      try {
        outcome = await pushOnce(options.docker, reference, auth, options.onProgress);
      } catch (error) {
        outcome = { digest: undefined, size: undefined, failure: (error as Error).message };
      }
      if (!outcome.failure && outcome.digest) {
        digest ??= outcome.digest;
        size ??= outcome.size ?? null;
        pushed.push(name);
        break;
      }
      const why = outcome.failure ?? 'the engine reported no digest';
      if (AUTH_FAILURE.test(why))
        throw environmentError(`registry ${registry} refused the push of ${name}: ${why}`, 'check the credentials and that you may push to this repository');
      if (attempt >= attempts || !TRANSIENT.test(why)) {
        throw new MlopsError(`pushing ${name} to ${registry} failed${attempt > 1 ? ` after ${attempt} attempts` : ''}: ${why}`, {
          exitCode: 3,
          hint: 'check the registry; transient failures are retried with backoff',
        });
      }
      options.onProgress?.(`transient failure (${why}); retrying in ${backoff / 1000} s`, false);
      await new Promise((r) => setTimeout(r, backoff));
      backoff *= 2;
    }
  }
  return { registry, digest: digest!, sizeBytes: size, pushed, attempts: tries };
}

/** Aliases that already exist in the registry and point at another version: pushing them moves them. */
export async function aliasesThatMove(env: NodeJS.ProcessEnv, repository: string, aliases: string[], version: string): Promise<string[]> {
  if (aliases.length === 0) return [];
  const ref = parseReference(repository);
  const client = new RegistryClient(ref.registry, await resolveCredentials(ref.registry, env));
  const tags = new Set(await client.tags(ref.repository));
  const target = await client.manifest(ref.repository, version);
  const moving: string[] = [];
  for (const alias of aliases) {
    if (!tags.has(alias)) continue;
    const current = await client.manifest(ref.repository, alias);
    if (current && current.digest !== target?.digest) moving.push(alias);
  }
  return moving;
}
