import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { encodeNpy, writeNpy } from '../src/render/npy.js';

/** A small independent reader: parses the header dict with regexes, decodes via DataView. */
function parseNpy(buf: Buffer): {
  descr: string;
  fortran: boolean;
  shape: number[];
  values: number[];
  headerEnd: number;
} {
  assert.equal(buf[0], 0x93);
  assert.equal(buf.subarray(1, 6).toString('latin1'), 'NUMPY');
  assert.equal(buf[6], 1, 'major version');
  assert.equal(buf[7], 0, 'minor version');
  const hlen = buf[8] + 256 * buf[9];
  const header = buf.subarray(10, 10 + hlen).toString('latin1');
  assert.ok(header.endsWith('\n'), 'header ends with newline');
  const descr = /'descr':\s*'([^']+)'/.exec(header)![1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)![1] === 'True';
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)![1];
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(Number);
  const start = 10 + hlen;
  const dv = new DataView(buf.buffer, buf.byteOffset + start, buf.length - start);
  const values: number[] = [];
  const size = descr.endsWith('1') ? 1 : 4;
  for (let off = 0; off < dv.byteLength; off += size) {
    if (descr === '<f4') values.push(dv.getFloat32(off, true));
    else if (descr === '<i4') values.push(dv.getInt32(off, true));
    else values.push(dv.getUint8(off));
  }
  return { descr, fortran, shape, values, headerEnd: start };
}

test('float32 round-trips through an independent parser, header aligned to 64 bytes', () => {
  const data = Float32Array.from({ length: 2 * 3 * 4 }, (_, i) => i * 0.5 - 3.25);
  const buf = encodeNpy(data, [2, 3, 4]);
  const p = parseNpy(buf);
  assert.equal(p.descr, '<f4');
  assert.equal(p.fortran, false);
  assert.deepEqual(p.shape, [2, 3, 4]);
  assert.deepEqual(p.values, Array.from(data));
  assert.equal(p.headerEnd % 64, 0);
});

test('1-D shape has the trailing comma; int32 and uint8 dtypes', () => {
  const buf = encodeNpy(Int32Array.from([-1, 7, 2147483647]), [3]);
  assert.match(buf.toString('latin1', 10, 80), /'shape': \(3,\)/);
  assert.deepEqual(parseNpy(buf).values, [-1, 7, 2147483647]);
  const u = parseNpy(encodeNpy(Uint8Array.from([0, 255, 9, 1]), [2, 2]));
  assert.equal(u.descr, '|u1');
  assert.deepEqual(u.values, [0, 255, 9, 1]);
});

test('a subarray view writes only its own elements', () => {
  const big = Float32Array.from([9, 1, 2, 9]);
  assert.deepEqual(parseNpy(encodeNpy(big.subarray(1, 3), [2])).values, [1, 2]);
});

test('shape and data length must agree', () => {
  assert.throws(() => encodeNpy(new Float32Array(5), [2, 3]), /holds 6 values/);
  assert.throws(() => encodeNpy(new Float32Array(0), [-1]), /bad dimension/);
});

const python = '/usr/bin/python3';
const haveNumpy =
  existsSync(python) &&
  (() => {
    try {
      execFileSync(python, ['-c', 'import numpy'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

test('numpy.load reads what we write', { skip: haveNumpy ? false : 'python3 with numpy not available' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tfpipe-npy-'));
  try {
    const f = join(dir, 'a.npy');
    const i = join(dir, 'b.npy');
    const data = Float32Array.from({ length: 2 * 1 * 3 * 5 }, (_, k) => Math.fround(Math.sin(k) * 100));
    await writeNpy(f, data, [2, 1, 3, 5]);
    await writeNpy(i, Uint8Array.from([3, 1, 4]), [3]);
    const out = execFileSync(
      python,
      [
        '-c',
        `
import json, sys, numpy as np
a = np.load(sys.argv[1]); b = np.load(sys.argv[2])
print(json.dumps({"dtype": str(a.dtype), "shape": list(a.shape), "c": bool(a.flags["C_CONTIGUOUS"]), "values": a.ravel().astype(float).tolist(), "b": b.tolist(), "bdtype": str(b.dtype)}))`,
        f,
        i,
      ],
      { encoding: 'utf8' },
    );
    const r = JSON.parse(out) as {
      dtype: string;
      shape: number[];
      c: boolean;
      values: number[];
      b: number[];
      bdtype: string;
    };
    assert.equal(r.dtype, 'float32');
    assert.deepEqual(r.shape, [2, 1, 3, 5]);
    assert.equal(r.c, true);
    assert.deepEqual(r.values, Array.from(data));
    assert.deepEqual(r.b, [3, 1, 4]);
    assert.equal(r.bdtype, 'uint8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
