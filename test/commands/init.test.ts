import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { lines, runCli, withTempDir, fixture } from '../helpers.js';

describe('mlops init', () => {
  it('writes a starter config from the model and refuses to overwrite it without --force', async () => {
    await withTempDir(async (dir) => {
      const first = await runCli(['init', '--model', fixture('wine', 'model.onnx')], { cwd: dir });
      expect(first.code).toBe(0);
      const written = JSON.parse(await readFile(path.join(dir, 'mlops.config.json'), 'utf8'));
      expect(written.model.name).toBe('wine');
      expect(path.resolve(dir, written.model.path)).toBe(fixture('wine', 'model.onnx'));
      const loaded = await loadConfig({ cwd: dir });
      expect(loaded.config.model.name).toBe('wine');

      const second = await runCli(['init', '--model', fixture('diabetes', 'model.onnx')], { cwd: dir });
      expect(second.code).toBe(2);
      expect(lines(second.stderr)[0]).toBe('error: mlops.config.json already exists; not overwriting it');
      expect(JSON.parse(await readFile(path.join(dir, 'mlops.config.json'), 'utf8')).model.name).toBe('wine');

      const forced = await runCli(['init', '--model', fixture('diabetes', 'model.onnx'), '--force'], { cwd: dir });
      expect(forced.code).toBe(0);
      expect(JSON.parse(await readFile(path.join(dir, 'mlops.config.json'), 'utf8')).model.name).toBe('diabetes');
    });
  });

  it('writes nothing when the model is broken', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'bad.onnx'), 'nope');
      const { code } = await runCli(['init', '--model', 'bad.onnx'], { cwd: dir });
      expect(code).toBe(2);
      await expect(readFile(path.join(dir, 'mlops.config.json'))).rejects.toThrow();
    });
  });
});
