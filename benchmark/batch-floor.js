// The floor for `batch`: what one core does with the same libraries and no machinery. Tabular: a CSV read
// in 1 MB chunks, split on commas, 256 rows a run of onnxruntime-node with one intra-op thread, the
// outputs written as CSV. Images: each file read, decoded and preprocessed by mlops' own preprocessing
// (sharp), one run a file. Prints {"rows", "seconds", "perSecond"}.
// Usage: node batch-floor.js csv MODEL INPUT.csv OUTPUT.csv | node batch-floor.js images MODEL_DIR FOLDER
import { createReadStream, createWriteStream, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { inspectModel } from '../dist/model/inspect.js';
import { createPreprocessor, loadProcessing, servableSignature } from '../dist/processing/plan.js';

const [mode, model, input, output] = process.argv.slice(2);
const info = await inspectModel(model);
const session = await ort.InferenceSession.create(info.path, { intraOpNumThreads: 1, interOpNumThreads: 1 });
const started = performance.now();
let rows = 0;

if (mode === 'csv') {
  const name = info.inputs[0].name;
  const width = info.inputs[0].shape[1];
  const out = createWriteStream(output);
  let carry = '';
  let header = true;
  let batch = [];
  const run = async () => {
    const data = new Float32Array(batch.length * width);
    batch.forEach((cells, r) => {
      for (let c = 0; c < width; c++) data[r * width + c] = Number(cells[c + 1]);
    });
    const result = await session.run({ [name]: new ort.Tensor('float32', data, [batch.length, width]) });
    const first = result[info.outputs[0].name];
    const per = first.data.length / batch.length;
    let text = '';
    for (let r = 0; r < batch.length; r++) text += `${batch[r][0]},${Array.from(first.data.subarray(r * per, (r + 1) * per)).join(',')}\n`;
    if (!out.write(text)) await new Promise((resolve) => out.once('drain', resolve));
    rows += batch.length;
    batch = [];
  };
  for await (const chunk of createReadStream(input, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
    const lines = (carry + chunk).split('\n');
    carry = lines.pop();
    for (const line of lines) {
      if (header) {
        header = false;
        continue;
      }
      if (line) batch.push(line.split(','));
      if (batch.length === 256) await run();
    }
  }
  if (carry) batch.push(carry.split(','));
  if (batch.length > 0) await run();
  await new Promise((resolve) => out.end(resolve));
} else {
  const plan = await loadProcessing(info.path, servableSignature(info), {});
  const preprocessor = createPreprocessor(plan);
  const files = readdirSync(input, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath ?? e.path, e.name));
  const type = { FP32: 'float32' }[info.inputs[0].datatype];
  for (const file of files) {
    const { feeds } = await preprocessor.toFeeds([readFileSync(file)], () => file);
    await session.run(Object.fromEntries(Object.entries(feeds).map(([n, t]) => [n, new ort.Tensor(type, t.data, t.dims)])));
    rows++;
  }
}
const seconds = (performance.now() - started) / 1000;
process.stdout.write(JSON.stringify({ rows, seconds, perSecond: rows / seconds }) + '\n');
await session.release();
