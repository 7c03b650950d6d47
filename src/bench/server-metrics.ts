import { getText } from '../http/ready.js';
import type { ClientSecurity } from '../protocol/client-security.js';
import { samples } from '../metrics/exposition.js';

export interface ServerSideTimes {
  /** Mean ONNX Runtime time per run, and mean wait before a run, in ms; mean rows per run. */
  inferenceMeanMs: number | null;
  queueMeanMs: number | null;
  batchSizeMean: number | null;
}

type Counters = Record<string, number>;

/**
 * The sums and counts mlops servers export, over every version of `model` (a server of several models
 * labels each series with its model; older servers label none); null when the server has no /metrics.
 */
export async function scrapeCounters(baseUrl: string, security?: ClientSecurity, model?: string): Promise<Counters | null> {
  const answer = await getText(`${baseUrl.replace(/\/$/, '')}/metrics`, 2000, security);
  if (answer?.status !== 200) return null;
  const text = answer.body;
  const out: Counters = {};
  for (const name of [
    'mlops_inference_duration_seconds_sum',
    'mlops_inference_duration_seconds_count',
    'mlops_inference_queue_duration_seconds_sum',
    'mlops_inference_queue_duration_seconds_count',
    'mlops_batch_size_sum',
    'mlops_batch_size_count',
  ]) {
    for (const sample of samples(text, name)) {
      if (model !== undefined && sample.labels.model !== undefined && sample.labels.model !== model) continue;
      out[name] = (out[name] ?? 0) + sample.value;
    }
  }
  return out;
}

/** What the server itself measured between two scrapes. */
export function serverTimes(before: Counters | null, after: Counters | null): ServerSideTimes | null {
  if (!before || !after) return null;
  const delta = (name: string) => (after[name] ?? 0) - (before[name] ?? 0);
  const mean = (sum: string, count: string, scale: number) => (delta(count) > 0 ? (delta(sum) / delta(count)) * scale : null);
  return {
    inferenceMeanMs: mean('mlops_inference_duration_seconds_sum', 'mlops_inference_duration_seconds_count', 1000),
    queueMeanMs: mean('mlops_inference_queue_duration_seconds_sum', 'mlops_inference_queue_duration_seconds_count', 1000),
    batchSizeMean: mean('mlops_batch_size_sum', 'mlops_batch_size_count', 1),
  };
}
