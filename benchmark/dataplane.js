// Issue 10: the data plane, side by side in one run.
// 1. Small requests (breast_cancer MLP, one row of JSON): mlops serve against a
//    hand-written node:http + onnxruntime-node server and a node:http server that
//    only parses the JSON, all loaded by autocannon with the same body; server CPU
//    per request read from /proc/<pid>/stat (every thread of the process).
// 2. A 3x224x224 image model through JSON, binary tensors and gRPC (mlops bench's
//    own load generator, which speaks all three), against in-process ONNX Runtime.
// 3. Liveness under full inference load, inference on worker threads against on
//    the main thread; and the worker count, by throughput and memory.
// 4. The cost of profiling live traffic for `mlops monitor` (issue 11): the same
//    servers with and without a reference profile, interleaved.
// 5. The cost of the inference log (issue 12): off, 1% and 100% of requests to a
//    file, and 100% to a collector that is down, interleaved.
// 6. The platform contracts (issue 13): the same row to /v2 infer, and to SageMaker's /invocations
//    as an OIP body, as instances and as CSV; Vertex's instances route takes /invocations' path.
// 7. Explanations (issue 27): the explain route's latency per row at the default budget (breast_cancer,
//    256 coalitions x 100 background rows), and inference throughput while explanations run against
//    the share of the server's CPU the explanations took.
// 8. Two models in one server against two servers (issue 27): breast_cancer and wine, each loaded by its
//    own autocannon at the same time with the same concurrency; total throughput, server CPU per request
//    and resident memory of the server process(es).
// 9. Under attack (issue 34): an honest client at concurrency 8, alone and while each of the attacks of
//    findings 1 to 3 runs (gRPC streams without a token holding most of a 16 MB message, whole 12 MB
//    messages without a token, an insider's stalled uploads filling the body budget); its success rate
//    and p99, and the server's resident memory after.
// 10. The response cache (issue 34): the same row again and again, the cache on against off.
// BENCH_BASELINE=<checkout> adds that checkout's `mlops serve` to parts 1, 3 (liveness) and 9 (before/after).
import autocannon from 'autocannon';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fixture, median, mlopsJson, round, ROOT, table } from './lib.js';
import { grpcLargeMessages, grpcStreamFlood, stalledUploads } from './attacks.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TICK_US = 1e6 / 100; // /proc times are in clock ticks of 1/100 s (CLK_TCK on Linux)

/** utime + stime of a process, every thread, in microseconds. */
export function cpuMicros(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_US;
}
const peakRssMiB = (pid) => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

async function freePort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/** Runs `command` on one core with taskset, where it exists (Linux); as it is elsewhere. */
export const HAS_TASKSET = spawnSync('taskset', ['-V']).status === 0;
const onCore = (core, command, args) => (HAS_TASKSET && core !== undefined ? ['taskset', ['-c', String(core), command, ...args]] : [command, args]);

