/**
 * Where `mlops monitor` gets live counts: servers' profile documents (one per
 * replica, summed), or Prometheus' sums of the profile counters.
 */
import { readFile } from 'node:fs/promises';
import { getText } from '../http/ready.js';
import { samples } from '../metrics/exposition.js';
import { fetch as undiciFetch } from 'undici';
import { environmentError, inputError } from '../errors.js';
import { authHeaders, tlsDispatcher, type ClientSecurity } from '../protocol/client-security.js';
import type { LiveCounts } from './compare.js';
import type { ProfileDocument } from './live.js';
import { countedSlots, profileProblem, profileSha256, slotWidth, type ReferenceProfile } from './profile.js';

export interface LiveSource {
  /** What was read, for the report: URLs, or the Prometheus URL and range. */
  from: string[];
  profile: ReferenceProfile;
  referenceSha256: string | null;
  counts: LiveCounts;
  /** Which counts: the servers' sliding windows, since their start, or a Prometheus range. */
  span: string;
  model: { name: string; version: string; sha256: string } | null;
}

const TIMEOUT_MS = 10_000;

async function getJson(url: string, shown: string, init?: RequestInit, security?: ClientSecurity): Promise<{ status: number; body: unknown }> {
  let response: Response;
  try {
    const dispatcher = tlsDispatcher(security);
    response = await undiciFetch(url, {
      ...(init as object),
      headers: { ...(init?.headers as Record<string, string>), ...authHeaders(security) },
      signal: AbortSignal.timeout(TIMEOUT_MS),
      ...(dispatcher ? { dispatcher } : {}),
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
    throw environmentError(`cannot reach ${shown}: ${cause}`, 'check the URL and that the server is up');
  }
  const text = await response.text();
  try {
    return { status: response.status, body: text ? JSON.parse(text) : null };
  } catch {
    return { status: response.status, body: { error: text.slice(0, 200) } };
  }
}

/** A server's profile document; an image older than `mlops monitor` has no such route. */
export async function fetchProfile(base: string, modelName: string | undefined, security?: ClientSecurity, version?: string): Promise<ProfileDocument> {
  const root = base.replace(/\/$/, '');
  let name = modelName;
  if (!name) {
    const index = await getJson(`${root}/v2/repository/index`, base, { method: 'POST' }, security);
    if (index.status === 401 || index.status === 429)
      throw environmentError(
        `${base} asks for a bearer token (HTTP ${index.status})${security?.token ? ' and refused the one given' : ''}`,
        'set MLOPS_TOKEN or pass --token-file',
      );
    const models = Array.isArray(index.body) ? (index.body as { name?: string }[]) : [];
    const names = [...new Set(models.map((m) => m.name).filter((n): n is string => typeof n === 'string'))];
    // Several models: judging the first would judge a model nobody named.
    if (names.length > 1)
      throw inputError(
        `${base} serves ${names.length} models (${names.join(', ')}); name the one to judge`,
        'pass --model-name <name>, or set model.name in config',
      );
    name = names[0];
    if (index.status !== 200 || !name)
      throw inputError(
        `${base}: the server does not list its model (POST /v2/repository/index)`,
        'pass --model-name, or set model.name in config to the name the server uses',
      );
  }
  const url = `${root}/v2/models/${encodeURIComponent(name)}${version === undefined ? '' : `/versions/${encodeURIComponent(version)}`}/profile`;
  const { status, body } = await getJson(url, url, undefined, security);
  const error = (body as { error?: string } | null)?.error;
  if (status === 401 || status === 429)
    throw environmentError(
      `${base} asks for a bearer token (HTTP ${status})${security?.token ? ' and refused the one given' : ''}`,
      'set MLOPS_TOKEN or pass --token-file',
    );
  if (status === 404 && /^unknown model/.test(error ?? ''))
    throw inputError(`${base}: ${error}`, 'pass --model-name, or set model.name in config to the name the server uses');
  if (status === 404) {
    throw inputError(
      `${base} has no live profile: its image was built before \`mlops monitor\` (or it is not an mlops server)`,
      'rebuild and redeploy it with `mlops build` (and `mlops deploy`)',
    );
  }
  if (status === 409) throw inputError(`${base}: ${error}`, 'rebuild the image with `mlops build`: the profile is made for the model it holds');
  if (status !== 200) throw environmentError(`${url} answered HTTP ${status}${error ? `: ${error}` : ''}`);
  const doc = body as ProfileDocument;
  if (doc.reference) {
    const problem = profileProblem(doc.reference);
    if (problem) throw inputError(`${base}: the server's reference profile is unusable: ${problem}`, 'rebuild the image with `mlops build`');
  }
  return doc;
}

/**
 * Sums replicas' documents: counts add up, so the sum is what one server
 * that saw all the traffic would have counted (each window holds its own
 * replica's last rows). Replicas must share one reference: mid-rollout, two
 * versions' bins differ and their counts cannot be added.
 */
export function sumDocuments(from: string[], docs: ProfileDocument[], window: boolean): LiveSource {
  const first = docs[0];
  for (const [i, doc] of docs.entries()) {
    if (doc.referenceSha256 !== first.referenceSha256) {
      throw inputError(
        `${from[i]} serves another reference profile (${String(doc.referenceSha256).slice(0, 12)}) than ${from[0]} (${String(first.referenceSha256).slice(0, 12)}): two versions are serving`,
        'wait until the rollout finishes, or use --prometheus, which keeps each reference apart',
      );
    }
  }
  const pick = (c: { total: number[]; window: number[] }) => (window ? c.window : c.total);
  const add = (into: number[] | undefined, more: number[]) => (into ? into.map((v, i) => v + (more[i] ?? 0)) : [...more]);
  const counts: LiveCounts = { rows: 0, features: {}, prediction: null };
  for (const doc of docs) {
    counts.rows += window ? doc.live.window.rows : doc.live.rows;
    for (const [name, c] of Object.entries(doc.live.features)) counts.features[name] = add(counts.features[name], pick(c));
    if (doc.live.prediction) counts.prediction = add(counts.prediction ?? undefined, pick(doc.live.prediction));
  }
  if (!first.reference) {
    throw inputError(
      `${from[0]} has no reference profile: ${first.unavailable ?? 'none given'}`,
      'serve the image `mlops build` made (it sets MLOPS_PROFILE_PATH)',
    );
  }
  return {
    from,
    profile: first.reference,
    referenceSha256: first.referenceSha256,
    counts,
    span: window
      ? `the sliding window (up to the last ${first.live.windowRows} rows) of ${docs.length} server(s)`
      : `everything since each of ${docs.length} server(s) started`,
    model: first.model,
  };
}

export async function fromServers(
  urls: string[],
  modelName: string | undefined,
  window: boolean,
  security?: ClientSecurity,
  version?: string,
): Promise<LiveSource> {
  const docs = await Promise.all(urls.map((url) => fetchProfile(url, modelName, security, version)));
  return sumDocuments(urls, docs, window);
}

/** One version a server holds, as its /metrics says (mlops_model_info), with its shadow outcomes when it is a shadow. */
export interface VersionOnServers {
  version: string;
  role: 'serving' | 'shadow';
  weight: number;
  /** A shadow's outcomes, summed over the servers: agree, disagree, failed, skipped. */
  outcomes: Record<string, number>;
}

/**
 * The versions of `model` the servers hold, from their /metrics: one entry per version, shadow
 * outcomes summed over the servers. Empty when the servers say nothing of versions (older images).
 */
export async function fetchVersions(urls: string[], model: string, security?: ClientSecurity): Promise<VersionOnServers[]> {
  const held = new Map<string, VersionOnServers>();
  for (const base of urls) {
    const url = `${base.replace(/\/$/, '')}/metrics`;
    const answer = await getText(url, TIMEOUT_MS, security);
    if (!answer) throw environmentError(`cannot reach ${url}`, 'check the URL and that the server is up');
    if (answer.status !== 200)
      throw environmentError(
        `${url} answered HTTP ${answer.status}`,
        answer.status === 401 ? 'the server asks for a token on /metrics (server.auth.metrics): set MLOPS_TOKEN or pass --token-file' : undefined,
      );
    for (const { labels } of samples(answer.body, 'mlops_model_info')) {
      if (labels.name !== model || held.has(labels.version)) continue;
      held.set(labels.version, {
        version: labels.version,
        role: labels.role === 'shadow' ? 'shadow' : 'serving',
        weight: Number(labels.weight ?? 1),
        outcomes: {},
      });
    }
    for (const { labels, value } of samples(answer.body, 'mlops_shadow_agreement_total')) {
      if (labels.model !== model) continue;
      const entry = held.get(labels.version) ?? { version: labels.version, role: 'shadow' as const, weight: 0, outcomes: {} };
      held.set(labels.version, entry);
      entry.outcomes[labels.outcome] = (entry.outcomes[labels.outcome] ?? 0) + value;
    }
  }
  return [...held.values()];
}

/** A reference profile file: --reference, or the last build's copy. */
export async function readProfileFile(file: string, shown: string): Promise<{ profile: ReferenceProfile; sha256: string }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch {
    throw inputError(
      `${shown}: cannot be read`,
      'pass --reference <profile.json>, or run `mlops build` first: it keeps the profile in .mlops/reference-profile.json',
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw inputError(`${shown}: not valid JSON`, 'pass a profile written by `mlops build`');
  }
  const problem = profileProblem(parsed);
  if (problem) throw inputError(`${shown}: ${problem}`, 'pass a profile written by `mlops build`');
  return { profile: parsed as ReferenceProfile, sha256: profileSha256(bytes) };
}

/** "1h", "30m", "2d", "90s": a PromQL range. */
export function parseSince(text: string): string {
  if (!/^\d+[smhdw]$/.test(text.trim())) throw inputError(`--since ${text}: expected a duration like 30m, 1h or 7d`, 'a whole number and one of s, m, h, d, w');
  return text.trim();
}

interface PromVector {
  status?: string;
  error?: string;
  data?: { resultType?: string; result?: { metric: Record<string, string>; value: [number, string] }[] };
}

/**
 * The counters summed over every replica through the Prometheus HTTP API:
 * increase() over the range, so restarts (counter resets) are handled by
 * Prometheus, and only series of this reference are summed.
 */
export async function fromPrometheus(base: string, reference: { profile: ReferenceProfile; sha256: string }, since: string): Promise<LiveSource> {
  const root = base.replace(/\/$/, '');
  const selector = `{reference="${reference.sha256.slice(0, 12)}"}`;
  const query = async (promql: string) => {
    const { status, body } = await getJson(`${root}/api/v1/query?query=${encodeURIComponent(promql)}`, `Prometheus at ${base}`);
    const vector = body as PromVector;
    if (status !== 200 || vector?.status !== 'success') {
      throw environmentError(`Prometheus at ${base} refused the query ${promql}: ${vector?.error ?? `HTTP ${status}`}`);
    }
    return vector.data?.result ?? [];
  };
  const rowsQuery = `sum(increase(mlops_profiled_rows_total${selector}[${since}]))`;
  const rows = await query(rowsQuery);
  if (rows.length === 0) {
    throw environmentError(
      `Prometheus at ${base} has no series for ${rowsQuery}`,
      'check that it scrapes the servers /metrics, and that they serve this reference profile (--reference, or the last build)',
    );
  }
  const { features, prediction } = countedSlots(reference.profile);
  const counts: LiveCounts = { rows: Math.round(Number(rows[0].value[1])), features: {}, prediction: null };
  for (const f of features) counts.features[f.name] = new Array<number>(slotWidth(f)).fill(0);
  const featureIndex = new Map(features.map((f) => [f.name, f]));
  for (const series of await query(`sum by (feature, bin) (increase(mlops_feature_bin_total${selector}[${since}]))`)) {
    const f = featureIndex.get(series.metric.feature);
    if (f) counts.features[f.name][1 + Number(series.metric.bin)] = Number(series.value[1]);
  }
  for (const series of await query(`sum by (feature, side) (increase(mlops_feature_out_of_range_total${selector}[${since}]))`)) {
    const f = featureIndex.get(series.metric.feature);
    if (f) counts.features[f.name][series.metric.side === 'below' ? 0 : f.edges.length] = Number(series.value[1]);
  }
  for (const series of await query(`sum by (feature) (increase(mlops_feature_missing_total${selector}[${since}]))`)) {
    const f = featureIndex.get(series.metric.feature);
    if (f) counts.features[f.name][f.edges.length + 1] = Number(series.value[1]);
  }
  if (prediction) {
    const width = slotWidth(prediction);
    counts.prediction = new Array<number>(width).fill(0);
    if (prediction.kind === 'value') {
      const bins = prediction.edges!.length - 1;
      for (const series of await query(`sum by (bin) (increase(mlops_prediction_bin_total${selector}[${since}]))`)) {
        const b = series.metric.bin;
        counts.prediction[b === 'below' ? 0 : b === 'above' ? bins + 1 : b === 'missing' ? bins + 2 : 1 + Number(b)] = Number(series.value[1]);
      }
    } else {
      const index = new Map(prediction.classes!.map((c, i) => [c, i]));
      for (const series of await query(`sum by (class) (increase(mlops_prediction_class_total${selector}[${since}]))`)) {
        counts.prediction[index.get(series.metric.class) ?? prediction.classes!.length] += Number(series.value[1]);
      }
    }
  }
  return {
    from: [base],
    profile: reference.profile,
    referenceSha256: reference.sha256,
    counts,
    span: `increase over the last ${since} in Prometheus, summed over every server`,
    model: null,
  };
}
