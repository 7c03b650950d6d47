// Issue 5: `mlops bench --url` against autocannon on the same server at the
// same concurrency, sending byte-for-byte the same requests. Throughput and p50
// should agree within 10%. autocannon records latency in whole milliseconds, so
// the means are compared too.
import autocannon from 'autocannon';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { holdoutFeeds, requestBody } from '../dist/bench/inputs.js';
import { seededRandom } from '../dist/holdout/stats.js';
import { fixture, mlopsJson, round, startServeProcess, table } from './lib.js';

const CONCURRENCY = 32;
const SECONDS = 5;

const INPUTS = [{ name: 'features', datatype: 'FP32', shape: [-1, 30] }];

/** The same rows for both tools: a holdout for mlops bench, and autocannon's body encoded from it the same way. */
async function sameRequests(dir, rows) {
  const random = seededRandom(3);
  const sample = Array.from({ length: rows }, (_, r) => ({
    where: `row ${r}`,
    inputs: { features: Array.from({ length: 30 }, () => random() * 2 - 1) },
    shapes: { features: [30] },
    label: 0,
  }));
  const holdout = path.join(dir, `rows-${rows}.jsonl`);
  await writeFile(holdout, sample.map((r) => JSON.stringify({ features: r.inputs.features, label: 0 })).join('\n') + '\n');
  // JSON on both sides: autocannon sends these bytes, and `mlops bench` is told to send JSON too.
  return { holdout, body: requestBody(INPUTS, holdoutFeeds(INPUTS, sample, rows, 0), false).body };
}

async function compare(server, rows, log) {
  const dir = await mkdtemp(path.join(tmpdir(), 'mlops-crosscheck-'));
  const { holdout, body } = await sameRequests(dir, rows);
  const ours = [];
  const theirs = [];
  for (let i = 0; i < 3; i++) {
    log(`${rows} row(s) a request: mlops bench --url, round ${i + 1}/3`);
    const { report } = await mlopsJson([
      'bench',
      '--url',
      server.url,
      '--protocol',
      'rest-json',
      '--concurrency',
      String(CONCURRENCY),
      '--batch',
      String(rows),
      '--holdout',
      holdout,
      '--duration',
      `${SECONDS}s`,
      '--warmup',
      '1s',
      '--model',
      fixture('breast_cancer', 'model.onnx'),
    ]);
    ours.push(report.runs[0]);
    log(`${rows} row(s) a request: autocannon, round ${i + 1}/3`);
    theirs.push(
      await autocannon({
        url: `${server.url}/v2/models/breast_cancer/infer`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        connections: CONCURRENCY,
        duration: SECONDS,
      }),
    );
  }
  await rm(dir, { recursive: true, force: true });
  const pick = (list, f) => list.map(f).sort((a, b) => a - b)[1];
  const summary = {
    rows,
    mlops: { throughputRps: pick(ours, (r) => r.throughputRps), p50Ms: pick(ours, (r) => r.latencyMs?.p50), meanMs: pick(ours, (r) => r.latencyMs?.mean) },
    autocannon: {
      throughputRps: pick(theirs, (r) => r.requests.average),
      p50Ms: pick(theirs, (r) => r.latency.p50),
      meanMs: pick(theirs, (r) => r.latency.average),
      errors: theirs.reduce((n, r) => n + r.errors + r.non2xx, 0),
    },
  };
  const diff = (a, b) => round(Math.abs(a - b) / b, 3);
  summary.relativeDifference = {
    throughput: diff(summary.mlops.throughputRps, summary.autocannon.throughputRps),
    p50: diff(summary.mlops.p50Ms, summary.autocannon.p50Ms),
    mean: diff(summary.mlops.meanMs, summary.autocannon.meanMs),
  };
  return summary;
}

export async function run({ log }) {
  const server = await startServeProcess(['--model', fixture('breast_cancer', 'model.onnx')]);
  try {
    // One row a request puts p50 near 3 ms, where autocannon's whole-millisecond latency is a
    // 30% error by itself; 64 rows a request puts it where that error is small.
    const workloads = [await compare(server, 1, log), await compare(server, 64, log)];
    const pct = (d) => `${round(d * 100, 1)}%`;
    const within = (d) => (d <= 0.1 ? 'within 10%' : 'over 10%');
    const rows = workloads.flatMap((w) => [
      [
        `${w.rows} row(s): throughput req/s`,
        round(w.mlops.throughputRps, 0),
        round(w.autocannon.throughputRps, 0),
        `${pct(w.relativeDifference.throughput)} (${within(w.relativeDifference.throughput)})`,
      ],
      [`${w.rows} row(s): p50 ms`, w.mlops.p50Ms, w.autocannon.p50Ms, `${pct(w.relativeDifference.p50)} (${within(w.relativeDifference.p50)})`],
      [
        `${w.rows} row(s): mean ms`,
        round(w.mlops.meanMs, 3),
        round(w.autocannon.meanMs, 3),
        `${pct(w.relativeDifference.mean)} (${within(w.relativeDifference.mean)})`,
      ],
    ]);
    const markdown = [
      `breast_cancer served by \`mlops serve\`; ${CONCURRENCY} concurrent clients, ${SECONDS} s a round, median of 3 rounds each. autocannon records latency in whole milliseconds.`,
      '',
      table(['', 'mlops bench', 'autocannon', 'difference'], rows),
    ].join('\n');
    return { results: { workloads }, markdown };
  } finally {
    await server.stop();
  }
}
