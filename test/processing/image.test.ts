/**
 * src/processing/image.ts: images to tensors, checked against numbers computed here (pixels decoded by
 * pngjs) and against PIL + torch (fixtures/generate_inputs.py wrote their logits).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PNG } from 'pngjs';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/model/session.js';
import { BadRequest } from '../../src/protocol/request.js';
import { imagesToTensor, resizedSize, type ImageSettings } from '../../src/processing/image.js';
import { createPreprocessor } from '../../src/processing/plan.js';
import { gifBomb, pngDeclaring } from '../hostile-images.js';
import { IMAGE, planOf } from './model-folders.js';

describe('images to tensors', () => {
  it('an image already at the model size: exactly (pixel / 255 - 0.5) / 0.5 of the PNG as pngjs decodes it, in NCHW', async () => {
    const plan = await planOf(IMAGE);
    // A 64x64 RGB PNG of known pixels: no resampling, so every value is exact.
    const png = new PNG({ width: 64, height: 64 });
    for (let i = 0; i < 64 * 64; i++) png.data.set([(i * 7) % 256, (i * 13) % 256, (i * 31) % 256, 255], i * 4);
    const bytes = PNG.sync.write(png);
    const { tensor, facts } = await imagesToTensor([bytes], plan.image!, () => 'test.png');
    expect(tensor.dims).toEqual([1, 3, 64, 64]);
    const decoded = PNG.sync.read(bytes);
    const data = tensor.data as Float32Array;
    for (let c = 0; c < 3; c++) for (let p = 0; p < 64 * 64; p++) expect(data[c * 4096 + p]).toBe(Math.fround((decoded.data[p * 4 + c] / 255 - 0.5) / 0.5));
    expect(facts[0]).toMatchObject({ format: 'png', width: 64, height: 64 });
  });

  it('NHWC, UINT8 and grey inputs are laid out as the model declares', async () => {
    const rgb = await sharp({ create: { width: 4, height: 2, channels: 3, background: { r: 10, g: 20, b: 30 } } })
      .png()
      .toBuffer();
    const base = (await planOf(IMAGE)).image!;
    const nhwc: ImageSettings = { ...base, layout: 'NHWC', datatype: 'UINT8', rescaleFactor: null, normalize: null, resize: null, height: null, width: null };
    const out = await imagesToTensor([rgb], nhwc, () => 'x');
    expect(out.tensor.dims).toEqual([1, 2, 4, 3]);
    expect(Array.from(out.tensor.data as Uint8Array).slice(0, 6)).toEqual([10, 20, 30, 10, 20, 30]);
    const grey = await imagesToTensor([rgb], { ...nhwc, layout: 'NCHW', channels: 1 }, () => 'x');
    expect(grey.tensor.dims).toEqual([1, 1, 2, 4]);
  });

  it("resized images: the model's logits within 0.5 of PIL + torch's (bilinear resampling differs a little between libvips and PIL)", async () => {
    const expected = JSON.parse(await readFile(path.join(IMAGE, 'expected.json'), 'utf8')) as { cases: { file: string; label: string; logits: number[] }[] };
    const plan = await planOf(IMAGE);
    const model = await loadModel({ path: path.join(IMAGE, 'model.onnx') });
    const pre = createPreprocessor(plan)!;
    try {
      for (const c of expected.cases) {
        const { feeds } = await pre.toFeeds([await readFile(path.join(IMAGE, c.file))], () => c.file);
        const logits = Array.from((await model.run(feeds)).logits.data as Float32Array);
        logits.forEach((v, i) => expect(Math.abs(v - c.logits[i]), `${c.file} logit ${i}: ${v} vs ${c.logits[i]}`).toBeLessThan(0.5));
        expect(logits.indexOf(Math.max(...logits))).toBe(c.logits.indexOf(Math.max(...c.logits)));
      }
    } finally {
      await model.release();
    }
  });

  it("transformers' resize rules: shortest edge, ConvNeXt's crop_pct, a longest-edge bound", () => {
    expect(resizedSize({ shortestEdge: 224 }, 640, 480)).toEqual({ width: 298, height: 224 });
    expect(resizedSize({ shortestEdge: 224 }, 480, 640)).toEqual({ width: 224, height: 298 });
    expect(resizedSize({ shortestEdge: 224, cropPct: 0.875 }, 640, 480)).toEqual({ width: 341, height: 256 });
    expect(resizedSize({ shortestEdge: 384, cropPct: 0.875 }, 640, 480)).toEqual({ width: 384, height: 384 });
    expect(resizedSize({ shortestEdge: 800, longestEdge: 1333 }, 2000, 1000)).toEqual({ width: 1333, height: 666 });
    expect(resizedSize({ height: 10, width: 20 }, 640, 480)).toEqual({ width: 20, height: 10 });
  });

  it('EXIF orientation is applied: a 40x20 image tagged "rotate 90" arrives 20 wide and 40 high', async () => {
    const landscape = await sharp({ create: { width: 40, height: 20, channels: 3, background: '#ff0000' } })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const base = (await planOf(IMAGE)).image!;
    const { facts } = await imagesToTensor([landscape], { ...base, resize: { height: 64, width: 64 } }, () => 'x');
    expect(facts[0]).toMatchObject({ width: 20, height: 40 });
  });

  it('bad images are refused before decoding, each with its status, and a transparent image takes the configured alpha rule', async () => {
    const settings = (await planOf(IMAGE)).image!;
    const jpeg = await readFile(path.join(IMAGE, 'holdout/circle/001.jpg'));
    const refused = async (bytes: Uint8Array, s: ImageSettings = settings) => {
      const error = await imagesToTensor([bytes], s, () => 'upload').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(BadRequest);
      return error as BadRequest;
    };
    expect((await refused(jpeg.subarray(0, Math.floor(jpeg.length / 2)))).status).toBe(400);
    const bomb = await refused(pngDeclaring(100_000, 100_000));
    expect([bomb.status, bomb.message]).toEqual([413, expect.stringContaining('100000 x 100000 pixels, over the 50000000')]);
    expect((await refused(gifBomb())).status).toBe(413);
    expect((await refused(Buffer.from('hello, not an image'))).message).toMatch(/^upload: not an image that can be read/);
    expect((await refused(Buffer.alloc(0))).message).toBe('upload: empty image (0 bytes)');
    expect((await refused(jpeg, { ...settings, maxBytes: 100 })).status).toBe(413);
    expect((await refused(jpeg, { ...settings, formats: ['png'] })).status).toBe(415);
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>');
    expect((await refused(svg)).status).toBe(415);
    const transparent = await sharp({ create: { width: 64, height: 64, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
      .png()
      .toBuffer();
    expect((await refused(transparent, { ...settings, alpha: 'refuse' })).message).toContain('alpha channel');
    const white = await imagesToTensor([transparent], settings, () => 'x');
    // Fully transparent on white: every value is (255 / 255 - 0.5) / 0.5 = 1.
    expect(Array.from(white.tensor.data as Float32Array).every((v) => v === 1)).toBe(true);
  });
});
