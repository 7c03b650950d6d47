/** src/processing/text.ts: texts to tensors, checked against the tokenizer library itself and torch's logits (fixtures/generate_inputs.py). */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { openHoldout } from '../../src/holdout/open.js';
import { inspectModel } from '../../src/model/inspect.js';
import { loadModel } from '../../src/model/session.js';
import { BadRequest } from '../../src/protocol/request.js';
import { createPreprocessor } from '../../src/processing/plan.js';
import { planOf, TEXT } from './model-folders.js';

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
