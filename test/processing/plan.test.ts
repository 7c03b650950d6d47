/** src/processing/plan.ts and folder.ts: a model folder as the spec of how images and texts become tensors. */
import { readFile, mkdir, writeFile, cp } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultModelName, inspectModel } from '../../src/model/inspect.js';
import { describePlan, loadProcessing, planProcessing, servableSignature } from '../../src/processing/plan.js';
import { readModelFolder } from '../../src/processing/folder.js';
import { fixture, runCli, withTempDir } from '../helpers.js';
import { IMAGE, planOf, TEXT } from './model-folders.js';

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
