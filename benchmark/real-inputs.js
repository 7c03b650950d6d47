// Issue 33: images and texts in, labels out, measured side by side in one run.
// 1. A 640x480 JPEG to the image fixture (shapes_image, 3x64x64), and a 20-word sentence to the text
//    fixture (text_topic), as raw bodies (image/jpeg, text/plain) at concurrency 1 and 32: served
//    requests/s and server CPU per request against the floor, decode + preprocess + inference in one
//    process with the same libraries and no HTTP. Both pinned to core 0, the load generator to core 1.
// 2. What the image library adds to an image: the bytes of sharp, its binding and libvips as the build
//    copies them (only into images of models that take images).
import autocannon from 'autocannon';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { cpuMicros, HAS_TASKSET, startProcess } from './dataplane.js';
import { fixture, median, round, ROOT, table } from './lib.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SERVER_CORE = 0;

/** A photo-sized JPEG of a holdout image: what a client really sends. */
async function photo(dir) {
  const file = path.join(dir, 'photo.jpg');
  const noise = Buffer.alloc(640 * 480 * 3);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 2654435761) % 251;
  const base = await sharp(fixture('shapes_image', 'holdout', 'circle', '004.png'))
    .resize(640, 480, { fit: 'fill' })
    .removeAlpha()
    .raw()
    .toBuffer();
  // Some texture over the shape, as a camera gives: JPEG at quality 90 of it is a realistic size.
  for (let i = 0; i < base.length; i++) base[i] = Math.min(255, Math.round(base[i] * 0.9 + noise[i] * 0.1));
  writeFileSync(
    file,
    await sharp(base, { raw: { width: 640, height: 480, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer(),
  );
  return file;
}

function sentence(dir) {
  const file = path.join(dir, 'sentence.txt');
  writeFileSync(file, 'the referee stopped the match after the second goal and the team walked off the pitch in heavy rain before the final whistle');
  return file;
}

function dirBytes(dir) {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += statSync(path.join(entry.parentPath ?? entry.path, entry.name)).size;
  }
  return total;
}

async function served(model, input, contentType, connections) {
  const server = await startProcess(
    [path.join(ROOT, 'bin/mlops.js'), 'serve', '--model', fixture(model), '--port', '0', '--grpc-port', '0', '--json'],
    {},
    SERVER_CORE,
  );
  try {
    const options = { url: `${server.url}/v2/models/${model}/infer`, method: 'POST', body: input, connections, headers: { 'content-type': contentType } };
    await autocannon({ ...options, duration: 1 });
    const before = cpuMicros(server.pid);
    // A health probe every 20 ms while the load runs: does decoding images stall the event loop?
    const health = [];
    let loading = true;
    const probing = (async () => {
      while (loading) {
        const started = performance.now();
        const res = await fetch(`${server.url}/v2/health/ready`);
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`health answered ${res.status} under load`);
        health.push(performance.now() - started);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const result = await autocannon({ ...options, duration: SECONDS });
    loading = false;
    await probing;
    const failed = result.non2xx + result.errors;
    if (failed > 0) throw new Error(`${model}: ${failed} of ${result.requests.total} requests failed`);
    health.sort((a, b) => a - b);
    return {
      perSecond: result.requests.total / SECONDS,
      cpuMicros: (cpuMicros(server.pid) - before) / result.requests.total,
      p99Ms: result.latency.p99,
      healthP99Ms: health[Math.min(health.length - 1, Math.floor(health.length * 0.99))],
    };
  } finally {
    await server.stop();
  }
}

function floor(model, file, connections) {
  const [command, args] = HAS_TASKSET ? ['taskset', ['-c', String(SERVER_CORE), process.execPath]] : [process.execPath, []];
  const out = execFileSync(command, [...args, path.join(ROOT, 'benchmark/real-inputs-floor.js'), fixture(model), file, String(connections), String(SECONDS)], {
    encoding: 'utf8',
  });
  return JSON.parse(out);
}

export async function run({ log }) {
  const dir = mkdtempSync(path.join(tmpdir(), 'mlops-bench-real-'));
  const cases = [
    { name: 'image (640x480 JPEG -> 3x64x64)', model: 'shapes_image', file: await photo(dir), type: 'image/jpeg' },
    { name: 'text (20 words -> WordPiece)', model: 'text_topic', file: sentence(dir), type: 'text/plain' },
  ];
  if (HAS_TASKSET) spawnSync('taskset', ['-cp', '1', String(process.pid)]);
  const samples = {};
  try {
    for (let r = 0; r < ROUNDS; r++) {
      for (const c of cases) {
        const body = (await import('node:fs')).readFileSync(c.file);
        for (const connections of [1, 32]) {
          log(`round ${r + 1}/${ROUNDS}: ${c.name}, concurrency ${connections}`);
          const key = `${c.name}|${connections}`;
          samples[key] ??= { served: [], floor: [] };
          samples[key].floor.push(floor(c.model, c.file, connections));
          samples[key].served.push(await served(c.model, body, c.type, connections));
        }
      }
    }
  } finally {
    if (HAS_TASKSET) spawnSync('taskset', ['-cp', '0-63', String(process.pid)]);
  }
  const rows = Object.entries(samples).map(([key, s]) => {
    const [name, connections] = key.split('|');
    const servedRate = median(s.served.map((x) => x.perSecond));
    const floorRate = median(s.floor.map((x) => x.perSecond));
    return {
      input: name,
      concurrency: Number(connections),
      servedPerSecond: round(servedRate, 1),
      floorPerSecond: round(floorRate, 1),
      ratio: round(servedRate / floorRate),
      servedCpuMicros: round(median(s.served.map((x) => x.cpuMicros)), 0),
      floorCpuMicros: round(median(s.floor.map((x) => x.cpuMicros)), 0),
      servedP99Ms: round(median(s.served.map((x) => x.p99Ms)), 2),
      healthP99Ms: round(median(s.served.map((x) => x.healthP99Ms)), 2),
    };
  });
  const sharpDir = path.join(ROOT, 'node_modules', 'sharp');
  const imaging = {
    sharpBytes: dirBytes(path.join(sharpDir, 'dist')) + dirBytes(path.join(sharpDir, 'lib')),
    bindingBytes: dirBytes(path.join(ROOT, 'node_modules/@img/sharp-linux-x64')),
    libvipsBytes: dirBytes(path.join(ROOT, 'node_modules/@img/sharp-libvips-linux-x64')),
  };
  imaging.totalMB = round((imaging.sharpBytes + imaging.bindingBytes + imaging.libvipsBytes) / 1e6, 1);
  const markdown = [
    `Raw inputs as a client sends them (image/jpeg, text/plain bodies) against the floor: decode + preprocess + inference in one process with the same libraries, no HTTP. autocannon, ${SECONDS} s a run after 1 s of warm-up, ${ROUNDS} interleaved rounds, medians. ${HAS_TASKSET ? 'Server and floor pinned to core 0, the load generator to core 1. ' : ''}Goal: served >= 0.8x the floor at concurrency 32, health p99 <= 10 ms while images are decoded (a probe every 20 ms during each run).`,
    '',
    table(
      ['input', 'concurrency', 'served /s', 'floor /s', 'served / floor', 'server CPU µs/req', 'floor CPU µs/req', 'served p99 ms', 'health p99 ms under it'],
      rows.map((r) => [
        r.input,
        r.concurrency,
        r.servedPerSecond,
        r.floorPerSecond,
        r.ratio,
        r.servedCpuMicros,
        r.floorCpuMicros,
        r.servedP99Ms,
        r.healthP99Ms,
      ]),
    ),
    '',
    `Image library, only in images of models that take images: ${imaging.totalMB} MB (sharp ${round(imaging.sharpBytes / 1e6, 2)} MB, its binding ${round(imaging.bindingBytes / 1e6, 2)} MB, libvips ${round(imaging.libvipsBytes / 1e6, 1)} MB).`,
  ].join('\n');
  return { results: { rows, imaging }, markdown };
}
