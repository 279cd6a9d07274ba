// NumPy .npy (format version 1.0) writer, so raw arrays can be opened with np.load() and compared
// with the reference's PyTorch tensors. Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html

import { writeFile } from '../cache/atomic.js';

export type NpyArray = Float32Array | Int32Array | Uint8Array;

function descr(data: NpyArray): string {
  if (data instanceof Float32Array) return '<f4';
  if (data instanceof Int32Array) return '<i4';
  return '|u1';
}

function shapeLiteral(shape: readonly number[]): string {
  // Python tuple syntax: a 1-tuple needs its trailing comma, the empty tuple is a scalar.
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(', ')})`;
}

/** Encode a C-order, little-endian array as .npy bytes. */
export function encodeNpy(data: NpyArray, shape: readonly number[]): Buffer {
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw new Error(`npy: bad dimension ${s} in shape [${shape.join(', ')}]`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new Error(`npy: shape [${shape.join(', ')}] holds ${count} values, data has ${data.length}`);
  }
  const dict = `{'descr': '${descr(data)}', 'fortran_order': False, 'shape': ${shapeLiteral(shape)}, }`;
  // magic(6) + version(2) + header length(2) + dict + padding + '\n' must be a multiple of 64 so
  // the data is aligned for memory mapping.
  const unpadded = 10 + dict.length + 1;
  const total = Math.ceil(unpadded / 64) * 64;
  const header = `${dict + ' '.repeat(total - unpadded)}\n`;
  if (header.length > 0xffff) throw new Error('npy: header too long for format version 1.0');
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  // Typed arrays are in host byte order; every platform Node ships on is little-endian, but check
  // so a big-endian host fails loudly instead of writing garbage.
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('npy: big-endian hosts are not supported');
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.concat([head, Buffer.from(header, 'latin1'), body]);
}

export async function writeNpy(path: string, data: NpyArray, shape: readonly number[]): Promise<void> {
  await writeFile(path, encodeNpy(data, shape));
}