/** A server in its own process that prints one JSON document with its url when it listens; `core`: pinned to it. */
export async function startProcess(args, env = {}, core) {
  const child = spawn(...onCore(core, process.execPath, args), { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, CI: 'true', ...env } });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const started = Date.now();
  for (;;) {
    try {
      const doc = JSON.parse(out);
      return { ...doc, pid: child.pid, stop: () => new Promise((r) => (child.on('exit', r), child.kill('SIGTERM'))) };
    } catch {
      if (child.exitCode !== null || Date.now() - started > 30_000) throw new Error(`${args.join(' ')} did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

const serve = async (bin, model, extra = [], env = {}) => {
  const grpcPort = await freePort();
  const s = await startProcess(
    [bin, 'serve', '--model', fixture(model, 'model.onnx'), '--port', '0', '--grpc-port', String(grpcPort), '--json', ...extra],
    env,
  );
  return { ...s, grpcUrl: `grpc://127.0.0.1:${grpcPort}` };
};

async function cannon(url, body, connections) {
  const options = { url, method: 'POST', body, connections, headers: { 'content-type': 'application/json' } };
  await autocannon({ ...options, duration: 1 });
  return options;
}

async function smallRequests(log) {
  const [, ...rows] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split('\n');
  const body = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: rows[0].split(',').slice(0, -1).map(Number) }] });
  const ours = path.join(ROOT, 'bin/mlops.js');
  // Servers on core 0, the load generator (this process) on core 1: neither takes the other's CPU.
  const SERVER_CORE = 0;
  if (HAS_TASKSET) spawnSync('taskset', ['-cp', '1', String(process.pid)]);
  const mlops = (bin, env = {}) =>
    startProcess([bin, 'serve', '--model', fixture('breast_cancer', 'model.onnx'), '--port', '0', '--grpc-port', '0', '--json'], env, SERVER_CORE);
  const servers = {
    'mlops serve': () => mlops(ours),
    // Batching gathers the requests read in one poll phase with a setImmediate: one more turn of the event
    // loop a request than a server that runs each at once. Off, each runs at once, as the hand-written one does.
    'mlops serve, batching off': () => mlops(ours, { MLOPS_BATCHING: 'false' }),
    ...(process.env.BENCH_BASELINE ? { 'mlops serve (before)': () => mlops(path.join(process.env.BENCH_BASELINE, 'bin/mlops.js')) } : {}),
    'hand-written node:http + onnxruntime-node': () =>
      startProcess([path.join(ROOT, 'benchmark/handwritten-server.js'), fixture('breast_cancer', 'model.onnx')], {}, SERVER_CORE),
    'no-op node:http (parses the JSON only)': () => startProcess([path.join(ROOT, 'benchmark/handwritten-server.js'), '-', 'noop'], {}, SERVER_CORE),
  };
  const samples = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, start] of Object.entries(servers)) {
      const server = await start();
      const url = name.startsWith('mlops') ? `${server.url}/v2/models/breast_cancer/infer` : server.url;
      for (const connections of [1, 32]) {
        log(`round ${round + 1}/${ROUNDS}: ${name}, concurrency ${connections}`);
        const options = await cannon(url, body, connections);
        const before = cpuMicros(server.pid);
        const result = await autocannon({ ...options, duration: SECONDS });
        const cpu = (cpuMicros(server.pid) - before) / result.requests.total;
        if (result.non2xx || result.errors) throw new Error(`${name}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
        ((samples[name] ??= {})[connections] ??= []).push({ rps: result.requests.average, p50: result.latency.p50, cpu });
      }
      await server.stop();
    }
  }
  if (HAS_TASKSET) spawnSync('taskset', ['-cp', '0-63', String(process.pid)]);
  const summary = {};
  const rowsOut = [];
  for (const [name, byConcurrency] of Object.entries(samples)) {
    for (const [connections, runs] of Object.entries(byConcurrency)) {
      const s = { rps: median(runs.map((r) => r.rps)), p50Ms: median(runs.map((r) => r.p50)), cpuMicrosPerRequest: round(median(runs.map((r) => r.cpu)), 1) };
      (summary[name] ??= {})[connections] = s;
      rowsOut.push([name, connections, round(s.rps, 0), s.p50Ms, s.cpuMicrosPerRequest]);
    }
  }
  const ourServer = summary['mlops serve'];
  const unbatched = summary['mlops serve, batching off'];
  const hand = summary['hand-written node:http + onnxruntime-node'];
  const noop = summary['no-op node:http (parses the JSON only)'];
  const goals = {
    c1ThroughputVsHandWritten: round(ourServer[1].rps / hand[1].rps, 3),
    c1ThroughputVsHandWrittenBatchingOff: round(unbatched[1].rps / hand[1].rps, 3),
    c32CpuVsNoop: round(ourServer[32].cpuMicrosPerRequest / noop[32].cpuMicrosPerRequest, 3),
    c32ThroughputVsNoop: round(ourServer[32].rps / noop[32].rps, 3),
    c32ThroughputVsHandWritten: round(ourServer[32].rps / hand[32].rps, 3),
  };
  const before = summary['mlops serve (before)'];
  const change = before
    ? Object.fromEntries(
        [1, 32].map((c) => [
          c,
          { throughput: round(ourServer[c].rps / before[c].rps, 3), cpuPerRequest: round(ourServer[c].cpuMicrosPerRequest / before[c].cpuMicrosPerRequest, 3) },
        ]),
      )
    : undefined;
  const markdown = [
    `autocannon, ${SECONDS} s a run after 1 s of warm-up, ${ROUNDS} rounds with the servers interleaved; medians. One row of breast_cancer features as JSON, the same body for every server. The hand-written server sets ONNX Runtime's intra- and inter-op pools to one thread. ${HAS_TASKSET ? 'Each server pinned to core 0 and the load generator to core 1 (taskset). ' : ''}CPU: the server process's user + system time over the run (every thread), per request.`,
    '',
    table(['server', 'concurrency', 'req/s', 'p50 ms', 'server CPU µs/request'], rowsOut),
    '',
    `Concurrency 1: mlops serve does ${goals.c1ThroughputVsHandWritten}x the hand-written server's throughput (goal >= 1; ${goals.c1ThroughputVsHandWrittenBatchingOff}x with batching off). Concurrency 32: its CPU per request is ${goals.c32CpuVsNoop}x the no-op server's (goal <= 1.25), its throughput ${goals.c32ThroughputVsNoop}x the no-op server's (goal >= 0.8) and ${goals.c32ThroughputVsHandWritten}x the hand-written server's.`,
    ...(change
      ? [
          '',
          `Against the baseline checkout (BENCH_BASELINE): throughput ${change[1].throughput}x at concurrency 1 and ${change[32].throughput}x at 32; CPU per request ${change[1].cpuPerRequest}x and ${change[32].cpuPerRequest}x (goal: at most 1.02x).`,
        ]
      : []),
  ];
  return { results: { summary, goals, change }, markdown };
}

async function bench(args) {
  const { report } = await mlopsJson(['bench', '--duration', `${SECONDS}s`, '--warmup', '1s', ...args]);
  return report.runs;
}

async function imageModel(log) {
  const model = fixture('image_cnn', 'model.onnx');
  log('image_cnn: in-process ONNX Runtime');
  const [local] = await bench(['--local', '--model', model, '--concurrency', '1']);
  const server = await serve(path.join(ROOT, 'bin/mlops.js'), 'image_cnn');
  const rows = [['in-process session.run', '-', 1, round(local.throughputRps, 0), local.latencyMs?.p50, 1]];
  const results = { inProcess: { rps: local.throughputRps, p50Ms: local.latencyMs?.p50 }, served: {} };
  try {
    for (const protocol of ['rest-json', 'rest-binary', 'grpc']) {
      for (const concurrency of [1, 4]) {
        log(`image_cnn: ${protocol}, concurrency ${concurrency}`);
        const url = protocol === 'grpc' ? server.grpcUrl : server.url;
        const before = cpuMicros(server.pid);
        const [run] = await bench(['--url', url, '--protocol', protocol, '--concurrency', String(concurrency)]);
        const cpu = (cpuMicros(server.pid) - before) / (run.requests * (1 + 1 / SECONDS));
        const ratio = round(run.throughputRps / local.throughputRps, 3);
        (results.served[protocol] ??= {})[concurrency] = { rps: run.throughputRps, p50Ms: run.latencyMs?.p50, ratio, cpuMicrosPerRequest: round(cpu, 0) };
        rows.push([`mlops serve, ${protocol}`, round(cpu, 0), concurrency, round(run.throughputRps, 0), run.latencyMs?.p50, ratio]);
      }
    }
  } finally {
    await server.stop();
  }
  const best = (p) => Math.max(...Object.values(results.served[p]).map((r) => r.ratio));
  results.goal = { binary: best('rest-binary'), grpc: best('grpc'), json: best('rest-json') };
  const markdown = [
    `image_cnn (a 3x224x224 FP32 input: 602 KB as raw bytes, about 1.9 MB as JSON), one image a request, \`mlops bench\` with one load thread. Ratio: served throughput over in-process throughput at concurrency 1. Server CPU per request is approximate (it includes the warm-up).`,
    '',
    table(['what', 'server CPU µs/request', 'concurrency', 'req/s', 'p50 ms', 'ratio to in-process'], rows),
    '',
    `Best ratio: binary ${results.goal.binary}, gRPC ${results.goal.grpc}, JSON ${results.goal.json} (goal >= 0.8 with binary or gRPC).`,
  ];
  return { results, markdown };
}

/** GET /v2/health/live every 5 ms while `load` runs; latencies in ms, sorted. */
async function probeHealth(url, load) {
  const times = [];
  let done = false;
  load.finally(() => (done = true));
  while (!done) {
    const started = performance.now();
    await (await fetch(`${url}/v2/health/live`)).arrayBuffer();
    times.push(performance.now() - started);
    await new Promise((r) => setTimeout(r, 5));
  }
  return times.sort((a, b) => a - b);
}

async function liveness(log) {
  const rows = [];
  const results = {};
  for (const [name, extra, checkout] of [
    ['inference on worker threads (default: 2)', [], ROOT],
    ...(process.env.BENCH_BASELINE ? [['worker threads, the baseline checkout (BENCH_BASELINE)', [], process.env.BENCH_BASELINE]] : []),
    ['inference on the main thread (--workers 0, as before)', ['--workers', '0'], ROOT],
  ]) {
    log(`liveness under load: ${name}`);
    const server = await serve(path.join(checkout, 'bin/mlops.js'), 'image_cnn', extra);
    try {
      const load = bench(['--url', server.url, '--protocol', 'rest-binary', '--concurrency', '8']);
      const times = await probeHealth(server.url, load);
      const [run] = await load;
      const at = (q) => round(times[Math.min(times.length - 1, Math.floor(q * times.length))], 2);
      results[name] = { p50Ms: at(0.5), p99Ms: at(0.99), maxMs: round(times.at(-1), 2), probes: times.length, inferenceRps: run.throughputRps };
      rows.push([name, times.length, at(0.5), at(0.99), round(times.at(-1), 2), round(run.throughputRps, 0)]);
    } finally {
      await server.stop();
    }
  }
  const markdown = [
    'GET /v2/health/live every 5 ms while `mlops bench` keeps image_cnn busy (binary tensors, concurrency 8).',
    '',
    table(['server', 'probes', 'p50 ms', 'p99 ms', 'max ms', 'inference req/s meanwhile'], rows),
    '',
    `Liveness p99 with worker threads: ${results['inference on worker threads (default: 2)'].p99Ms} ms (goal <= 10 ms).`,
  ];
  return { results, markdown };
}

async function workerCount(log) {
  const rows = [];
  const results = {};
  for (const workers of [1, 2]) {
    log(`image_cnn with ${workers} worker(s)`);
    const server = await serve(path.join(ROOT, 'bin/mlops.js'), 'image_cnn', ['--workers', String(workers)]);
    try {
      const [run] = await bench(['--url', server.url, '--protocol', 'rest-binary', '--concurrency', '8']);
      results[workers] = { rps: run.throughputRps, p50Ms: run.latencyMs?.p50, peakRssMiB: round(peakRssMiB(server.pid), 1) };
      rows.push([workers, round(run.throughputRps, 0), run.latencyMs?.p50, results[workers].peakRssMiB]);
    } finally {
      await server.stop();
    }
  }
  return {
    results,
    markdown: [
      "server.workers on image_cnn, binary tensors at concurrency 8: throughput and the server's peak memory.",
      '',
      table(['workers', 'req/s', 'p50 ms', 'peak RSS MiB'], rows),
    ].join('\n'),
  };
}

/** Reference profiles for the profiling part: breast_cancer from its holdout, image_cnn from random images (it has no holdout). */
async function benchProfiles() {
  const { applyDefaults } = await import('../dist/config/normalize.js');
  const { buildReferenceProfile } = await import('../dist/monitor/reference.js');
  const { planFeatures, featureValue, PROFILE_FORMAT, PROFILE_VERSION } = await import('../dist/monitor/profile.js');
  const { quantileEdges, binCounts, shares } = await import('../dist/monitor/drift.js');
  const { inspectModel } = await import('../dist/model/inspect.js');
  const { probeFeeds } = await import('../dist/model/random-feeds.js');
  const dir = mkdtempSync(path.join(tmpdir(), 'mlops-bench-profile-'));
  const tabular = await buildReferenceProfile({
    modelPath: fixture('breast_cancer', 'model.onnx'),
    modelName: 'breast_cancer',
    config: applyDefaults({ test: { holdout: fixture('breast_cancer', 'holdout.csv') } }),
    projectDir: ROOT,
  });
  const info = await inspectModel(fixture('image_cnn', 'model.onnx'));
  const inputs = info.inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape.map((d) => (typeof d === 'number' && d > 0 ? d : -1)) }));
  const { features } = planFeatures(inputs, {});
  const feeds = probeFeeds(inputs, 32, 3);
  const data = feeds[inputs[0].name].data;
  const width = data.length / 32;
  const image = {
    format: PROFILE_FORMAT,
    version: PROFILE_VERSION,
    model: { name: 'image_cnn', sha256: info.sha256, inputs },
    windowRows: 10_000,
    bins: 10,
    source: { file: '32 random images', format: 'npy', rows: 32 },
    warnings: [],
    skipped: [],
    prediction: null,
    features: features.map((f) => {
      const values = Array.from({ length: 32 }, (_, r) => featureValue(f.stat, f.index, data, r * width, width));
      const edges = quantileEdges(Float64Array.from(values).sort(), 10);
      return { ...f, edges, shares: shares(binCounts(values, edges)), count: 32, mean: 0, std: 0, min: edges[0], max: edges[10] };
    }),
  };
  const files = { breast_cancer: path.join(dir, 'breast_cancer.json'), image_cnn: path.join(dir, 'image_cnn.json') };
  writeFileSync(files.breast_cancer, JSON.stringify(tabular));
  writeFileSync(files.image_cnn, JSON.stringify(image));
  return files;
}

