/**
 * src/server/processing.ts through the running server: every way a client sends an image or a text
 * (a raw body, an OIP v2 BYTES input in JSON and binary, v1 instances, SageMaker's /invocations,
 * gRPC bytes_contents), answered with the model's outputs and its labels; and what is refused.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeGrpcResponse } from '../../src/protocol/grpc.js';
import { call, inferenceClient, type InferenceClient } from '../../src/protocol/grpc-client.js';
import { startServer, type RunningServer } from '../../src/server/run.js';
import { MAX_RAW_INPUTS } from '../../src/server/processing.js';
import { fixture, freePort, profileFor, serveOptions, withTempDir } from '../helpers.js';
import { writeFile } from 'node:fs/promises';
import { binIndex } from '../../src/monitor/drift.js';

const quiet = () => undefined;
let images: RunningServer;
let texts: RunningServer;
let grpcClient: InferenceClient;
let circle: Buffer;
let square: Buffer;

type Answer = { model_name: string; id?: string; outputs: { name: string; datatype: string; shape: number[]; data: (number | string)[] }[] };
const output = (answer: Answer, name: string) => answer.outputs.find((o) => o.name === name)!;

async function post(
  url: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Record<string, unknown> & Answer & { error?: string; predictions?: unknown }; headers: Headers }> {
  const res = await fetch(url, { method: 'POST', headers, body });
  const text = await res.text();
  return { status: res.status, json: JSON.parse(text), headers: res.headers };
}

beforeAll(async () => {
  circle = await readFile(fixture('shapes_image', 'holdout', 'circle', '001.jpg'));
  square = await readFile(fixture('shapes_image', 'holdout', 'square', '002.png'));
  images = await startServer(serveOptions('shapes_image', { grpcPort: await freePort(), workers: 1 }), quiet);
  texts = await startServer(serveOptions('text_topic', { workers: 0 }), quiet);
  grpcClient = inferenceClient(images.grpcAddress!);
});
afterAll(async () => {
  grpcClient?.close();
  await images?.stop();
  await texts?.stop();
});

describe('images in, labels out', () => {
  it('a JPEG as the body of the infer route: the logits and the label, as OIP v2 outputs', async () => {
    const { status, json } = await post(`${images.url}/v2/models/shapes_image/infer`, circle, { 'content-type': 'image/jpeg' });
    expect(status).toBe(200);
    expect(json.outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual([
      ['logits', 'FP32', [1, 4]],
      ['label', 'BYTES', [1, 1]],
      ['score', 'FP32', [1, 1]],
    ]);
    expect(output(json, 'label').data).toEqual(['circle']);
    const logits = output(json, 'logits').data as number[];
    const expected = Math.exp(Math.max(...logits)) / logits.reduce((s, v) => s + Math.exp(v), 0);
    expect(output(json, 'score').data[0]).toBeCloseTo(expected, 5);
  });

  it('a BYTES input in JSON (base64, KServe style) and in the binary extension (several images, one run), with top_k', async () => {
    const json = await post(
      `${images.url}/v2/models/shapes_image/infer`,
      JSON.stringify({
        id: 'img-1',
        inputs: [{ name: 'image', datatype: 'BYTES', shape: [2], data: [circle.toString('base64'), square.toString('base64')] }],
        parameters: { top_k: 2 },
      }),
    );
    expect(json.status).toBe(200);
    expect(json.json.id).toBe('img-1');
    expect(output(json.json, 'label').shape).toEqual([2, 2]);
    expect((output(json.json, 'label').data as string[]).filter((_, i) => i % 2 === 0)).toEqual(['circle', 'square']);
    // Binary: each element a 4-byte little-endian length and its bytes.
    const elements = Buffer.concat([circle, square].flatMap((b) => [Buffer.from(Uint32Array.of(b.length).buffer), b]));
    const head = Buffer.from(
      JSON.stringify({ inputs: [{ name: 'pixel_values', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: elements.length } }] }),
    );
    const binary = await post(`${images.url}/v2/models/shapes_image/infer`, Buffer.concat([head, elements]), {
      'inference-header-content-length': String(head.length),
    });
    expect(binary.status).toBe(200);
    expect(output(binary.json, 'label').data).toEqual(['circle', 'square']);
    expect(output(binary.json, 'logits').data).toEqual(output(json.json, 'logits').data);
  });

  it('v1 :predict with {"b64"} instances answers a pipeline\'s [{label, score}] per instance; /invocations takes image/jpeg and application/x-image', async () => {
    const v1 = await post(
      `${images.url}/v1/models/shapes_image:predict`,
      JSON.stringify({ instances: [{ b64: circle.toString('base64') }, { image: { b64: square.toString('base64') } }] }),
    );
    expect(v1.status).toBe(200);
    expect(v1.json.predictions).toEqual([[{ label: 'circle', score: expect.any(Number) }], [{ label: 'square', score: expect.any(Number) }]]);
    for (const type of ['image/jpeg', 'application/x-image']) {
      const sm = await post(`${images.url}/invocations`, circle, { 'content-type': type });
      expect(sm.status).toBe(200);
      expect(sm.json).toEqual([{ label: 'circle', score: expect.any(Number) }]);
    }
  });

  it("an image file sent as curl --data-binary sends it (a form's content type) or as application/octet-stream is still the image", async () => {
    for (const type of ['application/x-www-form-urlencoded', 'application/octet-stream']) {
      const { status, json } = await post(`${images.url}/v2/models/shapes_image/infer`, circle, { 'content-type': type });
      expect(status).toBe(200);
      expect(output(json, 'label').data).toEqual(['circle']);
    }
  });

  it('a photo-sized image (over offloadBytes, 64 KiB) on every form: JSON base64, binary, a form content type', async () => {
    // Seeded noise (xorshift): PNG cannot shrink it, so the file is as large as a photo's.
    const noise = Buffer.alloc(400 * 300 * 3);
    let x = 2463534242;
    for (let i = 0; i < noise.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      noise[i] = x & 0xff;
    }
    const large = await (
      await import('sharp')
    )
      .default(noise, { raw: { width: 400, height: 300, channels: 3 } })
      .png()
      .toBuffer();
    expect(large.length).toBeGreaterThan(64 * 1024);
    const url = `${images.url}/v2/models/shapes_image/infer`;
    const viaRaw = await post(url, large, { 'content-type': 'image/png' });
    expect(viaRaw.status).toBe(200);
    const json = await post(url, JSON.stringify({ inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: [large.toString('base64')] }] }), {
      'content-type': 'application/json',
    });
    const elements = Buffer.concat([Buffer.from(Uint32Array.of(large.length).buffer), large]);
    const head = Buffer.from(JSON.stringify({ inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: elements.length } }] }));
    const binary = await post(url, Buffer.concat([head, elements]), { 'inference-header-content-length': String(head.length) });
    const form = await post(url, large, { 'content-type': 'application/x-www-form-urlencoded' });
    for (const answer of [json, binary, form]) {
      expect(answer.status).toBe(200);
      expect(output(answer.json, 'logits').data).toEqual(output(viaRaw.json, 'logits').data);
    }
  });

  it('what a user gets wrong is said plainly: a shape the data does not fill, text to an image model, a multipart upload; ?top_k and data URIs work', async () => {
    const url = `${images.url}/v2/models/shapes_image/infer`;
    const shape = await post(url, JSON.stringify({ inputs: [{ name: 'image', datatype: 'BYTES', shape: [3], data: [circle.toString('base64')] }] }));
    expect([shape.status, shape.json.error]).toEqual([400, "input 'image': shape [3] holds 3 elements, the data has 1"]);
    const text = await post(url, 'hello', { 'content-type': 'text/plain' });
    expect([text.status, text.json.error]).toEqual([415, 'this model takes images, not text/plain; send an image (image/jpeg, image/png, ...) or tensors']);
    const form = new FormData();
    form.append('file', new Blob([circle], { type: 'image/jpeg' }), 'circle.jpg');
    const multipart = await fetch(url, { method: 'POST', body: form });
    expect(multipart.status).toBe(415);
    expect(((await multipart.json()) as { error: string }).error).toContain(
      "send the image itself as the body (curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg')",
    );
    const topK = await post(`${url}?top_k=3`, circle, { 'content-type': 'image/jpeg' });
    expect(topK.json.error).toBeUndefined();
    expect(output(topK.json, 'label').shape).toEqual([1, 3]);
    const dataUri = await post(
      url,
      JSON.stringify({ inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: [`data:image/jpeg;base64,${circle.toString('base64')}`] }] }),
    );
    expect(output(dataUri.json, 'label').data).toEqual(['circle']);
    const sentence = await post(`${texts.url}/v2/models/text_topic/infer`, 'heavy rain and thunder tonight', {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(output(sentence.json, 'label').data).toEqual(['weather']);
  });

  it('gRPC: bytes_contents of a BYTES input, answered with label and score outputs', async () => {
    const reply = await call(grpcClient, grpcClient.ModelInfer, {
      model_name: 'shapes_image',
      inputs: [{ name: 'image', datatype: 'BYTES', shape: [2], contents: { bytes_contents: [circle, square] } }],
    });
    const decoded = decodeGrpcResponse(reply);
    expect(decoded.label.data).toEqual(['circle', 'square']);
    expect(decoded.logits.dims).toEqual([2, 4]);
  });

  it('tensors still work as before, and their answer carries the labels too', async () => {
    const pixels = new Array(3 * 64 * 64).fill(0);
    const { status, json } = await post(
      `${images.url}/v2/models/shapes_image/infer`,
      JSON.stringify({ inputs: [{ name: 'pixel_values', datatype: 'FP32', shape: [1, 3, 64, 64], data: pixels }] }),
    );
    expect(status).toBe(200);
    expect(json.outputs.map((o) => o.name)).toEqual(['logits', 'label', 'score']);
    const named = await post(
      `${images.url}/v2/models/shapes_image/infer`,
      JSON.stringify({ inputs: [{ name: 'pixel_values', datatype: 'FP32', shape: [1, 3, 64, 64], data: pixels }], outputs: [{ name: 'logits' }] }),
    );
    expect(named.json.outputs.map((o) => o.name)).toEqual(['logits']);
  });

  it('hostile images get a 4xx naming why, and the server stays healthy for everyone', async () => {
    const url = `${images.url}/v2/models/shapes_image/infer`;
    const truncated = await post(url, circle.subarray(0, circle.length / 2), { 'content-type': 'image/jpeg' });
    expect(truncated.status).toBe(400);
    const notImage = await post(url, Buffer.from('GIF89a but not really'), { 'content-type': 'image/gif' });
    expect([notImage.status, notImage.json.error]).toEqual([400, expect.stringMatching(/^image: not an image that can be read/)]);
    const text = await post(url, 'a sentence', { 'content-type': 'text/plain' });
    expect(text.status).toBe(415);
    const badBase64 = await post(url, JSON.stringify({ inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: ['!!!!'] }] }));
    expect(badBase64.status).toBe(400);
    const health = await fetch(`${images.url}/v2/health/ready`);
    expect(health.status).toBe(200);
    const after = await post(url, circle, { 'content-type': 'image/jpeg' });
    expect(output(after.json, 'label').data).toEqual(['circle']);
  });

  it('metadata says what the model takes raw and which labels it answers', async () => {
    const meta = (await (await fetch(`${images.url}/v2/models/shapes_image`)).json()) as Record<string, unknown>;
    expect(meta.processing).toEqual({ input: 'image', labels: ['circle', 'square', 'triangle', 'cross'], label_outputs: ['label', 'score'] });
  });
});

describe('texts in, labels out', () => {
  const infer = () => `${texts.url}/v2/models/text_topic/infer`;

  it('text/plain, a BYTES input, v1 strings and /invocations all answer the same label', async () => {
    const sentence = 'the referee stopped the match after the second goal';
    const plain = await post(infer(), sentence, { 'content-type': 'text/plain; charset=utf-8' });
    expect(plain.status).toBe(200);
    expect(output(plain.json, 'label').data).toEqual(['sports']);
    const bytes = await post(
      infer(),
      JSON.stringify({ inputs: [{ name: 'text', datatype: 'BYTES', shape: [2], data: [sentence, 'chop the onion and fry it in the pan'] }] }),
    );
    expect(output(bytes.json, 'label').data).toEqual(['sports', 'cooking']);
    // Padded to the longer sentence in one run: the first one's logits are unchanged by the padding.
    (output(bytes.json, 'logits').data as number[]).slice(0, 3).forEach((v, i) => expect(v).toBeCloseTo(output(plain.json, 'logits').data[i] as number, 4));
    const v1 = await post(
      `${texts.url}/v1/models/text_topic:predict`,
      JSON.stringify({ instances: ['heavy rain and thunder tonight'], parameters: { top_k: 3 } }),
    );
    expect((v1.json.predictions as { label: string }[][])[0].map((l) => l.label)[0]).toBe('weather');
    expect((v1.json.predictions as unknown[][])[0]).toHaveLength(3);
    const sm = await post(`${texts.url}/invocations`, 'stir the soup with a spoon', { 'content-type': 'text/plain' });
    expect(sm.json).toEqual([{ label: 'cooking', score: expect.any(Number) }]);
  });

  it('more texts in one request than MAX_RAW_INPUTS is 413 before any is tokenized', async () => {
    const many = await post(
      infer(),
      JSON.stringify({ inputs: [{ name: 'text', datatype: 'BYTES', shape: [MAX_RAW_INPUTS + 1], data: new Array(MAX_RAW_INPUTS + 1).fill('rain') }] }),
    );
    expect([many.status, many.json.error]).toEqual([
      413,
      `${MAX_RAW_INPUTS + 1} texts in one request, over the ${MAX_RAW_INPUTS} a request may hold: each is decoded or tokenized before the model runs; send them in several requests`,
    ]);
    const enough = await post(
      infer(),
      JSON.stringify({ inputs: [{ name: 'text', datatype: 'BYTES', shape: [MAX_RAW_INPUTS], data: new Array(MAX_RAW_INPUTS).fill('rain') }] }),
    );
    expect(output(enough.json, 'label').shape).toEqual([MAX_RAW_INPUTS, 1]);
  });

  it('empty, non-UTF-8 and 1 MB texts, and an image, are refused; the server answers after', async () => {
    const empty = await post(infer(), '', { 'content-type': 'text/plain' });
    expect([empty.status, empty.json.error]).toEqual([400, 'text: the text is empty']);
    const latin1 = await post(infer(), Buffer.from([0x63, 0x61, 0x66, 0xe9]), { 'content-type': 'text/plain' });
    expect([latin1.status, latin1.json.error]).toEqual([400, 'the body: the text is not UTF-8']);
    const huge = await post(infer(), 'word '.repeat(200_000), { 'content-type': 'text/plain' });
    expect(huge.status).toBe(413);
    const image = await post(infer(), circle, { 'content-type': 'image/jpeg' });
    expect([image.status, image.json.error]).toEqual([415, 'this model takes text, not image/jpeg; send text/plain or tensors']);
    const ok = await post(infer(), 'sunny and warm all weekend', { 'content-type': 'text/plain' });
    expect(output(ok.json, 'label').data).toEqual(['weather']);
  });
});

describe('a model folder served by its folder name', () => {
  it('mlops serve --model <folder> names the model after the folder', async () => {
    const server = await startServer(serveOptions('text_topic', { modelPath: path.dirname(fixture('text_topic', 'model.onnx')), workers: 0 }), quiet);
    try {
      const meta = (await (await fetch(`${server.url}/v2/models/text_topic`)).json()) as { name: string };
      expect(meta.name).toBe('text_topic');
    } finally {
      await server.stop();
    }
  });
});

describe('the reference profile of a text model', () => {
  it('counts tokens and unknown tokens, the same in the holdout (padded to 32) and in requests (padded to their longest)', async () => {
    const profile = await profileFor('text_topic', { test: { holdout: 'fixtures/text_topic/holdout.csv' } });
    expect(profile.features.map((f) => [f.name, f.stat])).toEqual([
      ['tokens', 'sum'],
      ['unknown_tokens', 'count'],
    ]);
    const tokens = profile.features[0];
    // The sentences are 5 to 25 words: with [CLS] and [SEP], and cut at 32.
    expect(tokens.min).toBeGreaterThanOrEqual(5);
    expect(tokens.max).toBe(32);
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'profile.json');
      await writeFile(file, JSON.stringify(profile));
      const server = await startServer(serveOptions('text_topic', { workers: 1, profilePath: file }), quiet);
      try {
        // Two sentences in one request: padded to the longer; each counted by its own length.
        const short = 'rain';
        const long = 'the referee stopped the match after the second goal';
        await post(
          `${server.url}/v2/models/text_topic/infer`,
          JSON.stringify({ inputs: [{ name: 'text', datatype: 'BYTES', shape: [2], data: [short, long] }] }),
        );
        const doc = (await (await fetch(`${server.url}/v2/models/text_topic/profile`)).json()) as {
          live: { rows: number; features: Record<string, { total: number[] }> };
        };
        expect(doc.live.rows).toBe(2);
        const expected = new Array(tokens.edges.length + 2).fill(0);
        for (const n of [3, 11]) expected[binIndex(tokens.edges, n)]++;
        expect(doc.live.features.tokens.total).toEqual(expected);
      } finally {
        await server.stop();
      }
    });
  });
});

describe('a server without worker threads', () => {
  it('runs a request of more rows than a batch on the main thread (it answered 500 before: no worker to send it to)', async () => {
    const server = await startServer(serveOptions('breast_cancer', { workers: 0 }), quiet);
    try {
      const rows = 40;
      const { status, json } = await post(
        `${server.url}/v2/models/breast_cancer/infer`,
        JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [rows, 30], data: new Array(rows * 30).fill(1) }] }),
      );
      expect(status).toBe(200);
      expect(json.outputs[0].shape[0]).toBe(rows);
    } finally {
      await server.stop();
    }
  });
});
