/**
 * Samples read back from Prometheus' text exposition format, as mlops servers write it on /metrics
 * (one sample a line, no timestamps): what `mlops bench` and `mlops monitor` read of a server.
 */
export interface Sample {
  labels: Record<string, string>;
  value: number;
}

const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/** Every sample of the metric `name` (an exact series name, like x_bucket or x_total), with its labels unescaped. */
export function samples(text: string, name: string): Sample[] {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const out: Sample[] = [];
  for (const match of text.matchAll(new RegExp(`^${escaped}(?:\\{(.*)\\})? (\\S+)$`, 'gm'))) {
    const labels = Object.fromEntries([...(match[1] ?? '').matchAll(LABEL)].map((m) => [m[1], JSON.parse(`"${m[2]}"`) as string]));
    out.push({ labels, value: Number(match[2]) });
  }
  return out;
}
