// The 20-line server a team would write by hand: node:http, JSON in and out,
// onnxruntime-node on the main thread, one thread per pool. Usage: node handwritten-server.js MODEL [noop]
// With `noop`, it parses the JSON body and answers a constant: the floor of node:http itself.
import http from 'node:http';
import * as ort from 'onnxruntime-node';

const [model, mode] = process.argv.slice(2);
// One thread in each of ONNX Runtime's pools, as a team that pins a server to a core sets them. With the
// defaults (a thread per core, spinning between runs) this reference was weaker than a real one: mlops
// measured 0.99x it at concurrency 1 here, against 0.77x a server with these settings (issue 34).
const session = mode === 'noop' ? null : await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 });
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const body = JSON.parse(Buffer.concat(chunks).toString());
    if (!session) return res.end('{"outputs":[]}');
    const input = body.inputs[0];
    const feeds = { [input.name]: new ort.Tensor('float32', Float32Array.from(input.data.flat(Infinity)), input.shape) };
    const out = await session.run(feeds);
    const outputs = Object.entries(out).map(([name, t]) => ({ name, datatype: 'FP32', shape: t.dims, data: Array.from(t.data) }));
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ outputs }));
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` }) + '\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
