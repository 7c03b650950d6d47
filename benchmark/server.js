// Issues 2 and 5: what the HTTP server adds over in-process ONNX Runtime, and
// what dynamic batching buys, for each fixture model. Every figure is taken by
// `mlops bench` itself: --local for the floor, --url against `mlops serve`.
import { fixture, mlopsJson, round, startServeProcess, table } from './lib.js';

const DURATION = process.env.BENCH_DURATION ?? '3s';
const MODELS = ['breast_cancer', 'wine', 'diabetes', 'multi_input'];

async function bench(args) {
  const { report } = await mlopsJson(['bench', '--duration', DURATION, '--warmup', '1s', ...args]);
  return report.runs;
}

async function serverRuns(model, serveArgs, concurrency) {
  const server = await startServeProcess(['--model', fixture(model, 'model.onnx'), ...serveArgs]);
  try {
    return { runs: await bench(['--url', server.url, '--concurrency', concurrency, '--model', fixture(model, 'model.onnx')]) };
  } finally {
    await server.stop();
  }
}

export async function run({ log }) {
  const rows = [];
  const results = {};
  for (const model of MODELS) {
    log(`${model}: in-process floor`);
    const [local] = await bench(['--local', '--concurrency', '1', '--model', fixture(model, 'model.onnx')]);
    const variants = { 'batching on': [], 'batching off': ['--no-batching'] };
    if (model === 'breast_cancer')
      Object.assign(variants, { 'batching on, wait 1 ms': ['--batch-wait-ms', '1'], 'batching on, wait 2 ms': ['--batch-wait-ms', '2'] });
    results[model] = { inProcess: local, server: {} };
    rows.push([model, 'in-process session.run', '1', local.latencyMs?.p50, local.latencyMs?.p99, round(local.throughputRps, 0)]);
    for (const [name, args] of Object.entries(variants)) {
      log(`${model}: server, ${name}`);
      const { runs } = await serverRuns(model, args, '1,32');
      results[model].server[name] = runs;
      for (const r of runs) rows.push([model, `server, ${name}`, String(r.concurrency), r.latencyMs?.p50, r.latencyMs?.p99, round(r.throughputRps, 0)]);
    }
  }
  const bc = results.breast_cancer;
  const c1 = bc.server['batching on'][0];
  const c32 = bc.server['batching on'][1];
  const headline = {
    inProcessP50Ms: bc.inProcess.latencyMs?.p50,
    serverP50MsC1: c1.latencyMs?.p50,
    addedP50Ms: round(c1.latencyMs?.p50 - bc.inProcess.latencyMs?.p50, 4),
    throughputRatioC32: round(c32.throughputRps / bc.inProcess.throughputRps, 3),
    batchingSpeedupC32: round(c32.throughputRps / bc.server['batching off'][1].throughputRps, 2),
  };
  const markdown = [
    `Each model served by \`mlops serve\` in its own process and loaded by \`mlops bench --url\` (one load thread, binary tensors: its default) on the same 2-core machine; ${DURATION} a run after 1 s of warm-up; one row a request.`,
    '',
    table(['model', 'what', 'concurrency', 'p50 ms', 'p99 ms', 'req/s'], rows),
    '',
    `breast_cancer: the server adds ${headline.addedP50Ms} ms at p50 over in-process (goal < 0.2 ms); at concurrency 32 it keeps ${round(headline.throughputRatioC32 * 100, 1)}% of in-process throughput (goal > 70%); dynamic batching gives ${headline.batchingSpeedupC32}x the throughput of no batching at concurrency 32.`,
  ].join('\n');
  return { results: { ...results, headline }, markdown };
}
