import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import {
  classTokenRollout,
  discardLowest,
  fuseHeads,
  minMaxScale,
  pooledRollout,
  receptiveField,
  receptiveFieldMap,
  rolloutMask,
  rolloutMatrix,
  upsample,
  type HeadFusion,
  type RolloutMethod,
} from '../src/ml/rollout.js';

// ---- an independent, deliberately naive implementation: nested arrays, explicit loops ----

type M = number[][];

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random post-softmax attention [layers][heads][T][T], plus the same flattened. */
function randomAttention(
  layers: number,
  heads: number,
  T: number,
  seed: number,
): { nested: M[][]; flat: Float32Array } {
  const rnd = mulberry32(seed);
  const nested: M[][] = [];
  const flat: number[] = [];
  for (let l = 0; l < layers; l++) {
    const hs: M[] = [];
    for (let h = 0; h < heads; h++) {
      const m: M = [];
      for (let i = 0; i < T; i++) {
        const logits = Array.from({ length: T }, () => rnd() * 4 - 2);
        const e = logits.map((x) => Math.exp(x));
        const s = e.reduce((p, q) => p + q, 0);
        // Go through float32 so the reference sees exactly what the implementation sees.
        const row = e.map((x) => Math.fround(x / s));
        m.push(row);
        flat.push(...row);
      }
      hs.push(m);
    }
    nested.push(hs);
  }
  return { nested, flat: Float32Array.from(flat) };
}

function naiveMatmul(a: M, b: M): M {
  const n = a.length;
  const c: M = [];
  for (let i = 0; i < n; i++) {
    c.push([]);
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += a[i][k] * b[k][j];
      c[i].push(s);
    }
  }
  return c;
}

function naiveFuse(heads: M[], fusion: HeadFusion): M {
  const T = heads[0].length;
  const out: M = [];
  for (let i = 0; i < T; i++) {
    out.push([]);
    for (let j = 0; j < T; j++) {
      const vals = heads.map((h) => h[i][j]);
      if (fusion === 'mean') out[i].push(vals.reduce((p, q) => p + q, 0) / vals.length);
      else if (fusion === 'max') out[i].push(Math.max(...vals));
      else out[i].push(Math.min(...vals));
    }
  }
  return out;
}

/** Repeatedly pick the smallest remaining patch-to-patch entry (earliest position on ties). */
function naiveDiscard(m: M, ratio: number, first = 1): M {
  const T = m.length;
  const out = m.map((r) => [...r]);
  const count = Math.floor(ratio * (T - first) * (T - first));
  const taken = new Set<string>();
  for (let k = 0; k < count; k++) {
    let best: [number, number] | null = null;
    for (let i = first; i < T; i++) {
      for (let j = first; j < T; j++) {
        if (taken.has(`${i},${j}`)) continue;
        if (best === null || m[i][j] < m[best[0]][best[1]]) best = [i, j];
      }
    }
    taken.add(`${best![0]},${best![1]}`);
    out[best![0]][best![1]] = 0;
  }
  return out;
}

function plusIdentity(m: M): M {
  return m.map((row, i) => row.map((v, j) => v + (i === j ? 1 : 0)));
}

