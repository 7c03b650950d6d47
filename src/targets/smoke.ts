import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Config } from '../config/defaults.js';
import { openSampleInputs, sampleSettings } from '../model/sample-inputs.js';
import { encodeRestRequest } from '../protocol/rest.js';
import { fetch as undiciFetch, type Dispatcher } from 'undici';
import { authHeaders, tlsDispatcher, type ClientSecurity } from '../protocol/client-security.js';
import type { TensorSignature } from '../predict/predictor.js';
import type { DeployContext, FailureReason, ModelSignature, Release } from './types.js';

/** The raw smoke inputs: a 16x16 grey PNG (base64, as OIP JSON carries images) and a sentence. */
export const SMOKE_RAW = {
  image: 'iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAACXBIWXMAAAPoAAAD6AG1e1JrAAAAHElEQVQokWNoIBEwjGogAjAQowgZjGogBtA+lAAlhIAQFdpNuQAAAABJRU5ErkJggg==',
  text: 'mlops smoke test',
};

/** A smoke request's body for a model that takes `takes` raw: an OIP v2 request, or v1 instances. */
export function rawSmokeBody(takes: 'image' | 'text', form: 'oip' | 'instances'): string {
  if (form === 'instances') return JSON.stringify({ instances: [takes === 'image' ? { b64: SMOKE_RAW.image } : SMOKE_RAW.text] });
  return JSON.stringify({ inputs: [{ name: takes, datatype: 'BYTES', shape: [1], data: [SMOKE_RAW[takes]] }] });
}

/** The smoke request's inputs as config makes them: one row, the data file's first entry or seeded random values, the same every time. */
export function configuredSampleInputs(config: Config, projectDir: string): DeployContext['sampleInputs'] {
  const settings = sampleSettings(config.model, { projectDir, cwd: projectDir }, 7);
  return async (inputs) => (await openSampleInputs(inputs, settings, projectDir)).feeds(1, 0);
}

/**
 * One inference with the configured sample input (model.shapes, model.inputData), checked for a well-formed answer:
 * status 200, every output the model declares, each with data matching its shape.
 */
export async function smokeTest(
  baseUrl: string,
  release: Release,
  sampleInputs: DeployContext['sampleInputs'],
  headers: Record<string, string> = {},
  security?: ClientSecurity,
): Promise<void> {
  // AbortSignal.timeout's timer does not hold the process open; this one does, so a stalled fetch still times out.
  const guard = setTimeout(() => undefined, 25_000);
  try {
    await smoke(baseUrl, release, sampleInputs, { ...headers, ...authHeaders(security) }, tlsDispatcher(security));
  } finally {
    clearTimeout(guard);
  }
}

async function smoke(
  baseUrl: string,
  release: Release,
  sampleInputs: DeployContext['sampleInputs'],
  headers: Record<string, string>,
  dispatcher: Dispatcher | undefined,
): Promise<void> {
  const base = baseUrl.replace(/\/$/, '');
  const modelName = release.modelName;
  // undici's fetch: it takes a dispatcher with the CA and client certificate for https://.
  const fetch = (url: string, init: Parameters<typeof undiciFetch>[1]) => undiciFetch(url, { ...init, ...(dispatcher ? { dispatcher } : {}) });
  const get = await fetch(`${base}/v2/models/${encodeURIComponent(modelName)}`, { headers, signal: AbortSignal.timeout(10_000) });
  if (get.status !== 200) throw new Error(`GET /v2/models/${modelName} answered HTTP ${get.status}: ${(await get.text()).slice(0, 200)}`);
  const meta = (await get.json()) as { inputs: TensorSignature[]; outputs: TensorSignature[]; processing?: { input?: 'image' | 'text' | null } };
  // The image's labelled signature names symbolic dimensions; the server reports only sizes.
  const inputs = release.signature?.inputs ?? meta.inputs;
  // A model that takes images or texts is asked as its clients ask it: the raw input through the server's own preprocessing.
  const raw = meta.processing?.input ?? release.takes;
  const body = raw ? rawSmokeBody(raw, 'oip') : encodeRestRequest(inputs, await sampleInputs(inputs), { binary: false }).body;
  const res = await fetch(`${base}/v2/models/${encodeURIComponent(modelName)}/infer`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`inference answered HTTP ${res.status}: ${text.slice(0, 200)}`);
  checkOutputs(meta.outputs, JSON.parse(text));
  // An image of several models: each answers, or the release does not take traffic.
  for (const other of release.otherModels ?? []) {
    const route = `/v2/models/${encodeURIComponent(other)}`;
    const got = await fetch(`${base}${route}`, { headers, signal: AbortSignal.timeout(10_000) });
    if (got.status !== 200) throw new Error(`GET ${route} answered HTTP ${got.status}: ${(await got.text()).slice(0, 200)}`);
    const otherMeta = (await got.json()) as { inputs: TensorSignature[]; outputs: TensorSignature[] };
    const answer = await fetch(`${base}${route}/infer`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: encodeRestRequest(otherMeta.inputs, await sampleInputs(otherMeta.inputs), { binary: false }).body,
      signal: AbortSignal.timeout(10_000),
    });
    const answered = await answer.text();
    if (answer.status !== 200) throw new Error(`model '${other}': inference answered HTTP ${answer.status}: ${answered.slice(0, 200)}`);
    checkOutputs(otherMeta.outputs, JSON.parse(answered));
  }
}

