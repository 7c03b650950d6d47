// Issue 2: what the HTTP server adds over in-process ONNX Runtime, and what
// dynamic batching buys, for the breast cancer fixture (30 FP32 features).
import { readFileSync } from 'node:fs';
import { closedLoop } from '../dist/bench/closed-loop.js';
import { createLatencyHistogram, recordMs, summarize } from '../dist/bench/stats.js';
import { loadModel } from '../dist/model/session.js';
import { fixture, round, startServeProcess, table } from './lib.js';

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 3000);
const WARMUP_MS = 1000;

function firstRow() {
  const [, row] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').split('\n');
  return row.split(',').slice(0, -1).map(Number);
}

async function inProcess(row) {
  const model = await loadModel({ path: fixture('breast_cancer', 'model.onnx') });
  const feeds = () => ({ features: { data: Float32Array.from(row), dims: [1, 30] } });
  const until = (ms) => performance.now() + ms;
  for (const end = until(WARMUP_MS); performance.now() < end; ) await model.run(feeds());
  const histogram = createLatencyHistogram();
  let runs = 0;
  const started = performance.now();
  for (const end = until(DURATION_MS); performance.now() < end; runs++) {
    const t = performance.now();
    await model.run(feeds());
    recordMs(histogram, performance.now() - t);
  }
  const seconds = (performance.now() - started) / 1000;
  await model.release();
  return { runs, throughputRps: runs / seconds, latencyMs: summarize(histogram) };
}

async function server(args, row, concurrencies) {
  const body = Buffer.from(JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: row }] }));
  const running = await startServeProcess(['--model', fixture('breast_cancer', 'model.onnx'), ...args]);
  const out = {};
  try {
    // The HTTP round trip alone: a route that does no work.
    out.floor = await closedLoop({ url: `${running.url}/v2/health/live`, method: 'GET', concurrency: 1, durationMs: DURATION_MS, warmupMs: WARMUP_MS });
    for (const concurrency of concurrencies) {
      out[concurrency] = await closedLoop({
        url: `${running.url}/v2/models/breast_cancer/infer`,
        body,
        concurrency,
        durationMs: DURATION_MS,
        warmupMs: WARMUP_MS,
      });
    }
  } finally {
    await running.stop();
  }
  return out;
}

export async function run({ log }) {
  const row = firstRow();
  log('in-process session.run, batch 1');
  const local = await inProcess(row);
  const variants = [
    ['batching off', ['--no-batching']],
    ['batching on, wait 0 ms (default)', []],
    ['batching on, wait 1 ms', ['--batch-wait-ms', '1']],
    ['batching on, wait 2 ms', ['--batch-wait-ms', '2']],
  ];
  const servers = {};
  for (const [name, args] of variants) {
    log(`server, ${name}: concurrency 1 and 32`);
    servers[name] = await server(args, row, [1, 32]);
  }
  const chosen = servers['batching on, wait 0 ms (default)'];
  const results = {
    model: 'fixtures/breast_cancer/model.onnx',
    durationMs: DURATION_MS,
    inProcess: local,
    servers,
    headline: {
      inProcessP50Ms: local.latencyMs.p50,
      inProcessP99Ms: local.latencyMs.p99,
      inProcessRps: round(local.throughputRps, 0),
      serverP50MsC1: chosen[1].latencyMs.p50,
      serverP99MsC1: chosen[1].latencyMs.p99,
      serverRpsC32: round(chosen[32].throughputRps, 0),
      addedP50Ms: round(chosen[1].latencyMs.p50 - local.latencyMs.p50, 4),
      httpFloorP50Ms: chosen.floor.latencyMs.p50,
      addedOverHttpFloorP50Ms: round(chosen[1].latencyMs.p50 - chosen.floor.latencyMs.p50, 4),
      throughputRatioC32: round(chosen[32].throughputRps / local.throughputRps, 3),
    },
  };
  const h = results.headline;
  const markdown = [
    `Model: breast_cancer (30 FP32 features, MLP). One run per row; ${DURATION_MS / 1000} s each after ${WARMUP_MS / 1000} s warm-up. Server in its own process, load from this process over keep-alive HTTP on 127.0.0.1.`,
    '',
    table(
      ['what', 'p50 ms', 'p99 ms', 'throughput req/s'],
      [
        ['in-process session.run (batch 1, sequential)', local.latencyMs.p50, local.latencyMs.p99, round(local.throughputRps, 0)],
        ['HTTP floor: GET /v2/health/live, concurrency 1', chosen.floor.latencyMs.p50, chosen.floor.latencyMs.p99, round(chosen.floor.throughputRps, 0)],
        ...Object.entries(servers).flatMap(([name, byC]) => [
          [`server, ${name}, concurrency 1`, byC[1].latencyMs.p50, byC[1].latencyMs.p99, round(byC[1].throughputRps, 0)],
          [`server, ${name}, concurrency 32`, byC[32].latencyMs.p50, byC[32].latencyMs.p99, round(byC[32].throughputRps, 0)],
        ]),
      ],
    ),
    '',
    `Server adds ${h.addedP50Ms} ms at p50 (concurrency 1) over in-process, of which ${h.httpFloorP50Ms} ms is the HTTP round trip of a route that does nothing; the infer route adds ${h.addedOverHttpFloorP50Ms} ms over that floor. At concurrency 32 it keeps ${round(h.throughputRatioC32 * 100, 1)}% of in-process throughput (goals: < 0.2 ms, > 70%). The load generator shares the 2 cores with the server.`,
  ].join('\n');
  return { results, markdown };
}