async function profilingCost(log) {
  const files = await benchProfiles();
  const ours = path.join(ROOT, 'bin/mlops.js');
  const [, ...rows] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split('\n');
  const body = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: rows[0].split(',').slice(0, -1).map(Number) }] });
  const samples = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const profiled of [false, true]) {
      const name = profiled ? 'profiled' : 'not profiled';
      const server = await serve(ours, 'breast_cancer', profiled ? ['--profile', files.breast_cancer] : []);
      for (const connections of [1, 32]) {
        log(`profiling, round ${round + 1}/${ROUNDS}: breast_cancer ${name}, concurrency ${connections}`);
        const options = await cannon(`${server.url}/v2/models/breast_cancer/infer`, body, connections);
        const before = cpuMicros(server.pid);
        const result = await autocannon({ ...options, duration: SECONDS });
        if (result.non2xx || result.errors) throw new Error(`${name}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
        ((samples[`breast_cancer, JSON, concurrency ${connections}`] ??= {})[name] ??= []).push({
          rps: result.requests.average,
          cpu: (cpuMicros(server.pid) - before) / result.requests.total,
        });
      }
      await server.stop();
      const image = await serve(ours, 'image_cnn', profiled ? ['--profile', files.image_cnn] : []);
      log(`profiling, round ${round + 1}/${ROUNDS}: image_cnn ${name}, binary tensors, concurrency 4`);
      const before = cpuMicros(image.pid);
      const [run] = await bench(['--url', image.url, '--protocol', 'rest-binary', '--concurrency', '4']);
      ((samples['image_cnn, binary, concurrency 4'] ??= {})[name] ??= []).push({
        rps: run.throughputRps,
        cpu: (cpuMicros(image.pid) - before) / (run.requests * (1 + 1 / SECONDS)),
      });
      await image.stop();
    }
  }
  const results = {};
  const out = [];
  for (const [load, byName] of Object.entries(samples)) {
    const off = { rps: median(byName['not profiled'].map((r) => r.rps)), cpu: median(byName['not profiled'].map((r) => r.cpu)) };
    const on = { rps: median(byName.profiled.map((r) => r.rps)), cpu: median(byName.profiled.map((r) => r.cpu)) };
    results[load] = { off, on, throughputRatio: round(on.rps / off.rps, 3), cpuRatio: round(on.cpu / off.cpu, 3) };
    out.push([load, round(off.rps, 0), round(on.rps, 0), results[load].throughputRatio, round(off.cpu, 1), round(on.cpu, 1), results[load].cpuRatio]);
  }
  return {
    results,
    markdown: [
      `Profiling live traffic (issue 11): the same server with and without a reference profile (breast_cancer: 30 features + predicted class; image_cnn: 4 row statistics of a 150,528-value image), ${ROUNDS} rounds interleaved, medians. Goal: within 5% of unprofiled.`,
      '',
      table(['load', 'req/s off', 'req/s on', 'throughput on/off', 'CPU µs/req off', 'CPU µs/req on', 'CPU on/off'], out),
    ].join('\n'),
  };
}

async function inferenceLogCost(log) {
  const ours = path.join(ROOT, 'bin/mlops.js');
  const dir = mkdtempSync(path.join(tmpdir(), 'mlops-bench-log-'));
  const [, ...rows] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split('\n');
  const body = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: rows[0].split(',').slice(0, -1).map(Number) }] });
  const settings = {
    off: {},
    '1% to a file': { MLOPS_INFERENCE_LOG_SAMPLE: '0.01', MLOPS_INFERENCE_LOG_SINK: `file:${dir}/one-percent.jsonl` },
    '100% to a file': { MLOPS_INFERENCE_LOG_SAMPLE: '1', MLOPS_INFERENCE_LOG_SINK: `file:${dir}/all.jsonl` },
    '100% to a dead collector': { MLOPS_INFERENCE_LOG_SAMPLE: '1', MLOPS_INFERENCE_LOG_SINK: `http://127.0.0.1:${await freePort()}/events` },
  };
  const samples = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, env] of Object.entries(settings)) {
      const server = await serve(ours, 'breast_cancer', [], env);
      for (const connections of [1, 32]) {
        log(`inference log, round ${round + 1}/${ROUNDS}: ${name}, concurrency ${connections}`);
        const options = await cannon(`${server.url}/v2/models/breast_cancer/infer`, body, connections);
        const before = cpuMicros(server.pid);
        const result = await autocannon({ ...options, duration: SECONDS });
        if (result.non2xx || result.errors) throw new Error(`${name}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
        ((samples[`concurrency ${connections}`] ??= {})[name] ??= []).push({
          rps: result.requests.average,
          cpu: (cpuMicros(server.pid) - before) / result.requests.total,
          p99: result.latency.p99,
        });
      }
      await server.stop();
    }
  }
  const results = {};
  const out = [];
  for (const [load, byName] of Object.entries(samples)) {
    const med = (name, key) => median(byName[name].map((r) => r[key]));
    results[load] = {};
    for (const name of Object.keys(settings)) {
      const entry = { rps: med(name, 'rps'), cpu: med(name, 'cpu'), p99Ms: med(name, 'p99') };
      results[load][name] = { ...entry, throughputRatio: round(entry.rps / med('off', 'rps'), 3), cpuRatio: round(entry.cpu / med('off', 'cpu'), 3) };
      out.push([load, name, round(entry.rps, 0), results[load][name].throughputRatio, round(entry.cpu, 1), results[load][name].cpuRatio, entry.p99Ms]);
    }
  }
  return {
    results,
    markdown: [
      `The inference log (issue 12): breast_cancer, one row of JSON per request, the same server with the log off, on for 1% and 100% of requests (file sink), and on for 100% with the HTTP sink's collector down; ${ROUNDS} rounds interleaved, medians.`,
      '',
      table(['load', 'log', 'req/s', 'throughput vs off', 'CPU µs/req', 'CPU vs off', 'p99 ms'], out),
    ].join('\n'),
  };
}