/** An OIP v2 answer holds every declared output, each with finite data matching its shape. */
export function checkOutputs(outputs: TensorSignature[], answer: unknown): void {
  const given = (answer as { outputs?: { name: string; shape: number[]; data: unknown[] }[] } | null)?.outputs;
  for (const spec of outputs) {
    const out = given?.find((o) => o.name === spec.name);
    if (!out) throw new Error(`inference answer has no output '${spec.name}'`);
    const size = out.shape.reduce((n, d) => n * d, 1);
    if (!Array.isArray(out.data) || out.data.length !== size)
      throw new Error(`output '${spec.name}' has ${out.data?.length ?? 0} values for shape [${out.shape.join(', ')}]`);
    // JSON has no NaN or Infinity: servers write them as null.
    if (out.data.some((v) => v === null || (typeof v === 'number' && !Number.isFinite(v)))) throw new Error(`output '${spec.name}' holds non-finite values`);
  }
}

/** An instances answer ({"predictions": [...]}) holds one finite prediction per row sent. */
export function checkPredictions(answer: unknown, rows: number): void {
  const predictions = (answer as { predictions?: unknown } | null)?.predictions;
  if (!Array.isArray(predictions)) throw new Error(`the answer has no "predictions" array: ${JSON.stringify(answer)?.slice(0, 200)}`);
  if (predictions.length !== rows) throw new Error(`the answer has ${predictions.length} predictions for ${rows} instances`);
  const leaves = JSON.stringify(predictions);
  if (/\bnull\b/.test(leaves)) throw new Error('the predictions hold non-finite values (null)');
}

/**
 * One OIP request POSTed straight to a platform's scoring route (Azure ML's scoring URI, which
 * forwards to the server's infer route and has no metadata route): the failure message, or undefined.
 */
export async function smokeScoringRoute(ctx: DeployContext, url: string, release: Release, headers: Record<string, string>): Promise<string | undefined> {
  const signature = release.signature;
  if (!signature) {
    ctx.log(`warning: ${release.image} carries no model signature label, so no smoke request could be made`);
    return undefined;
  }
  const guard = setTimeout(() => undefined, 65_000);
  try {
    const body = release.takes
      ? rawSmokeBody(release.takes, 'oip')
      : encodeRestRequest(signature.inputs, await ctx.sampleInputs(signature.inputs), { binary: false }).body;
    const res = await undiciFetch(url, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body,
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    if (res.status !== 200) return `inference answered HTTP ${res.status}: ${text.slice(0, 200)}`;
    checkOutputs(signature.outputs, JSON.parse(text));
    return undefined;
  } catch (error) {
    return `the smoke request to ${url} failed: ${(error as Error).message}`;
  } finally {
    clearTimeout(guard);
  }
}

export interface SmokeFailure {
  reason: FailureReason;
  message: string;
}

/**
 * A smoke test through a cloud CLI that reads its request from a file (aws, gcloud): `encode` writes
 * the request for the image's labelled signature, `send` runs and checks it. An image without that
 * label cannot be smoke-tested (a warning); anything `send` throws is a smoke failure.
 */
export async function smokeThroughCli(
  ctx: DeployContext,
  release: Release,
  via: string,
  encode: (signature: ModelSignature) => Promise<string | Uint8Array>,
  send: (requestFile: string, dir: string, signature: ModelSignature) => Promise<SmokeFailure | undefined>,
): Promise<SmokeFailure | undefined> {
  const signature = release.signature;
  if (!signature) {
    ctx.log(`warning: ${release.image} carries no model signature label, so no smoke request could be made`);
    return undefined;
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'mlops-smoke-'));
  try {
    const requestFile = path.join(dir, 'request.json');
    await writeFile(requestFile, await encode(signature));
    return await send(requestFile, dir, signature);
  } catch (error) {
    return { reason: 'smoke-failure', message: `the smoke test through ${via} failed: ${(error as Error).message}` };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
