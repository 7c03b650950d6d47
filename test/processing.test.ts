/**
 * src/processing/ and the holdouts that read through it: a model folder as the spec of how images
 * and texts become tensors, checked against numbers computed here (pixels decoded by pngjs), against
 * PIL + torch (fixtures/generate_inputs.py wrote their logits), and against the tokenizer library itself.
 */
import { readFile, mkdir, writeFile, cp, symlink } from 'node:fs/promises';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { PNG } from 'pngjs';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { openHoldout } from '../src/holdout/open.js';
import { defaultModelName, inspectModel } from '../src/model/inspect.js';
import { loadModel } from '../src/model/session.js';
import { BadRequest } from '../src/protocol/request.js';
import { imagesToTensor, resizedSize, type ImageSettings } from '../src/processing/image.js';
import { topLabels } from '../src/processing/labels.js';
import { createPreprocessor, describePlan, loadProcessing, planProcessing, servableSignature, type ProcessingPlan } from '../src/processing/plan.js';
import { readModelFolder } from '../src/processing/folder.js';
import { fixture, runCli, withTempDir } from './helpers.js';
import { gifBomb, pngDeclaring } from './hostile-images.js';

const IMAGE = fixture('shapes_image');
const TEXT = fixture('text_topic');

async function planOf(folder: string, overrides = {}): Promise<ProcessingPlan> {
  const info = await inspectModel(folder);
  return (await loadProcessing(info.path, servableSignature(info), overrides))!;
}

