/**
 * The server's side of `mlops monitor`: the reference profile it was given,
 * checked once at start, and the live counts behind /metrics and
 * GET /v2/models/{name}/profile.
 */
import { readFile } from 'node:fs/promises';
import type { Registry } from 'prom-client';
import { inputError } from '../errors.js';
import { LiveProfile, profileMetrics, type ProfileDocument } from '../monitor/live.js';
import { profileProblem, profileSha256, type ReferenceProfile } from '../monitor/profile.js';

export interface LoadedProfile {
  profile: ReferenceProfile;
  sha256: string;
}

/** Reads the profile file; a missing or malformed one stops the server at start (exit 2), naming the file. */
export async function readReferenceProfile(file: string): Promise<LoadedProfile> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch {
    throw inputError(`reference profile ${file}: cannot be read`, 'unset MLOPS_PROFILE_PATH (or --profile) to serve without profiling, or rebuild the image');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw inputError(`reference profile ${file}: not valid JSON`, 'rebuild the image with `mlops build`');
  }
  const problem = profileProblem(parsed);
  if (problem) throw inputError(`reference profile ${file}: ${problem}`, 'rebuild the image with `mlops build`');
  return { profile: parsed as ReferenceProfile, sha256: profileSha256(bytes) };
}

export interface ServerProfiling {
  live: LiveProfile | undefined;
  document(): ProfileDocument | { error: string };
  /** Takes its counters off /metrics (the version was unloaded). */
  remove(): void;
}

/**
 * `problem`: why the profile does not fit the model being served; the server
 * then serves unprofiled, and the profile route says why (monitor exits 2).
 */
export function serverProfiling(
  loaded: LoadedProfile | undefined,
  problem: string | null,
  model: { name: string; version: string; sha256: string },
  registry: Registry,
): ServerProfiling {
  if (loaded && problem) {
    return { live: undefined, document: () => ({ error: `the reference profile does not match the model: ${problem}` }), remove: () => undefined };
  }
  const live = loaded ? new LiveProfile(loaded.profile) : undefined;
  const remove = live && loaded ? profileMetrics(registry, live, loaded.sha256, model) : () => undefined;
  const unavailable = !loaded ? 'the server was started without a reference profile (MLOPS_PROFILE_PATH or --profile)' : loaded.profile.unavailable;
  return {
    live,
    remove,
    document: () => ({
      model,
      referenceSha256: loaded?.sha256 ?? null,
      // Counts only, never rows: the explanation background stays in the server.
      reference: loaded ? withoutBackground(loaded.profile) : null,
      ...(unavailable ? { unavailable } : {}),
      live: live?.snapshot() ?? { rows: 0, windowRows: 0, window: { rows: 0 }, features: {}, prediction: null },
    }),
  };
}

function withoutBackground(profile: ReferenceProfile): ReferenceProfile {
  const { explainBackground: _rows, ...counts } = profile;
  return counts;
}
