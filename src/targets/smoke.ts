import { randomFeeds } from '../model/random-feeds.js';
import { encodeRestRequest } from '../protocol/rest.js';
import type { TensorSignature } from '../predict/predictor.js';

/**
 * One inference with a generated input, checked for a well-formed answer:
 * status 200, every output the model declares, each with data matching its shape.
 */
export async function smokeTest(baseUrl: string, modelName: string, headers: Record<string, string> = {}): Promise<void> {
  // AbortSignal.timeout's timer does not hold the process open; this one does, so a stalled fetch still times out.
  const guard = setTimeout(() => undefined, 25_000);
  try {
    await smoke(baseUrl, modelName, headers);
  } finally {
    clearTimeout(guard);
  }
}

async function smoke(baseUrl: string, modelName: string, headers: Record<string, string>): Promise<void> {
  const base = baseUrl.replace(/\/$/, '');
  const get = await fetch(`${base}/v2/models/${encodeURIComponent(modelName)}`, { headers, signal: AbortSignal.timeout(10_000) });
  if (get.status !== 200) throw new Error(`GET /v2/models/${modelName} answered HTTP ${get.status}: ${(await get.text()).slice(0, 200)}`);
  const meta = (await get.json()) as { inputs: TensorSignature[]; outputs: TensorSignature[] };
  const feeds = randomFeeds(meta.inputs, 1, 7);
  const body = encodeRestRequest(meta.inputs, feeds, { binary: false }).body;
  const res = await fetch(`${base}/v2/models/${encodeURIComponent(modelName)}/infer`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`inference answered HTTP ${res.status}: ${text.slice(0, 200)}`);
  const answer = JSON.parse(text) as { outputs?: { name: string; shape: number[]; data: unknown[] }[] };
  for (const spec of meta.outputs) {
    const out = answer.outputs?.find((o) => o.name === spec.name);
    if (!out) throw new Error(`inference answer has no output '${spec.name}'`);
    const size = out.shape.reduce((n, d) => n * d, 1);
    if (!Array.isArray(out.data) || out.data.length !== size) throw new Error(`output '${spec.name}' has ${out.data?.length ?? 0} values for shape [${out.shape.join(', ')}]`);
    if (out.data.some((v) => typeof v === 'number' && !Number.isFinite(v))) throw new Error(`output '${spec.name}' holds non-finite values`);
  }
}