async function contractCost(log) {
  const ours = path.join(ROOT, 'bin/mlops.js');
  const [, ...rows] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split('\n');
  const row = rows[0].split(',').slice(0, -1).map(Number);
  const oip = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: row }] });
  const routes = {
    '/v2/models/{name}/infer, OIP JSON': { path: '/v2/models/breast_cancer/infer', body: oip, type: 'application/json' },
    '/invocations, OIP JSON': { path: '/invocations', body: oip, type: 'application/json' },
    '/invocations, instances': { path: '/invocations', body: JSON.stringify({ instances: [row] }), type: 'application/json' },
    '/invocations, text/csv': { path: '/invocations', body: row.join(','), type: 'text/csv' },
  };
  const samples = {};
  const server = await serve(ours, 'breast_cancer');
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, route] of Object.entries(routes)) {
        for (const connections of [1, 32]) {
          log(`contracts, round ${round + 1}/${ROUNDS}: ${name}, concurrency ${connections}`);
          const options = { url: `${server.url}${route.path}`, method: 'POST', body: route.body, connections, headers: { 'content-type': route.type } };
          await autocannon({ ...options, duration: 1 });
          const before = cpuMicros(server.pid);
          const result = await autocannon({ ...options, duration: SECONDS });
          if (result.non2xx || result.errors) throw new Error(`${name}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
          ((samples[`concurrency ${connections}`] ??= {})[name] ??= []).push({
            rps: result.requests.average,
            cpu: (cpuMicros(server.pid) - before) / result.requests.total,
          });
        }
      }
    }
  } finally {
    await server.stop();
  }
  const results = {};
  const out = [];
  const first = Object.keys(routes)[0];
  for (const [load, byName] of Object.entries(samples)) {
    const med = (name, key) => median(byName[name].map((r) => r[key]));
    results[load] = {};
    for (const name of Object.keys(routes)) {
      const entry = { rps: med(name, 'rps'), cpu: med(name, 'cpu') };
      results[load][name] = { ...entry, throughputRatio: round(entry.rps / med(first, 'rps'), 3), cpuRatio: round(entry.cpu / med(first, 'cpu'), 3) };
      out.push([load, name, round(entry.rps, 0), results[load][name].throughputRatio, round(entry.cpu, 1), results[load][name].cpuRatio]);
    }
  }
  return {
    results,
    markdown: [
      `Platform contracts (issue 13): breast_cancer, one row per request, one server; the OIP route against SageMaker's /invocations with each body it takes (Vertex's AIP_PREDICT_ROUTE runs the instances path). ${ROUNDS} rounds interleaved, medians.`,
      '',
      table(['load', 'route, body', 'req/s', 'throughput vs /v2 infer', 'CPU µs/req', 'CPU vs /v2 infer'], out),
    ].join('\n'),
  };
}

const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

/**
 * Issue 22: 16 concurrent JSON bodies of nearly 16 MiB (server.maxBodyBytes) each, then idle. The server's
 * peak RSS, its RSS 2 s and 10 s after the burst, and what each request got; with the default
 * server.maxPendingBodyBytes (128 MiB: half the burst is refused 503) and with it raised to take the whole
 * burst, against the baseline checkout when given.
 */
async function bodyBurst(log) {
  const [, ...lines] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split('\n');
  const row = lines[0].split(',').slice(0, -1).map(Number);
  const rows = [];
  let length = 0;
  while (length < 15.5 * 2 ** 20) {
    const values = row.map((v, i) => v * (1 + ((rows.length * 31 + i) % 97) / 1000));
    rows.push(values);
    length += JSON.stringify(values).length + 1;
  }
  const body = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [rows.length, 30], data: rows }] });
  const variants = {
    'mlops serve (default budget, 128 MiB)': [path.join(ROOT, 'bin/mlops.js'), {}],
    'mlops serve (budget 512 MiB)': [path.join(ROOT, 'bin/mlops.js'), { MLOPS_MAX_PENDING_BODY_BYTES: String(512 * 2 ** 20) }],
    ...(process.env.BENCH_BASELINE ? { 'mlops serve (before)': [path.join(process.env.BENCH_BASELINE, 'bin/mlops.js'), {}] } : {}),
  };
  const results = {};
  const out = [];
  for (const [name, [bin, env]] of Object.entries(variants)) {
    log(`body burst: ${name}`);
    const server = await startProcess([bin, 'serve', '--model', fixture('breast_cancer', 'model.onnx'), '--port', '0', '--grpc-port', '0', '--json'], env);
    try {
      const idleBefore = rssMiB(server.pid);
      const codes = await Promise.all(
        Array.from({ length: 16 }, () =>
          fetch(`${server.url}/v2/models/breast_cancer/infer`, { method: 'POST', body }).then(async (r) => (await r.arrayBuffer(), r.status)),
        ),
      );
      const peak = peakRssMiB(server.pid);
      await new Promise((r) => setTimeout(r, 2000));
      const after2 = rssMiB(server.pid);
      await new Promise((r) => setTimeout(r, 8000));
      const after10 = rssMiB(server.pid);
      const tally = Object.entries(codes.reduce((t, c) => ({ ...t, [c]: (t[c] ?? 0) + 1 }), {}))
        .map(([c, n]) => `${n}x ${c}`)
        .join(', ');
      results[name] = {
        bodyMiB: round(body.length / 2 ** 20, 2),
        answers: tally,
        idleBeforeMiB: round(idleBefore, 0),
        peakMiB: round(peak, 0),
        idle2sMiB: round(after2, 0),
        idle10sMiB: round(after10, 0),
      };
      out.push([name, tally, round(idleBefore, 0), round(peak, 0), round(after2, 0), round(after10, 0)]);
    } finally {
      await server.stop();
    }
  }
  return {
    results,
    markdown: [
      `A burst of 16 concurrent JSON bodies of ${round(body.length / 2 ** 20, 2)} MiB (${rows.length} rows of breast_cancer features) to one server, then idle: its resident memory in MiB.`,
      '',
      table(['server', 'answers', 'RSS before', 'peak RSS', 'RSS 2 s after', 'RSS 10 s after'], out),
    ].join('\n'),
  };
}

/**
 * Issue 23: the cost of a token check and of TLS. mlops serve plain, with bearer tokens, and with TLS
 * (keep-alive, certificates made here with openssl), pinned to core 0, autocannon on core 1, interleaved.
 */
async function securityCost(log) {
  const [, ...lines] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split('\n');
  const body = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: lines[0].split(',').slice(0, -1).map(Number) }] });
  const dir = mkdtempSync(path.join(tmpdir(), 'mlops-bench-tls-'));
  spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'key.pem',
      '-out',
      'cert.pem',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { cwd: dir },
  );
  const token = 'bench-token-0123456789abcdef0123456789';
  const variants = {
    'plain HTTP, no token': [{}, {}],
    'bearer token': [{ MLOPS_AUTH_TOKENS: token }, { authorization: `Bearer ${token}` }],
    'TLS (keep-alive)': [{ MLOPS_TLS_CERT: path.join(dir, 'cert.pem'), MLOPS_TLS_KEY: path.join(dir, 'key.pem') }, {}],
  };
  if (HAS_TASKSET) spawnSync('taskset', ['-cp', '1', String(process.pid)]);
  const tlsCheck = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
  // The certificate made above is self-signed: the load generator does not check it.
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
  const samples = {};
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, [env, headers]] of Object.entries(variants)) {
        const server = await startProcess(
          [path.join(ROOT, 'bin/mlops.js'), 'serve', '--model', fixture('breast_cancer', 'model.onnx'), '--port', '0', '--grpc-port', '0', '--json'],
          env,
          0,
        );
        try {
          for (const connections of [1, 32]) {
            log(`security round ${round + 1}/${ROUNDS}: ${name}, concurrency ${connections}`);
            const options = {
              url: `${server.url}/v2/models/breast_cancer/infer`,
              method: 'POST',
              body,
              connections,
              headers: { 'content-type': 'application/json', ...headers },
            };
            await autocannon({ ...options, duration: 1 });
            const before = cpuMicros(server.pid);
            const result = await autocannon({ ...options, duration: SECONDS });
            if (result.non2xx || result.errors) throw new Error(`${name}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
            ((samples[name] ??= {})[connections] ??= []).push({ rps: result.requests.average, cpu: (cpuMicros(server.pid) - before) / result.requests.total });
          }
        } finally {
          await server.stop();
        }
      }
    }
  } finally {
    if (tlsCheck === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    else process.env.NODE_TLS_REJECT_UNAUTHORIZED = tlsCheck;
    if (HAS_TASKSET) spawnSync('taskset', ['-cp', '0-63', String(process.pid)]);
  }
  const results = {};
  const rows = [];
  const plain = samples['plain HTTP, no token'];
  for (const [name, byConcurrency] of Object.entries(samples)) {
    for (const connections of [1, 32]) {
      const rps = median(byConcurrency[connections].map((r) => r.rps));
      const cpu = median(byConcurrency[connections].map((r) => r.cpu));
      const base = { rps: median(plain[connections].map((r) => r.rps)), cpu: median(plain[connections].map((r) => r.cpu)) };
      (results[name] ??= {})[connections] = {
        rps,
        cpuMicrosPerRequest: round(cpu, 1),
        throughputRatio: round(rps / base.rps, 3),
        cpuRatio: round(cpu / base.cpu, 3),
      };
      rows.push([name, connections, round(rps, 0), round(cpu, 1), round(rps / base.rps, 3), round(cpu / base.cpu, 3)]);
    }
  }
  return {
    results,
    markdown: [
      `Access control and TLS (issue 23): breast_cancer, one JSON row a request, autocannon with keep-alive, ${ROUNDS} interleaved rounds of ${SECONDS} s, medians; the server pinned to core 0, the load generator to core 1.`,
      '',
      table(['server', 'concurrency', 'req/s', 'CPU µs/req', 'throughput vs plain', 'CPU vs plain'], rows),
      '',
      `A token check costs ${round((results['bearer token'][1].cpuRatio - 1) * 100, 1)}% CPU per request at concurrency 1 and ${round((results['bearer token'][32].cpuRatio - 1) * 100, 1)}% at 32 (goal: at most 3%).`,
    ].join('\n'),
  };
}