describe('a model folder', () => {
  it('an image export: the processor config, the model input, and id2label read from the folder', async () => {
    const plan = await planOf(IMAGE);
    expect(plan.image).toMatchObject({
      input: 'pixel_values',
      layout: 'NCHW',
      channels: 3,
      height: 64,
      width: 64,
      datatype: 'FP32',
      resize: { height: 64, width: 64 },
      resample: 'bilinear',
      rescaleFactor: 1 / 255,
      normalize: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
      alpha: 'white',
    });
    expect(plan.labels).toEqual({ output: 'logits', function: 'softmax', names: ['circle', 'square', 'triangle', 'cross'], topK: 1 });
    expect(plan.files.map((f) => f.name).sort()).toEqual(['config.json', 'preprocessor_config.json']);
    expect(describePlan(plan)[0]).toContain("input 'pixel_values' <- an image");
  });

  it('a text export: the tokenizer fills input_ids, attention_mask and token_type_ids; the config bounds the length', async () => {
    const plan = await planOf(TEXT);
    expect(plan.text!.settings).toMatchObject({
      maxLength: 32,
      truncation: 'truncate',
      inputs: { ids: { name: 'input_ids' }, mask: { name: 'attention_mask' }, typeIds: { name: 'token_type_ids' } },
    });
    expect(plan.files.map((f) => f.name).sort()).toEqual(['config.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
  });

  it("config's model.preprocess and model.postprocess win over the folder's files", async () => {
    const plan = await planOf(IMAGE, {
      preprocess: { image: { resize: { shortestEdge: 80 }, centerCrop: { height: 64, width: 64 }, alpha: 'refuse' } },
      postprocess: { function: 'sigmoid', topK: 2 },
    });
    expect(plan.image).toMatchObject({ resize: { shortestEdge: 80 }, centerCrop: { height: 64, width: 64 }, alpha: 'refuse' });
    expect(plan.labels).toMatchObject({ function: 'sigmoid', topK: 2 });
  });

  it("what the folder suggests and the model cannot take is a note, never a refusal: a decoder's past key values, a feature extractor's id2label", async () => {
    const folder = await readModelFolder(path.join(TEXT, 'model.onnx'));
    const ids = { name: 'input_ids', datatype: 'INT64' as const, shape: [-1, -1] };
    const hidden = { name: 'last_hidden_state', datatype: 'FP32' as const, shape: [-1, -1, 16] };
    const plan = planProcessing(folder, { inputs: [ids, { name: 'past_key_values.0.key', datatype: 'FP32', shape: [-1, 2, -1, 8] }], outputs: [hidden] })!;
    expect(plan.text).toBeUndefined();
    expect(plan.labels).toBeUndefined();
    expect(plan.files).toEqual([]);
    expect(plan.notes).toEqual([
      expect.stringContaining("the model also takes 'past_key_values.0.key', which a tokenizer does not fill"),
      expect.stringContaining("output 'last_hidden_state' is [-1, -1, 16], not [batch, 3] classes"),
    ]);
    // Asked for in the config, the same is an error.
    expect(() =>
      planProcessing(
        folder,
        { inputs: [ids, { name: 'past_key_values.0.key', datatype: 'FP32', shape: [-1, 2, -1, 8] }], outputs: [hidden] },
        { preprocess: { text: { maxLength: 16 } } },
      ),
    ).toThrow(/which a tokenizer does not fill/);
  });

  it('a tabular model has no plan; a folder without an .onnx file, or with two, is refused naming it', async () => {
    expect(await planOf(fixture('breast_cancer'))).toBeUndefined();
    await withTempDir(async (dir) => {
      await expect(inspectModel(dir)).rejects.toThrow(/is a folder with no \.onnx file in it/);
      await cp(fixture('wine', 'model.onnx'), path.join(dir, 'a.onnx'));
      await cp(fixture('wine', 'model.onnx'), path.join(dir, 'b.onnx'));
      await expect(inspectModel(dir)).rejects.toThrow(/holds 2 \.onnx files \(a\.onnx, b\.onnx\) and no model\.onnx/);
    });
  });

  it('mlops init on an export folder writes its path and says what each input will receive', async () => {
    await withTempDir(async (dir) => {
      const result = await runCli(['init', '--model', IMAGE, '--json'], { cwd: dir });
      expect(result.code, result.stderr).toBe(0);
      const report = JSON.parse(result.stdout) as { config: { model: { path: string; name: string } }; receives: string[] };
      expect(path.resolve(dir, report.config.model.path)).toBe(IMAGE);
      expect(report.config.model.name).toBe('shapes_image');
      expect(report.receives[0]).toMatch(/^input 'pixel_values' <- an image/);
    });
  });

  it('a Transformers.js-style folder (the model in onnx/, the processing files above it) is read as one', async () => {
    await withTempDir(async (dir) => {
      await cp(TEXT, dir, { recursive: true });
      await mkdir(path.join(dir, 'onnx'));
      await cp(path.join(TEXT, 'model.onnx'), path.join(dir, 'onnx', 'model.onnx'));
      await (await import('node:fs/promises')).rm(path.join(dir, 'model.onnx'));
      const info = await inspectModel(dir);
      expect(info.path).toBe(path.join(dir, 'onnx', 'model.onnx'));
      expect(defaultModelName(info.path)).toBe(
        path
          .basename(dir)
          .toLowerCase()
          .replace(/[^a-z0-9._-]+/g, '-')
          .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, ''),
      );
      const plan = await loadProcessing(info.path, servableSignature(info), {});
      expect(plan?.text?.settings.maxLength).toBe(32);
      expect(plan?.labels?.names).toEqual(['sports', 'weather', 'cooking']);
    });
  });

  it('a processing file with wrong values is exit 2 naming the field, never dropped in silence', async () => {
    for (const [field, value, said] of [
      ['size', { height: 'big', width: -3 }, '"size" is {"height":"big","width":-3}'],
      ['resample', 99, '"resample" is 99'],
      ['image_std', [0, 0, 0], 'image_mean and image_std need 3 values (std above 0)'],
      ['rescale_factor', -1, '"rescale_factor" is -1'],
    ] as const) {
      await withTempDir(async (dir) => {
        await cp(IMAGE, dir, { recursive: true });
        const json = JSON.parse(await readFile(path.join(dir, 'preprocessor_config.json'), 'utf8'));
        await writeFile(path.join(dir, 'preprocessor_config.json'), JSON.stringify({ ...json, [field]: value }));
        const { code, stderr } = await runCli(['inspect', dir]);
        expect(code, field).toBe(2);
        expect(stderr).toContain(said);
      });
    }
  });

  it('a CSV without the image or text column says which column is missing', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'texts.csv'), 'body,label\nrain all day,weather\n');
      const { code, stderr } = await runCli(['test', '--local', '--model', TEXT, '--holdout', path.join(dir, 'texts.csv')]);
      expect(code).toBe(2);
      expect(stderr).toContain('texts.csv: no text column (text, sentence, content)');
    });
  });

  it('a broken processing file is exit 2 naming the file', async () => {
    await withTempDir(async (dir) => {
      await cp(IMAGE, dir, { recursive: true });
      await writeFile(path.join(dir, 'preprocessor_config.json'), '{"size": ');
      const { code, stderr } = await runCli(['inspect', dir]);
      expect(code).toBe(2);
      expect(stderr).toContain(`${path.join(dir, 'preprocessor_config.json')}: not valid JSON`);
    });
  });
});

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

