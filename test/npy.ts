import { writeFile } from 'node:fs/promises';

/** Writes a little-endian .npy (format 1.0) for tests: float64, int64 or unicode. */
export async function writeNpy(file: string, values: (number | string)[], shape: number[], dtype: '<f8' | '<f4' | '<i8' | '<U16' = '<f8'): Promise<void> {
  let header = `{'descr': '${dtype}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const size = dtype === '<U16' ? 64 : dtype === '<f4' ? 4 : 8;
  const data = Buffer.alloc(values.length * size);
  values.forEach((v, i) => {
    if (dtype === '<f8') data.writeDoubleLE(v as number, i * 8);
    else if (dtype === '<f4') data.writeFloatLE(v as number, i * 4);
    else if (dtype === '<i8') data.writeBigInt64LE(BigInt(v), i * 8);
    else [...String(v)].forEach((c, j) => data.writeUInt32LE(c.codePointAt(0)!, i * 64 + j * 4));
  });
  const prefix = Buffer.alloc(10);
  prefix.write('\x93NUMPY', 0, 'latin1');
  prefix[6] = 1;
  prefix[7] = 0;
  prefix.writeUInt16LE(header.length, 8);
  await writeFile(file, Buffer.concat([prefix, Buffer.from(header, 'latin1'), data]));
}
