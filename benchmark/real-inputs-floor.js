// The floor for `real-inputs`: decode, preprocess and run in one process with the same libraries the
// server uses (sharp or the tokenizer through mlops' preprocessing, onnxruntime-node), as fast as a
// loop of `concurrency` requests in flight can go, with no HTTP. Prints {"perSecond", "cpuMicros"}.
// Usage: node real-inputs-floor.js MODEL_DIR INPUT_FILE CONCURRENCY SECONDS
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { inspectModel } from '../dist/model/inspect.js';
import { createPreprocessor, loadProcessing, servableSignature } from '../dist/processing/plan.js';

const [dir, inputFile, concurrency, seconds] = process.argv.slice(2);
const info = await inspectModel(dir);
const plan = await loadProcessing(info.path, servableSignature(info), {});
const preprocessor = createPreprocessor(plan);
const session = await ort.InferenceSession.create(info.path);
const types = { FP32: 'float32', INT64: 'int64', FP16: 'float16', UINT8: 'uint8', INT32: 'int32' };
const datatypes = Object.fromEntries(info.inputs.map((i) => [i.name, types[i.datatype]]));
const raw = plan.image ? readFileSync(inputFile) : readFileSync(inputFile, 'utf8');

async function one() {
  const { feeds } = await preprocessor.toFeeds([raw], () => 'floor');
  const ortFeeds = Object.fromEntries(Object.entries(feeds).map(([name, t]) => [name, new ort.Tensor(datatypes[name], t.data, t.dims)]));
  await session.run(ortFeeds);
}

for (let i = 0; i < 20; i++) await one();
const until = performance.now() + Number(seconds) * 1000;
const cpuBefore = process.cpuUsage();
let done = 0;
const started = performance.now();
await Promise.all(
  Array.from({ length: Number(concurrency) }, async () => {
    while (performance.now() < until) {
      await one();
      done++;
    }
  }),
);
const elapsed = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
process.stdout.write(JSON.stringify({ perSecond: done / elapsed, cpuMicros: (cpu.user + cpu.system) / done }) + '\n');
await session.release();