describe('texts to tensors', () => {
  it("every holdout row tokenizes to the library's own ids, cut at 32 with [CLS] and [SEP] kept, as the generator's torch logits were made", async () => {
    const plan = await planOf(TEXT);
    const pre = createPreprocessor(plan)!;
    const json = JSON.parse(await readFile(path.join(TEXT, 'tokenizer.json'), 'utf8'));
    const config = JSON.parse(await readFile(path.join(TEXT, 'tokenizer_config.json'), 'utf8'));
    const library = new Tokenizer(json, config);
    const holdout = await openHoldout({
      cwd: TEXT,
      holdout: 'holdout.csv',
      inputs: (await inspectModel(TEXT)).inputs.map((i) => ({ name: i.name, datatype: i.datatype as 'INT64', shape: i.shape! })),
      label: 'label',
      features: [],
      processing: plan,
    });
    let rows = 0;
    let cut = 0;
    const csv = (await readFile(path.join(TEXT, 'holdout.csv'), 'utf8')).split('\n');
    for await (const row of holdout.rows()) {
      const text = (await import('csv-parse/sync')).parse(csv[Number(row.where.slice(4)) - 1])[0][0];
      const ids = library.encode(text).ids;
      const expected = ids.length > 32 ? [...ids.slice(0, 31), ids.at(-1)!] : ids;
      if (ids.length > 32) cut++;
      const got = Array.from(row.inputs.input_ids as unknown as BigInt64Array, Number);
      expect(got.slice(0, expected.length), row.where).toEqual(expected);
      expect(got.slice(expected.length).every((id) => id === 0)).toBe(true);
      expect(Array.from(row.inputs.attention_mask as unknown as BigInt64Array, Number)).toEqual(got.map((_, i) => (i < expected.length ? 1 : 0)));
      rows++;
    }
    expect(rows).toBe(90);
    expect(cut).toBeGreaterThan(0);
    // A batch is padded to its longest text, no further.
    const { feeds, facts } = await pre.toFeeds(['rain', 'rain and thunder over the hills tonight'], (i) => `text ${i}`);
    const tokens = facts.map((f) => ('text' in f ? f.text.tokens : 0));
    expect(feeds.input_ids.dims).toEqual([2, tokens[1]]);
    expect(tokens[0]).toBeLessThan(tokens[1]);
  });

  it("the model's logits for the generator's sentences equal torch's", async () => {
    const expected = JSON.parse(await readFile(path.join(TEXT, 'expected.json'), 'utf8')) as {
      cases: { text: string; input_ids: number[]; logits: number[] }[];
    };
    const pre = createPreprocessor(await planOf(TEXT))!;
    const model = await loadModel({ path: path.join(TEXT, 'model.onnx') });
    try {
      for (const c of expected.cases) {
        const { feeds } = await pre.toFeeds([c.text], () => 'x');
        expect(Array.from(feeds.input_ids.data as BigInt64Array, Number)).toEqual(c.input_ids);
        const logits = Array.from((await model.run(feeds)).logits.data as Float32Array);
        logits.forEach((v, i) => expect(v).toBeCloseTo(c.logits[i], 3));
      }
    } finally {
      await model.release();
    }
  });

  it('empty, over-long (refuse) and over-size texts are refused with their reason', async () => {
    const pre = createPreprocessor(await planOf(TEXT, { preprocess: { text: { truncation: 'refuse' } } }))!;
    await expect(pre.toFeeds(['   '], () => 'row 3')).rejects.toThrow('row 3: the text is empty');
    await expect(pre.toFeeds(['rain '.repeat(40)], () => 'row 4')).rejects.toThrow(/row 4: 42 tokens, over the model's 32/);
    const big = await pre
      .toFeeds(['x'.repeat(1 << 20)], () => 'row 5')
      .then(
        () => undefined,
        (e: BadRequest) => e,
      );
    expect([big?.status, big?.message]).toEqual([413, expect.stringContaining('1048576 bytes of text, over the 65536')]);
    await expect(pre.toFeeds([Buffer.from([0xff, 0xfe, 0x41])], () => 'body')).rejects.toThrow('body: the text is not UTF-8');
  });
});

describe('labels', () => {
  it('softmax and sigmoid, top k with names, ties to the lower index', () => {
    const tensor = { data: new Float32Array([0, 0, Math.log(2), 3, 1, 2]), dims: [2, 3] };
    const settings = { output: 'logits', function: 'softmax' as const, names: ['a', 'b', 'c'], topK: 2 };
    const [first, second] = topLabels(tensor, settings);
    expect(first.map((l) => l.label)).toEqual(['c', 'a']);
    expect(first[0].score).toBeCloseTo(0.5, 6);
    expect(first[1].score).toBeCloseTo(0.25, 6);
    expect(second.map((l) => l.label)).toEqual(['a', 'c']);
    const sigmoid = topLabels(tensor, { ...settings, function: 'sigmoid', names: [] }, 1);
    expect(sigmoid[0]).toEqual([{ label: 'LABEL_2', score: expect.closeTo(2 / 3, 6) }]);
  });
});

describe('holdouts of images and texts', () => {
  const imageInputs = [{ name: 'pixel_values', datatype: 'FP32' as const, shape: [-1, 3, 64, 64] }];

  it('an ImageFolder: one row per image, labelled by its folder, in a stable order', async () => {
    const holdout = await openHoldout({ cwd: IMAGE, holdout: 'holdout', inputs: imageInputs, label: 'label', features: [], model: { path: IMAGE } });
    const labels: (string | number)[] = [];
    for await (const row of holdout.rows()) {
      expect(row.shapes.pixel_values).toEqual([3, 64, 64]);
      labels.push(row.label);
    }
    expect(labels).toHaveLength(48);
    expect(new Set(labels)).toEqual(new Set(['circle', 'square', 'triangle', 'cross']));
    expect(holdout.format).toBe('images');
  });

  it('a CSV of image paths reads the same pixels as the folder', async () => {
    const folder = await openHoldout({ cwd: IMAGE, holdout: 'holdout', inputs: imageInputs, label: 'label', features: [], model: { path: IMAGE } });
    const table = await openHoldout({ cwd: IMAGE, holdout: 'holdout.csv', inputs: imageInputs, label: 'label', features: [], model: { path: IMAGE } });
    const byName = new Map<string, Float32Array>();
    for await (const row of folder.rows()) byName.set(row.where, row.inputs.pixel_values as Float32Array);
    const csv = (await readFile(path.join(IMAGE, 'holdout.csv'), 'utf8'))
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split(',')[0]);
    let i = 0;
    for await (const row of table.rows()) {
      const same = byName.get(path.relative('holdout', csv[i++]));
      expect(same).toBeDefined();
      expect(row.inputs.pixel_values).toEqual(same);
    }
    expect(i).toBe(48);
  });

  it('a path outside the holdout folder, a broken image and a folder for a tabular model are refused naming the row', async () => {
    await withTempDir(async (dir) => {
      await mkdir(path.join(dir, 'data'));
      await writeFile(path.join(dir, 'data', 'escape.csv'), 'image,label\n../secret.png,circle\n');
      await writeFile(path.join(dir, 'data', 'absolute.csv'), `image,label\n${path.join(IMAGE, 'holdout/circle/000.png')},circle\n`);
      await symlink(path.join(IMAGE, 'holdout/circle/000.png'), path.join(dir, 'data', 'link.png'));
      await writeFile(path.join(dir, 'data', 'link.csv'), 'image,label\nlink.png,circle\n');
      await writeFile(path.join(dir, 'data', 'broken.csv'), 'image,label\nbroken.jpg,circle\n');
      await writeFile(path.join(dir, 'data', 'broken.jpg'), (await readFile(path.join(IMAGE, 'holdout/circle/001.jpg'))).subarray(0, 300));
      const read = async (file: string) => {
        const holdout = await openHoldout({ cwd: dir, holdout: file, inputs: imageInputs, label: 'label', features: [], model: { path: IMAGE } });
        for await (const _row of holdout.rows()) void _row;
      };
      await expect(read('data/escape.csv')).rejects.toThrow("data/escape.csv row 2: '../secret.png' is outside the holdout's folder");
      await expect(read('data/absolute.csv')).rejects.toThrow(/row 2: '.*000\.png' is an absolute path/);
      await expect(read('data/link.csv')).rejects.toThrow("row 2: 'link.png' is outside the holdout's folder");
      await expect(read('data/broken.csv')).rejects.toThrow(/data\/broken\.csv row 2: the image data is damaged|data\/broken\.csv row 2: not an image/);
      await expect(
        openHoldout({
          cwd: dir,
          holdout: 'data',
          inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, 30] }],
          label: 'label',
          features: [],
          model: { path: fixture('breast_cancer') },
        }),
      ).rejects.toThrow('data is a folder, and the model takes no images');
    });
  });

  it('mlops test on an image folder and on a text CSV passes its gates, labels read as names through id2label', async () => {
    const images = await runCli(['test', '--local', '--model', IMAGE, '--holdout', path.join(IMAGE, 'holdout'), '--gate', 'accuracy>=0.9', '--json']);
    expect(images.code).toBe(0);
    expect(JSON.parse(images.stdout)).toMatchObject({
      rows: 48,
      passed: true,
      holdout: { format: 'images' },
      classes: ['circle', 'square', 'triangle', 'cross'],
    });
    const texts = await runCli(['test', '--local', '--model', TEXT, '--holdout', path.join(TEXT, 'holdout.csv'), '--gate', 'accuracy>=0.9', '--json']);
    expect(texts.code).toBe(0);
    expect(JSON.parse(texts.stdout)).toMatchObject({ rows: 90, passed: true, classes: ['sports', 'weather', 'cooking'] });
  });
});