async function explainCost(log) {
  const files = await benchProfiles();
  const ours = path.join(ROOT, 'bin/mlops.js');
  const [, ...rows] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split('\n');
  const row = (i) => rows[i % rows.length].split(',').slice(0, -1).map(Number);
  const inferBody = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: row(0) }] });
  const explainBody = (n) =>
    JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [n, 30], data: Array.from({ length: n }, (_, i) => row(i)).flat() }] });
  const samples = { perRowMs1: [], perRowMs4: [], cpuPerRowMs: [], alone: [], mixed: [], explainShare: [] };
  for (let pass = 0; pass < ROUNDS; pass++) {
    const server = await serve(ours, 'breast_cancer', ['--profile', files.breast_cancer]);
    const explainUrl = `${server.url}/v2/models/breast_cancer/explain`;
    const explainOnce = async (n) => {
      const res = await fetch(explainUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: explainBody(n) });
      if (res.status !== 200) throw new Error(`explain: HTTP ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
    };
    log(`explanations, round ${pass + 1}/${ROUNDS}: latency per row`);
    for (let i = 0; i < 3; i++) await explainOnce(1);
    for (const n of [1, 4]) {
      const times = [];
      const cpuBefore = cpuMicros(server.pid);
      for (let i = 0; i < 12; i++) {
        const t = performance.now();
        await explainOnce(n);
        times.push((performance.now() - t) / n);
      }
      samples[n === 1 ? 'perRowMs1' : 'perRowMs4'].push(median(times));
      if (n === 4) samples.cpuPerRowMs.push((cpuMicros(server.pid) - cpuBefore) / 1000 / (12 * n));
    }
    log(`explanations, round ${pass + 1}/${ROUNDS}: inference alone, then beside a client explaining without pause`);
    const options = await cannon(`${server.url}/v2/models/breast_cancer/infer`, inferBody, 8);
    let before = cpuMicros(server.pid);
    const alone = await autocannon({ ...options, duration: SECONDS });
    if (alone.non2xx || alone.errors) throw new Error(`inference alone: ${alone.non2xx} non-2xx, ${alone.errors} errors`);
    samples.alone.push(alone.requests.average);
    const cpuAlone = cpuMicros(server.pid) - before;
    let explaining = true;
    let explained = 0;
    const loop = (async () => {
      while (explaining) {
        await explainOnce(1);
        explained++;
      }
    })();
    before = cpuMicros(server.pid);
    const mixed = await autocannon({ ...options, duration: SECONDS });
    const cpuMixed = cpuMicros(server.pid) - before;
    explaining = false;
    await loop;
    if (mixed.non2xx || mixed.errors) throw new Error(`inference beside explanations: ${mixed.non2xx} non-2xx, ${mixed.errors} errors`);
    samples.mixed.push(mixed.requests.average);
    // The explanations' share of the server's CPU in that window: their rows at the CPU a row costs alone.
    samples.explainShare.push(Math.min(1, (explained * samples.cpuPerRowMs.at(-1) * 1000) / cpuMixed));
    log(
      `  alone ${round(alone.requests.average, 0)} req/s (${round(cpuAlone / 1e6, 2)} CPU s), beside ${explained} explanations ${round(mixed.requests.average, 0)} req/s`,
    );
    await server.stop();
  }
  const drop = 1 - median(samples.mixed) / median(samples.alone);
  const share = median(samples.explainShare);
  const results = {
    explainMsPerRow: { oneRowRequests: round(median(samples.perRowMs1), 2), fourRowRequests: round(median(samples.perRowMs4), 2) },
    serverCpuMsPerExplainedRow: round(median(samples.cpuPerRowMs), 2),
    modelRowsPerExplainedRow: 256 * 100 + 1,
    inferenceRps: { alone: round(median(samples.alone), 0), besideExplanations: round(median(samples.mixed), 0) },
    throughputDrop: round(drop, 3),
    explanationCpuShare: round(share, 3),
    goalMet: drop <= share + 0.02,
  };
  return {
    results,
    markdown: [
      `Explanations (issue 27): breast_cancer MLP, Kernel SHAP at the default budget (256 coalitions x 100 background rows = ${results.modelRowsPerExplainedRow} model rows per row), default workers, ${ROUNDS} rounds, medians. Inference: one row of JSON at concurrency 8, alone and beside one client explaining one row at a time without pause. Goal: the throughput drop at most the explanations' share of the server's CPU (+2 points of noise).`,
      '',
      table(
        ['measure', 'value'],
        [
          ['explain latency per row, 1-row requests (ms)', results.explainMsPerRow.oneRowRequests],
          ['explain latency per row, 4-row requests (ms)', results.explainMsPerRow.fourRowRequests],
          ['server CPU per explained row (ms)', results.serverCpuMsPerExplainedRow],
          ['inference req/s alone', results.inferenceRps.alone],
          ['inference req/s beside explanations', results.inferenceRps.besideExplanations],
          ['throughput drop', results.throughputDrop],
          ["explanations' share of server CPU", results.explanationCpuShare],
          ['goal met', results.goalMet ? 'yes' : 'no'],
        ],
      ),
    ].join('\n'),
  };
}

async function twoModels(log) {
  const ours = path.join(ROOT, 'bin/mlops.js');
  const dir = mkdtempSync(path.join(tmpdir(), 'mlops-bench-models-'));
  const repository = path.join(dir, 'repository.json');
  writeFileSync(repository, JSON.stringify({ models: ['breast_cancer', 'wine'].map((name) => ({ name, version: '1', path: fixture(name, 'model.onnx') })) }));
  const bodyOf = (name, width) => {
    const [, ...rows] = readFileSync(fixture(name, 'holdout.csv'), 'utf8').trim().split('\n');
    const data = rows[0].split(',').slice(0, width).map(Number);
    return JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, width], data }] });
  };
  const loads = [
    { model: 'breast_cancer', body: bodyOf('breast_cancer', 30) },
    { model: 'wine', body: bodyOf('wine', 13) },
  ];
  const CONNECTIONS = 8;
  const samples = { one: { rps: [], cpuUs: [], rssMiB: [] }, two: { rps: [], cpuUs: [], rssMiB: [] } };
  const measure = async (urls, pids, into) => {
    const options = await Promise.all(loads.map((l, i) => cannon(`${urls[i]}/v2/models/${l.model}/infer`, l.body, CONNECTIONS)));
    const before = pids.reduce((n, pid) => n + cpuMicros(pid), 0);
    const results = await Promise.all(options.map((o) => autocannon({ ...o, duration: SECONDS })));
    const cpu = pids.reduce((n, pid) => n + cpuMicros(pid), 0) - before;
    for (const r of results) if (r.non2xx || r.errors) throw new Error(`two models: ${r.non2xx} non-2xx, ${r.errors} errors`);
    const requests = results.reduce((n, r) => n + r.requests.total, 0);
    into.rps.push(results.reduce((n, r) => n + r.requests.average, 0));
    into.cpuUs.push(cpu / requests);
    into.rssMiB.push(pids.reduce((n, pid) => n + rssMiB(pid), 0));
  };
  for (let pass = 0; pass < ROUNDS; pass++) {
    log(`two models, round ${pass + 1}/${ROUNDS}: one server with both`);
    const both = await startProcess([ours, 'serve', '--repository', repository, '--port', '0', '--grpc-port', '0', '--json']);
    await measure([both.url, both.url], [both.pid], samples.one);
    await both.stop();
    log(`two models, round ${pass + 1}/${ROUNDS}: a server each`);
    const each = [await serve(ours, 'breast_cancer', ['--grpc-port', '0']), await serve(ours, 'wine', ['--grpc-port', '0'])];
    await measure(
      each.map((s) => s.url),
      each.map((s) => s.pid),
      samples.two,
    );
    for (const s of each) await s.stop();
  }
  const summary = (x) => ({ throughputRps: round(median(x.rps), 0), cpuUsPerRequest: round(median(x.cpuUs), 1), residentMiB: round(median(x.rssMiB), 1) });
  const results = { oneServer: summary(samples.one), twoServers: summary(samples.two) };
  results.ratios = {
    throughput: round(results.oneServer.throughputRps / results.twoServers.throughputRps, 3),
    cpuPerRequest: round(results.oneServer.cpuUsPerRequest / results.twoServers.cpuUsPerRequest, 3),
    memory: round(results.oneServer.residentMiB / results.twoServers.residentMiB, 3),
  };
  return {
    results,
    markdown: [
      `Two models in one server against a server each (issue 27): breast_cancer and wine, one row of JSON each, two autocannon loads at concurrency ${CONNECTIONS} at once (one per model), default workers per model, ${ROUNDS} rounds, medians. Memory: resident set of the server process(es) after the load.`,
      '',
      table(
        ['', 'one server, two models', 'two servers', 'ratio'],
        [
          ['total throughput (req/s)', results.oneServer.throughputRps, results.twoServers.throughputRps, results.ratios.throughput],
          ['server CPU per request (µs)', results.oneServer.cpuUsPerRequest, results.twoServers.cpuUsPerRequest, results.ratios.cpuPerRequest],
          ['resident memory (MiB)', results.oneServer.residentMiB, results.twoServers.residentMiB, results.ratios.memory],
        ],
      ),
    ].join('\n'),
  };
}

async function responseCache(log) {
  const [, ...rows] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split('\n');
  const body = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: rows[0].split(',').slice(0, -1).map(Number) }] });
  if (HAS_TASKSET) spawnSync('taskset', ['-cp', '1', String(process.pid)]);
  const settings = { off: {}, 'on (64 MiB)': { MLOPS_RESPONSE_CACHE_BYTES: String(64 * 2 ** 20) } };
  const samples = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, env] of Object.entries(settings)) {
      const server = await startProcess(
        [path.join(ROOT, 'bin/mlops.js'), 'serve', '--model', fixture('breast_cancer', 'model.onnx'), '--port', '0', '--grpc-port', '0', '--json'],
        env,
        0,
      );
      for (const connections of [1, 32]) {
        log(`round ${round + 1}/${ROUNDS}: response cache ${name}, concurrency ${connections}`);
        const options = await cannon(`${server.url}/v2/models/breast_cancer/infer`, body, connections);
        const before = cpuMicros(server.pid);
        const result = await autocannon({ ...options, duration: SECONDS });
        const cpu = (cpuMicros(server.pid) - before) / result.requests.total;
        if (result.non2xx || result.errors) throw new Error(`response cache ${name}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
        ((samples[name] ??= {})[connections] ??= []).push({ rps: result.requests.average, cpu });
      }
      await server.stop();
    }
  }
  if (HAS_TASKSET) spawnSync('taskset', ['-cp', '0-63', String(process.pid)]);
  const summary = {};
  const out = [];
  for (const [name, byConcurrency] of Object.entries(samples)) {
    for (const [connections, runs] of Object.entries(byConcurrency)) {
      const s = { rps: round(median(runs.map((r) => r.rps)), 0), cpuMicrosPerRequest: round(median(runs.map((r) => r.cpu)), 1) };
      (summary[name] ??= {})[connections] = s;
      out.push([name, connections, s.rps, s.cpuMicrosPerRequest]);
    }
  }
  const ratio = (c) => round(summary['on (64 MiB)'][c].cpuMicrosPerRequest / summary.off[c].cpuMicrosPerRequest, 3);
  return {
    results: { summary, cpuOnVsOff: { 1: ratio(1), 32: ratio(32) } },
    markdown: [
      `Response cache (issue 34): breast_cancer, the same row of JSON every request (a repeated-input load), autocannon ${SECONDS} s after 1 s of warm-up, ${ROUNDS} interleaved rounds, medians; the server on core 0. Server CPU per request with the cache on is ${ratio(1)}x off at concurrency 1 and ${ratio(32)}x at 32.`,
      '',
      table(['response cache', 'concurrency', 'req/s', 'server CPU µs/request'], out),
    ].join('\n'),
  };
}

