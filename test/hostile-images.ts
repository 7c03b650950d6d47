/** Image files that are attacks: small on the wire, huge if anything decoded them. */
import { crc32 } from 'node:zlib';

/** A PNG whose header says width x height, with one empty IDAT: a decompression bomb, if anything decoded it. */
export function pngDeclaring(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A GIF whose screen and one frame are 65535 x 65535, with a few bytes of data: a GIF bomb. */
export function gifBomb(): Buffer {
  const header = Buffer.from('GIF89a', 'latin1');
  const screen = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00]); // 65535 x 65535, a 2-colour table
  const palette = Buffer.from([0, 0, 0, 255, 255, 255]);
  const frame = Buffer.from([0x2c, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00]);
  const data = Buffer.from([0x02, 0x02, 0x4c, 0x01, 0x00]);
  return Buffer.concat([header, screen, palette, frame, data, Buffer.from([0x3b])]);
}