describe('mlops explain on an image folder', () => {
  it('draws each example map over the picture the model saw, the preprocessing undone', async () => {
    await withTempDir(async (dir) => {
      const html = path.join(dir, 'explain.html');
      const result = await runCli(['explain', '--local', '--model', IMAGE, '--holdout', path.join(IMAGE, 'holdout'), '--rows', '8', '--html', html, '--json']);
      expect(result.code, result.stderr).toBe(0);
      const report = JSON.parse(result.stdout) as { method: string; examples: { where: string; picture: string; map: number[][] }[] };
      expect(report.method).toBe('occlusion');
      expect(report.examples.map((e) => e.where.split('/')[0])).toEqual(['circle', 'cross', 'square', 'triangle']);
      // The picture is the image at the model's size: 64 x 64, the pixels of the holdout file resized.
      const picture = Buffer.from(report.examples[0].picture.replace('data:image/png;base64,', ''), 'base64');
      const meta = await sharp(picture).metadata();
      expect([meta.width, meta.height]).toEqual([64, 64]);
      const written = await readFile(html, 'utf8');
      expect(written).toContain('<image href="data:image/png;base64,');
      expect(written).not.toMatch(/<(script|link|img)\b|https?:\/\/(?!www\.w3\.org)/);
    });
  });
});

