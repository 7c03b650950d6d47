/** src/holdout/npy.ts: .npy holdouts of real-size images read in bounded chunks, and their files closed. */
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openHoldout } from '../../src/holdout/open.js';
import { withTempDir } from '../helpers.js';
import { writeNpy } from '../npy.js';

describe('.npy holdouts close their files', () => {
  it('when the rows stop early (a sample of the first rows), both files are closed, not left to the garbage collector', async () => {
    const openFiles = async () => (await readdir('/proc/self/fd')).length;
    await withTempDir(async (dir) => {
      await writeNpy(path.join(dir, 'x.npy'), Array(20 * 13).fill(1), [20, 13], '<f4');
      await writeNpy(path.join(dir, 'y.npy'), Array(20).fill(1), [20], '<i8');
      const before = await openFiles();
      for (let i = 0; i < 5; i++) {
        const holdout = await openHoldout({
          cwd: dir,
          holdout: 'x.npy',
          labels: 'y.npy',
          inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 13] }],
          label: 'label',
          features: [],
        });
        for await (const row of holdout.rows()) if (row.where === 'index 2') break;
      }
      expect(await openFiles()).toBe(before);
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
