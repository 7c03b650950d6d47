import { copyFile, writeFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixture, lines, runCli, withTempDir } from '../helpers.js';

describe('mlops inspect', () => {
  it('reports signature, sha256, size, opset and producer as JSON', async () => {
    const { code, stdout } = await runCli(['inspect', fixture('multi_input', 'model.onnx'), '--json']);
    expect(code).toBe(0);
    const info = JSON.parse(stdout);
    expect(info.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(info.sizeBytes).toBe((await readFile(fixture('multi_input', 'model.onnx'))).length);
    expect(info.opset).toBe(13);
    expect(info.producer.name).toBe('pytorch');
    expect(info.inputs).toEqual([
      { name: 'dense', datatype: 'FP32', shape: [-1, 4] },
      { name: 'ids', datatype: 'INT64', shape: [-1, 3] },
    ]);
    expect(info.outputs).toEqual([
      { name: 'scores', datatype: 'FP32', shape: [-1, 3] },
      { name: 'label', datatype: 'INT64', shape: [-1] },
    ]);
  });

  it('shows fixed dimensions as they are', async () => {
    const { stdout } = await runCli(['inspect', fixture('fixed_batch', 'model.onnx'), '--json']);
    expect(JSON.parse(stdout).inputs[0].shape).toEqual([1, 4]);
  });

  it('prints a human table without --json', async () => {
    const { code, stdout } = await runCli(['inspect', fixture('breast_cancer', 'model.onnx')]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/features\s+FP32\s+\[-1, 30\]/);
    expect(stdout).toMatch(/probabilities\s+FP32\s+\[-1, 2\]/);
  });

  const broken: [string, (file: string) => Promise<void>, RegExp][] = [
    ['missing', async () => undefined, /model file not found: .*model\.onnx/],
    ['empty', (f) => writeFile(f, ''), /model\.onnx is empty \(0 bytes\)/],
    [
      'truncated',
      async (f) => writeFile(f, (await readFile(fixture('breast_cancer', 'model.onnx'))).subarray(0, 700)),
      /model\.onnx is not a valid ONNX model: the protobuf data ends early/,
    ],
    ['a text file', (f) => writeFile(f, '{"not": "a model"}\n'), /model\.onnx is not a valid ONNX model: it is a text file/],
    ['random bytes', (f) => writeFile(f, Buffer.from([0x08, 0x07, 0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01])), /model\.onnx is not (a valid|an) ONNX model/],
  ];
  for (const [what, make, message] of broken) {
    it(`exits 2 with one line naming the file when it is ${what}`, async () => {
      await withTempDir(async (dir) => {
        await make(path.join(dir, 'model.onnx'));
        const { code, stdout, stderr } = await runCli(['inspect', 'model.onnx'], { cwd: dir });
        expect(code).toBe(2);
        expect(stdout).toBe('');
        const [first, ...rest] = lines(stderr);
        expect(first).toMatch(message);
        expect(rest.every((l) => l.startsWith('hint:'))).toBe(true);
        expect(stderr).not.toMatch(/\n\s+at /);
      });
    });
  }

  it('prints one JSON error document on stdout under --json', async () => {
    const { code, stdout, stderr } = await runCli(['inspect', 'missing.onnx', '--json']);
    expect(code).toBe(2);
    expect(JSON.parse(stdout)).toEqual({
      error: { message: 'model file not found: missing.onnx', hint: 'check the path, or set model.path in mlops.config.json', exitCode: 2 },
    });
    expect(lines(stderr)[0]).toBe('error: model file not found: missing.onnx');
  });

  it('reads model.path from config when no file is given', async () => {
    await withTempDir(async (dir) => {
      await copyFile(fixture('wine', 'model.onnx'), path.join(dir, 'wine.onnx'));
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: 'wine.onnx' } }));
      const { code, stdout } = await runCli(['inspect', '--json'], { cwd: dir });
      expect(code).toBe(0);
      expect(JSON.parse(stdout).outputs[0].name).toBe('logits');
    });
  });
});

describe('models with external data', () => {
  it('lists the weight files, and serves like the same model in one file', async () => {
    const { stdout } = await runCli(['inspect', fixture('external_data', 'model.onnx'), '--json']);
    expect(JSON.parse(stdout).externalData).toEqual(['weights.bin']);
    const { loadModel } = await import('../../src/model/session.js');
    const split = await loadModel({ path: fixture('external_data', 'model.onnx') });
    const whole = await loadModel({ path: fixture('wine', 'model.onnx') });
    const feeds = { features: { data: Float32Array.from({ length: 13 }, (_, i) => i / 13), dims: [1, 13] } };
    expect(Array.from((await split.run(feeds)).logits.data as Float32Array)).toEqual(Array.from((await whole.run(feeds)).logits.data as Float32Array));
    await split.release();
    await whole.release();
  });

  it('exits 2 naming the missing weight file', async () => {
    await withTempDir(async (dir) => {
      await copyFile(fixture('external_data', 'model.onnx'), path.join(dir, 'model.onnx'));
      const { code, stderr } = await runCli(['inspect', 'model.onnx'], { cwd: dir });
      expect(code).toBe(2);
      expect(lines(stderr)[0]).toBe("error: model.onnx: its weights are in 'weights.bin', which is missing beside it");
    });
  });
});