describe('mlops explain on a text CSV', () => {
  it('ranks vocabulary tokens by the fall when each is masked, and shades sentences token by token', async () => {
    await withTempDir(async (dir) => {
      const html = path.join(dir, 'explain.html');
      const result = await runCli([
        'explain',
        '--local',
        '--model',
        TEXT,
        '--holdout',
        path.join(TEXT, 'holdout.csv'),
        '--rows',
        '30',
        '--html',
        html,
        '--json',
      ]);
      expect(result.code, result.stderr).toBe(0);
      const report = JSON.parse(result.stdout) as {
        method: string;
        maskToken: string;
        explainedRows: number;
        tokens: { token: string; meanAbsAttribution: number }[];
        examples: { label: string; tokens: { token: string }[] }[];
      };
      expect(report).toMatchObject({ method: 'token-occlusion', maskToken: '[MASK]', explainedRows: 30 });
      // A topic classifier leans on topic words, not on punctuation or special tokens.
      const top = report.tokens.slice(0, 10).map((t) => t.token);
      expect(top.filter((t) => /^[a-z]{3,}$/.test(t)).length).toBeGreaterThanOrEqual(8);
      expect(report.tokens.map((t) => t.token)).not.toContain('[CLS]');
      expect(report.tokens.map((t) => t.token)).not.toContain('[PAD]');
      expect(report.examples[0].label).toMatch(/^(sports|weather|cooking)$/);
      const written = await readFile(html, 'utf8');
      expect(written).toContain('<span class="token"');
      expect(written).not.toMatch(/<(script|link|img)\b|https?:\/\/(?!www\.w3\.org)/);
    });
  });
});