function naiveRollout(att: M[][], method: RolloutMethod, fusion: HeadFusion, ratio: number, first = 1): M {
  const A = att.map((heads) => naiveDiscard(naiveFuse(heads, fusion), ratio, first));
  if (method === 'report') {
    let R = A[0];
    for (let i = 0; i < A.length; i++) R = naiveMatmul(R, plusIdentity(A[i]));
    return R;
  }
  const Ap = A.map((a) =>
    plusIdentity(a).map((row) => {
      const s = row.reduce((p, q) => p + q, 0);
      return row.map((v) => v / s);
    }),
  );
  // Fold from the newest layer rightwards: A_L' @ A_{L-1}' @ ... @ A_1'.
  let R = Ap[Ap.length - 1];
  for (let l = Ap.length - 2; l >= 0; l--) R = naiveMatmul(R, Ap[l]);
  return R;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    assert.ok(d <= tol * Math.max(1, Math.abs(expected[i])), `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

// ---- agreement with the brute force, every combination ----

const methods: RolloutMethod[] = ['report', 'abnar_zuidema'];
const fusions: HeadFusion[] = ['mean', 'max', 'min'];
for (const method of methods) {
  for (const fusion of fusions) {
    for (const ratio of [0, 0.5]) {
      test(`rollout matches brute force: ${method} / ${fusion} / discard ${ratio}`, () => {
        for (const [layers, heads, T, seed] of [
          [3, 2, 5, 1],
          [4, 3, 10, 2],
          [1, 1, 17, 3],
        ]) {
          const { nested, flat } = randomAttention(layers, heads, T, seed);
          const d = { layers, heads, tokens: T };
          const o = { method, headFusion: fusion, discardRatio: ratio };
          const got = rolloutMatrix(flat, d, o);
          const want = naiveRollout(nested, method, fusion, ratio).flat();
          assertClose(got, want, 1e-12, `R (L=${layers} H=${heads} T=${T})`);
          const row = classTokenRollout(flat, d, o);
          assertClose(row, want.slice(1, T), 1e-6, 'class-token row');
        }
      });
    }
  }
}

// Without a class token (mean or sequence pooling) the read-out is w^T R over all columns, and
// every entry may be discarded.
for (const method of methods) {
  test(`pooled rollout (no class token) matches brute force: ${method}`, () => {
    for (const [layers, heads, T, seed, ratio] of [
      [3, 2, 4, 5, 0],
      [2, 3, 9, 6, 0.5],
    ]) {
      const { nested, flat } = randomAttention(layers, heads, T, seed);
      const rnd = mulberry32(seed + 100);
      const w = Array.from({ length: T }, () => rnd());
      const o = { method, headFusion: 'mean' as const, discardRatio: ratio };
      const R = naiveRollout(nested, method, 'mean', ratio, 0);
      const want = Array.from({ length: T }, (_, j) => w.reduce((a, wi, i) => a + wi * R[i][j], 0));
      assertClose(pooledRollout(flat, { layers, heads, tokens: T, classToken: false }, o, w), want, 1e-6, 'w^T R');
      // One-hot weights with a class token are the class token's row.
      const onehot = Array.from({ length: T }, (_, i) => (i === 0 ? 1 : 0));
      assertClose(
        pooledRollout(flat, { layers, heads, tokens: T }, o, onehot),
        classTokenRollout(flat, { layers, heads, tokens: T }, o),
        0,
        'one-hot = class row',
      );
    }
  });
}

/** The pixels token k reaches, by walking index sets down through pool (2k..2k+2) and conv (p-1..p+1) layers. */
function naiveField(k: number, layers: number, size: number): [number, number] {
  let set = new Set([k]);
  for (let l = layers; l >= 1; l--) {
    const below = size / 2 ** (l - 1); // the conv's side at this layer
    const conv = new Set<number>();
    for (const p of set) for (const q of [2 * p, 2 * p + 1, 2 * p + 2]) if (q < below) conv.add(q);
    const pixels = new Set<number>();
    for (const p of conv) for (const q of [p - 1, p, p + 1]) if (q >= 0 && q < below) pixels.add(q);
    set = pixels;
  }
  return [Math.min(...set), Math.max(...set)];
}

test('a conv tokenizer token reaches the pixels its layers say; the map averages overlapping fields', () => {
  assert.deepEqual(receptiveField(0, 2, 32), [0, 9]);
  assert.deepEqual(receptiveField(3, 2, 32), [9, 21]);
  assert.deepEqual(receptiveField(7, 2, 32), [25, 31]);
  assert.deepEqual(receptiveField(3, 1, 8), [5, 8 - 1]);
  for (const [layers, size] of [
    [1, 16],
    [2, 32],
    [3, 32],
  ])
    for (let k = 0; k < size / 2 ** layers; k++)
      assert.deepEqual(receptiveField(k, layers, size), naiveField(k, layers, size), `k=${k} layers=${layers}`);
  // 1 layer on a 4x4 image: token 0 sees pixels 0..3, token 1 sees 1..3 on each axis.
  const [a, b, c, d] = [1, 2, 4, 8];
  const map = receptiveFieldMap(Float32Array.of(a, b, c, d), 2, 1, 4);
  assert.equal(map[0], a); // (0,0): token (0,0) only
  assert.equal(map[1], (a + b) / 2); // (0,1): tokens (0,0), (0,1)
  assert.equal(map[4], (a + c) / 2); // (1,0)
  assert.equal(map[5], (a + b + c + d) / 4); // (1,1): all four
});

// ---- hand-computed tiny cases ----

const A1 = [
  [0.5, 0.3, 0.2],
  [0.2, 0.6, 0.2],
  [0.1, 0.1, 0.8],
];
const oneLayer = Float32Array.from(A1.flat());
const d1 = { layers: 1, heads: 1, tokens: 3 };

test('abnar_zuidema, one layer: (A + I) row-normalised, class row', () => {
  // Row 0 of A + I is [1.5, 0.3, 0.2], sum 2.
  const row = classTokenRollout(oneLayer, d1, { method: 'abnar_zuidema', headFusion: 'mean', discardRatio: 0 });
  assertClose(row, [0.15, 0.1], 1e-7, 'row');
});

test('report, one layer: A @ (A + I) = A@A + A', () => {
  // Row 0 of A@A = [0.33, 0.35, 0.32]; plus row 0 of A = [0.83, 0.65, 0.52].
  const R = rolloutMatrix(oneLayer, d1, { method: 'report', headFusion: 'mean', discardRatio: 0 });
  assertClose(R.subarray(0, 3), [0.83, 0.65, 0.52], 1e-7, 'row 0');
  // Not re-normalised: rows of A@A + A sum to 2.
  assert.ok(Math.abs(R[3] + R[4] + R[5] - 2) < 1e-6);
});

test('report uses the first block twice and multiplies newer blocks on the right', () => {
  const B = [
    [0.1, 0.1, 0.8],
    [0.3, 0.3, 0.4],
    [0.6, 0.2, 0.2],
  ];
  const flat = Float32Array.from([...A1.flat(), ...B.flat()]);
  const d = { layers: 2, heads: 1, tokens: 3 };
  const R = rolloutMatrix(flat, d, { method: 'report', headFusion: 'mean', discardRatio: 0 });
  const f = (m: M) => m.map((r) => r.map(Math.fround));
  const want = naiveMatmul(naiveMatmul(f(A1), plusIdentity(f(A1))), plusIdentity(f(B))).flat();
  assertClose(R, want, 1e-12, 'R');
  const swapped = naiveMatmul(naiveMatmul(f(B), plusIdentity(f(B))), plusIdentity(f(A1))).flat();
  assert.ok(Math.abs(R[1] - swapped[1]) > 1e-3, 'block order must matter');
});

test('head fusion mean / max / min on two heads', () => {
  const h2 = [0.1, 0.7, 0.2, 0.4, 0.4, 0.2, 0.3, 0.3, 0.4];
  const att = Float32Array.from([...A1.flat(), ...h2]);
  const mean = fuseHeads(att, 0, 2, 3, 'mean');
  const max = fuseHeads(att, 0, 2, 3, 'max');
  const min = fuseHeads(att, 0, 2, 3, 'min');
  assertClose(mean.subarray(0, 3), [0.3, 0.5, 0.2], 1e-7, 'mean');
  assertClose(max.subarray(0, 3), [0.5, 0.7, 0.2], 1e-7, 'max');
  assertClose(min.subarray(0, 3), [0.1, 0.3, 0.2], 1e-7, 'min');
});

test('discard zeroes the lowest patch-to-patch entries, never the class token row or column', () => {
  const m = Float64Array.from(A1.flat());
  // Patch block: (1,1)=.6 (1,2)=.2 (2,1)=.1 (2,2)=.8; floor(0.5*4)=2 lowest go. Row 0 / column 0
  // hold values as low (0.2, 0.1) and must survive.
  discardLowest(m, 3, 0.5);
  assert.deepEqual(Array.from(m), [0.5, 0.3, 0.2, 0.2, 0.6, 0, 0.1, 0, 0.8]);
  const n = Float64Array.from(A1.flat());
  discardLowest(n, 3, 0);
  assert.deepEqual(Array.from(n), A1.flat());
  assert.throws(() => discardLowest(Float64Array.from(A1.flat()), 3, 1), /discard_ratio must be in \[0, 1\), got 1$/);
});

test('abnar_zuidema rows of R sum to 1, with and without discard', () => {
  const { flat } = randomAttention(6, 4, 65, 7);
  for (const ratio of [0, 0.9]) {
    const R = rolloutMatrix(
      flat,
      { layers: 6, heads: 4, tokens: 65 },
      {
        method: 'abnar_zuidema',
        headFusion: 'max',
        discardRatio: ratio,
      },
    );
    for (let i = 0; i < 65; i++) {
      let s = 0;
      for (let j = 0; j < 65; j++) s += R[i * 65 + j];
      assert.ok(Math.abs(s - 1) < 1e-9, `row ${i} sums to ${s}`);
    }
  }
});

test('wrong attention size is rejected', () => {
  assert.throws(
    () =>
      rolloutMatrix(
        new Float32Array(10),
        { layers: 1, heads: 1, tokens: 3 },
        {
          method: 'report',
          headFusion: 'mean',
          discardRatio: 0,
        },
      ),
    /expected/,
  );
});

// ---- upsampling and scaling ----

test('bilinear 2x2 -> 4x4 with half-pixel centres and clamped borders', () => {
  const out = upsample(Float32Array.from([0, 1, 2, 3]), 2, 2, 4, 4, 'bilinear');
  // Source x for the 4 outputs: -0.25 (clamped to 0), 0.25, 0.75, 1.25 (right tap clamped).
  const cols = [0, 0.25, 0.75, 1];
  const rows = [0, 0.25, 0.75, 1];
  const want = rows.flatMap((ty) => cols.map((tx) => tx + 2 * ty));
  assertClose(out, want, 1e-6, 'bilinear');
});

test('upsampling keeps constants and is the identity at scale 1', () => {
  const g = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i));
  for (const mode of ['bicubic', 'bilinear'] as const) {
    assertClose(upsample(g, 8, 8, 8, 8, mode), g, 1e-6, `${mode} identity`);
    const c = upsample(new Float32Array(64).fill(0.37), 8, 8, 32, 32, mode);
    assertClose(c, new Float32Array(1024).fill(0.37), 1e-6, `${mode} constant`);
  }
});

test('bicubic 1-D case against Keys a=-0.75 weights computed by hand', () => {
  // A 1 x 4 row upsampled to 1 x 8: output 3 sits at source x = 3.5*0.5-0.5 = 1.25, so t = 0.25
  // between taps 0..3. Weights for a=-0.75: W(1.25), W(0.25), W(0.75), W(1.75).
  const a = -0.75;
  const W = (x: number) => {
    const ax = Math.abs(x);
    if (ax <= 1) return (a + 2) * ax ** 3 - (a + 3) * ax ** 2 + 1;
    if (ax < 2) return a * ax ** 3 - 5 * a * ax ** 2 + 8 * a * ax - 4 * a;
    return 0;
  };
  const src = [1, 4, 2, 8];
  const out = upsample(Float32Array.from(src), 1, 4, 1, 8, 'bicubic');
  const want3 = W(1.25) * src[0] + W(0.25) * src[1] + W(0.75) * src[2] + W(1.75) * src[3];
  assert.ok(Math.abs(out[3] - want3) < 1e-6, `${out[3]} vs ${want3}`);
  // Output 0 sits at x = -0.25: taps -2..1, clamped to 0,0,0,1.
  const want0 = (W(1.75) + W(0.75) + W(0.25)) * src[0] + W(1.25) * src[1];
  assert.ok(Math.abs(out[0] - want0) < 1e-6, `${out[0]} vs ${want0}`);
});

const python = '/usr/bin/python3';
const haveTorch =
  existsSync(python) &&
  (() => {
    try {
      execFileSync(python, ['-c', 'import torch'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

test('upsampling matches torch.nn.functional.interpolate', {
  skip: haveTorch ? false : 'python3 with torch not available',
}, () => {
  const g = Array.from({ length: 64 }, (_, i) => Math.fround(Math.cos(i * 1.7) + i / 64));
  const script = `
import json, sys, torch
g = torch.tensor(json.loads(sys.argv[1]), dtype=torch.float32).reshape(1, 1, 8, 8)
out = {m: torch.nn.functional.interpolate(g, size=(32, 32), mode=m, align_corners=False).flatten().tolist() for m in ('bicubic', 'bilinear')}
print(json.dumps(out))`;
  const res = JSON.parse(execFileSync(python, ['-c', script, JSON.stringify(g)], { encoding: 'utf8' })) as Record<
    string,
    number[]
  >;
  for (const mode of ['bicubic', 'bilinear'] as const) {
    assertClose(upsample(Float32Array.from(g), 8, 8, 32, 32, mode), res[mode], 1e-5, `torch ${mode}`);
  }
});

test('min-max scaling and the full read-out', () => {
  assertClose(minMaxScale(Float32Array.from([2, 4, 3])), [0, 1, 0.5], 1e-7, 'scaled');
  assert.deepEqual(Array.from(minMaxScale(Float32Array.from([5, 5]))), [0, 0]);
  const { flat } = randomAttention(3, 2, 65, 11);
  const r = rolloutMask(
    flat,
    { layers: 3, heads: 2, tokens: 65 },
    {
      method: 'abnar_zuidema',
      headFusion: 'mean',
      discardRatio: 0.9,
      upsample: 'bicubic',
      imageSize: 32,
    },
  );
  assert.equal(r.grid, 8);
  assert.equal(r.raw.length, 64);
  assert.equal(r.mask.length, 1024);
  assert.equal(Math.min(...r.mask), 0);
  assert.equal(Math.max(...r.mask), 1);
  assert.throws(
    () =>
      rolloutMask(
        new Float32Array(3 * 3),
        { layers: 1, heads: 1, tokens: 3 },
        {
          method: 'report',
          headFusion: 'mean',
          discardRatio: 0,
          upsample: 'bilinear',
          imageSize: 4,
        },
      ),
    /square/,
  );
});