async function underAttack(log) {
  const [, ...rows] = readFileSync(fixture('breast_cancer', 'holdout.csv'), 'utf8').trim().split('\n');
  const body = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: rows[0].split(',').slice(0, -1).map(Number) }] });
  const HONEST = 'honest-token-0123456789abcdef0123';
  const INSIDER = 'insider-token-0123456789abcdef012';
  const CONNECTIONS = 8;
  const checkouts = { 'mlops serve': ROOT, ...(process.env.BENCH_BASELINE ? { 'mlops serve (before)': process.env.BENCH_BASELINE } : {}) };
  const attacks = {
    alone: () => () => undefined,
    '200 gRPC streams without a token, 15 MB of 16 each (finding 1)': (server) => grpcStreamFlood(server.grpcPort),
    'whole 12 MB gRPC messages without a token, 3 at a time (finding 2)': (server) => grpcLargeMessages(server.grpcPort),
    "an insider's 9 stalled uploads holding the 128 MiB body budget but 128 bytes (finding 3)": (server) => stalledUploads(server.url, { token: INSIDER }),
  };
  const samples = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, checkout] of Object.entries(checkouts)) {
      for (const [attack, start] of Object.entries(attacks)) {
        log(`round ${round + 1}/${ROUNDS}: ${name}, ${attack}`);
        const grpcPort = await freePort();
        const server = await startProcess(
          [
            path.join(checkout, 'bin/mlops.js'),
            'serve',
            '--model',
            fixture('breast_cancer', 'model.onnx'),
            '--port',
            '0',
            '--grpc-port',
            String(grpcPort),
            '--json',
          ],
          { MLOPS_AUTH_TOKENS: `${HONEST},${INSIDER}` },
        );
        const stop = start({ url: server.url, grpcPort });
        await new Promise((r) => setTimeout(r, 1500));
        const result = await autocannon({
          url: `${server.url}/v2/models/breast_cancer/infer`,
          method: 'POST',
          body,
          connections: CONNECTIONS,
          duration: SECONDS,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${HONEST}` },
        });
        const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))[1]) / 1024;
        stop();
        await server.stop();
        const answered = result.requests.total + result.errors + result.timeouts;
        ((samples[name] ??= {})[attack] ??= []).push({
          success: answered === 0 ? 0 : result['2xx'] / answered,
          p99: result.latency.p99,
          rps: result.requests.average,
          rss,
        });
      }
    }
  }
  const summary = {};
  const out = [];
  for (const [name, byAttack] of Object.entries(samples)) {
    for (const [attack, runs] of Object.entries(byAttack)) {
      const s = {
        successRate: round(median(runs.map((r) => r.success)), 4),
        p99Ms: median(runs.map((r) => r.p99)),
        rps: round(median(runs.map((r) => r.rps)), 0),
        residentMiB: round(median(runs.map((r) => r.rss)), 0),
      };
      (summary[name] ??= {})[attack] = s;
      out.push([name, attack, s.successRate, s.p99Ms, s.rps, s.residentMiB]);
    }
  }
  return {
    results: summary,
    markdown: [
      `Under attack (issue 34): an honest client with a token, autocannon at concurrency ${CONNECTIONS} for ${SECONDS} s, alone and while each attack runs (started 1.5 s before); a new server each time; ${ROUNDS} rounds, medians. Success: 2xx answers over requests sent (errors and timeouts count as failures). Memory: the server's resident set at the end of the load.`,
      '',
      table(['server', 'while', 'success', 'p99 ms', 'req/s', 'server resident MiB'], out),
    ].join('\n'),
  };
}

export async function run({ log }) {
  // BENCH_PARTS=liveness,workers runs only those parts.
  const wanted = process.env.BENCH_PARTS?.split(',');
  const parts = {};
  for (const [name, part] of Object.entries({
    smallRequests,
    imageModel,
    liveness,
    workers: workerCount,
    profiling: profilingCost,
    inferenceLog: inferenceLogCost,
    contracts: contractCost,
    bodyBurst,
    security: securityCost,
    explain: explainCost,
    models: twoModels,
    responseCache,
    underAttack,
  })) {
    if (!wanted || wanted.includes(name)) parts[name] = await part(log);
  }
  return {
    results: Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, v.results])),
    markdown: Object.values(parts)
      .map((p) => (Array.isArray(p.markdown) ? p.markdown.join('\n') : p.markdown))
      .join('\n\n'),
  };
}
