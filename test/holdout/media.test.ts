/** src/holdout/media.ts: holdouts of images (a folder per class, a CSV of paths) and of texts, read through src/processing/. */
import { readFile, mkdir, writeFile, symlink } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openHoldout } from '../../src/holdout/open.js';
import { fixture, runCli, withTempDir } from '../helpers.js';

const IMAGE = fixture('shapes_image');
const TEXT = fixture('text_topic');

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