describe('.npy holdouts of real-size images', () => {
  it('16 images of 3x320x320 read in bounded chunks (never rows x 4,096 x a row), as typed arrays', async () => {
    await withTempDir(async (dir) => {
      const rows = 16;
      const size = 3 * 320 * 320;
      const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, 3, 320, 320), }`;
      const padded = header + ' '.repeat(64 - ((10 + header.length + 1) % 64)) + '\n';
      const head = Buffer.alloc(10);
      head.write('\x93NUMPY', 0, 'latin1');
      head[6] = 1;
      head.writeUInt16LE(padded.length, 8);
      const data = new Float32Array(rows * size);
      for (let r = 0; r < rows; r++) data[r * size] = r;
      await writeFile(path.join(dir, 'x.npy'), Buffer.concat([head, Buffer.from(padded, 'latin1'), Buffer.from(data.buffer)]));
      const before = process.memoryUsage().arrayBuffers;
      const holdout = await openHoldout({
        cwd: dir,
        holdout: 'x.npy',
        inputs: [{ name: 'images', datatype: 'FP32', shape: [-1, 3, 320, 320] }],
        label: 'label',
        labelOptional: true,
        features: [],
      });
      let seen = 0;
      for await (const row of holdout.rows()) {
        expect(row.inputs.images).toBeInstanceOf(Float64Array);
        expect(row.inputs.images[0]).toBe(seen++);
      }
      expect(seen).toBe(16);
      // Once 5 GB were asked for here; now a read is a few MB.
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(200 * 2 ** 20);
    });
  });
});
