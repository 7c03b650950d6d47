// Issue 5: `mlops bench --url` against autocannon on the same server at the
// same concurrency. Throughput and p50 should agree within 10%. autocannon
// records latency in whole milliseconds, so its p50 is also compared by mean.
import autocannon from 'autocannon';
import { fixture, mlopsJson, round, startServeProcess, table } from './lib.js';

const CONCURRENCY = 32;
const SECONDS = 5;

export async function run({ log }) {
  const server = await startServeProcess(['--model', fixture('breast_cancer', 'model.onnx')]);
  try {
    const row = Array.from({ length: 30 }, (_, i) => (i % 7) / 7);
    const body = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: row }] });
    const ours = [];
    const theirs = [];
    for (let i = 0; i < 3; i++) {
      log(`mlops bench --url, concurrency ${CONCURRENCY}, round ${i + 1}/3`);
      const { report } = await mlopsJson(['bench', '--url', server.url, '--concurrency', String(CONCURRENCY), '--duration', `${SECONDS}s`, '--warmup', '1s', '--model', fixture('breast_cancer', 'model.onnx')]);
      ours.push(report.runs[0]);
      log(`autocannon, ${CONCURRENCY} connections, round ${i + 1}/3`);
      const result = await autocannon({
        url: `${server.url}/v2/models/breast_cancer/infer`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        connections: CONCURRENCY,
        duration: SECONDS,
      });
      theirs.push(result);
    }
    const pick = (list, f) => list.map(f).sort((a, b) => a - b)[1];
    const summary = {
      mlops: { throughputRps: pick(ours, (r) => r.throughputRps), p50Ms: pick(ours, (r) => r.latencyMs.p50), meanMs: pick(ours, (r) => r.latencyMs.mean) },
      autocannon: {
        throughputRps: pick(theirs, (r) => r.requests.average),
        p50Ms: pick(theirs, (r) => r.latency.p50),
        meanMs: pick(theirs, (r) => r.latency.average),
        errors: theirs.reduce((n, r) => n + r.errors + r.non2xx, 0),
      },
    };
    const diff = (a, b) => round(Math.abs(a - b) / b, 3);
    const pct = (d) => `${round(d * 100, 1)}%`;
    summary.relativeDifference = {
      throughput: diff(summary.mlops.throughputRps, summary.autocannon.throughputRps),
      p50: diff(summary.mlops.p50Ms, summary.autocannon.p50Ms),
      mean: diff(summary.mlops.meanMs, summary.autocannon.meanMs),
    };
    const within = (d) => (d <= 0.1 ? 'within 10%' : 'over 10%');
    const markdown = [
      `breast_cancer served by \`mlops serve\`; ${CONCURRENCY} concurrent clients, ${SECONDS} s a round, median of 3 rounds each.`,
      '',
      table(
        ['', 'mlops bench', 'autocannon', 'difference'],
        [
          ['throughput req/s', round(summary.mlops.throughputRps, 0), round(summary.autocannon.throughputRps, 0), `${pct(summary.relativeDifference.throughput)} (${within(summary.relativeDifference.throughput)})`],
          ['p50 ms', summary.mlops.p50Ms, summary.autocannon.p50Ms, `${pct(summary.relativeDifference.p50)} (${within(summary.relativeDifference.p50)}; autocannon's latency is in whole ms)`],
          ['mean ms', round(summary.mlops.meanMs, 3), round(summary.autocannon.meanMs, 3), `${pct(summary.relativeDifference.mean)} (${within(summary.relativeDifference.mean)})`],
        ],
      ),
    ].join('\n');
    return { results: summary, markdown };
  } finally {
    await server.stop();
  }
}
