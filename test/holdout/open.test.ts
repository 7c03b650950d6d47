import { access, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixture, lines, runCli, withTempDir } from '../helpers.js';
import { writeNpy } from '../npy.js';

const exists = (file: string) =>
  access(file).then(
    () => true,
    () => false,
  );
const errorLine = (stderr: string) => lines(stderr).find((l) => l.startsWith('error:'));

/** The wine holdout (13 features + label), edited. */
async function wineCsv(edit: (rows: string[][]) => string[][]): Promise<string> {
  const rows = (await readFile(fixture('wine', 'holdout.csv'), 'utf8'))
    .trim()
    .split(/\r?\n/)
    .map((l) => l.split(','));
  return (
    edit(rows)
      .map((r) => r.join(','))
      .join('\n') + '\n'
  );
}

const cases: [string, string, () => Promise<string>, RegExp][] = [
  [
    'an extra column',
    'h.csv',
    () => wineCsv((rows) => rows.map((r, i) => [...r, i === 0 ? 'note' : 'x'])),
    /^error: h\.csv: extra column 'note': the model needs 13 feature columns .*besides 'label', the file has 14$/,
  ],
  ['a missing column', 'h.csv', () => wineCsv((rows) => rows.map((r) => r.slice(1))), /^error: h\.csv: missing 1 column: the model needs 13 feature columns/],
  ['no label column', 'h.csv', () => wineCsv((rows) => rows.map((r) => r.slice(0, -1))), /^error: h\.csv: missing column 'label' \(the label\)$/],
  [
    'an empty cell',
    'h.csv',
    () => wineCsv((rows) => rows.map((r, i) => (i === 3 ? ['', ...r.slice(1)] : r))),
    /^error: h\.csv row 4, column 'alcohol': the cell is empty$/,
  ],
  [
    'a non-numeric cell',
    'h.csv',
    () => wineCsv((rows) => rows.map((r, i) => (i === 5 ? [r[0], 'high', ...r.slice(2)] : r))),
    /^error: h\.csv row 6, column 'malic_acid': "high" is not a number$/,
  ],
  [
    'a NaN',
    'h.csv',
    () => wineCsv((rows) => rows.map((r, i) => (i === 2 ? [r[0], r[1], 'NaN', ...r.slice(3)] : r))),
    /^error: h\.csv row 3, column 'ash': NaN is not a value the model can score$/,
  ],
  [
    'a label outside the classes',
    'h.csv',
    () => wineCsv((rows) => rows.map((r, i) => (i === 7 ? [...r.slice(0, -1), '3'] : r))),
    /^error: h\.csv row 8, label: '3' is outside the model's classes \(0\.\.2\)$/,
  ],
  ['a short row', 'h.csv', () => wineCsv((rows) => rows.map((r, i) => (i === 9 ? r.slice(2) : r))), /^error: h\.csv row 10: 12 cells, the header has 14$/],
  ['no rows', 'h.csv', () => wineCsv((rows) => rows.slice(0, 1)), /^error: h\.csv has no rows to score$/],
  ['an empty file', 'h.csv', async () => '', /^error: h\.csv is empty: no header row$/],
  [
    'a JSONL row of the wrong shape',
    'h.jsonl',
    async () => `${JSON.stringify({ features: Array(13).fill(1), label: 0 })}\n${JSON.stringify({ features: Array(12).fill(1), label: 1 })}\n`,
    /^error: h\.jsonl line 2, key 'features': a row of shape \[12\], the model wants \[13\]$/,
  ],
  [
    'a JSONL line that is not JSON',
    'h.jsonl',
    async () => `${JSON.stringify({ features: Array(13).fill(1), label: 0 })}\n{features: \n`,
    /^error: h\.jsonl line 2: not valid JSON/,
  ],
  [
    'a JSONL row without its input',
    'h.jsonl',
    async () => `${JSON.stringify({ feats: Array(13).fill(1), label: 0 })}\n`,
    /^error: h\.jsonl line 1: missing key 'features' \(model input\)$/,
  ],
  ['an unknown format', 'h.parquet', async () => 'PAR1', /^error: h\.parquet: unknown holdout format '\.parquet'$/],
];

describe('bad holdouts exit 2 with one line naming the row and column, and write nothing', () => {
  for (const [what, file, content, message] of cases) {
    it(what, async () => {
      await withTempDir(async (dir) => {
        await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: fixture('wine', 'model.onnx') } }));
        await writeFile(path.join(dir, file), await content());
        const { code, stdout, stderr } = await runCli(['test', '--local', '--holdout', file, '--junit', 'j.xml', '--markdown', 'm.md'], { cwd: dir });
        expect(code).toBe(2);
        expect(stdout).toBe('');
        const errors = lines(stderr).filter((l) => l.startsWith('error:'));
        expect(errors).toHaveLength(1);
        expect(errors[0]).toMatch(message);
        expect(stderr).not.toMatch(/\n\s+at /);
        for (const written of ['j.xml', 'm.md', '.mlops/last-test.json']) expect(await exists(path.join(dir, written))).toBe(false);
      });
    });
  }

  it('an INT64 column with a fraction names the input type', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'h.csv'), 'a,b,c,d,i0,i1,i2,label\n1,2,3,4,1,2,3.5,0\n');
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: fixture('multi_input', 'model.onnx') } }));
      const { code, stderr } = await runCli(['test', '--local', '--holdout', 'h.csv'], { cwd: dir });
      expect(code).toBe(2);
      expect(errorLine(stderr)).toBe("error: h.csv row 2, column 'i2': 3.5 is not an integer (the input is INT64)");
    });
  });

  it('.npy pairs with different row counts', async () => {
    await withTempDir(async (dir) => {
      await writeNpy(path.join(dir, 'x.npy'), Array(26).fill(0), [2, 13]);
      await writeNpy(path.join(dir, 'y.npy'), [0, 1, 2], [3], '<i8');
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: fixture('wine', 'model.onnx') } }));
      const { code, stderr } = await runCli(['test', '--local', '--holdout', 'x.npy', '--labels', 'y.npy'], { cwd: dir });
      expect(code).toBe(2);
      expect(errorLine(stderr)).toBe('error: y.npy has 3 labels but x.npy has 2 rows');
    });
  });

  it('a missing holdout, or none at all', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ model: { path: fixture('wine', 'model.onnx') } }));
      expect(errorLine((await runCli(['test', '--local', '--holdout', 'gone.csv'], { cwd: dir })).stderr)).toBe('error: holdout not found: gone.csv');
      const none = await runCli(['test', '--local'], { cwd: dir });
      expect(none.code).toBe(2);
      expect(errorLine(none.stderr)).toBe('error: no holdout given');
    });
  });
});
