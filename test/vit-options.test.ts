// The Compact Transformers options of the tfjs model (conv tokenizer, mean and sequence pooling,
// sin-cos and no positions) against plain float64 loops written from the definitions, values and
// gradients (central differences of the loops). native.test.ts checks the addon against the tfjs
// model on the same options.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend.js';
import { completeConfig, sincosPositions, tokenCount, type VitConfig } from '../src/ml/vit/config.js';
import { Dropout } from '../src/ml/vit/dropout.js';
import { createVit, forward, computeGradients, tfjsKernels } from '../src/ml/vit/index.js';
import { parameterSpecs } from '../src/ml/vit/layout.js';
import { tfjsOps } from '../src/ml/vit/ops.js';
import { convTokens, type Ctx, pool } from '../src/ml/vit/vit.js';
import { TINY_VIT } from './fixtures/vit-configs.js';

before(async () => {
  await initBackend('wasm', 1);
});

function rand(n: number, seed: number): Float64Array {
  let s = seed >>> 0 || 1;
  return Float64Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

/** conv 3x3 (zero padding 1, no bias) + ReLU + max-pool 3x3 stride 2 over windows 2i..2i+2, per layer. NHWC, HWIO. */
function bruteConvTokens(
  img: Float64Array,
  b: number,
  size: number,
  cin0: number,
  kernels: { w: Float64Array; cout: number }[],
) {
  let x = img;
  let s = size;
  let cin = cin0;
  for (const { w, cout } of kernels) {
    const y = new Float64Array(b * s * s * cout);
    for (let n = 0; n < b; n++)
      for (let r = 0; r < s; r++)
        for (let c = 0; c < s; c++)
          for (let o = 0; o < cout; o++) {
            let acc = 0;
            for (let ky = 0; ky < 3; ky++)
              for (let kx = 0; kx < 3; kx++) {
                const rr = r + ky - 1;
                const cc = c + kx - 1;
                if (rr < 0 || cc < 0 || rr >= s || cc >= s) continue;
                for (let i = 0; i < cin; i++)
                  acc += x[((n * s + rr) * s + cc) * cin + i] * w[((ky * 3 + kx) * cin + i) * cout + o];
              }
            y[((n * s + r) * s + c) * cout + o] = Math.max(0, acc);
          }
    const h = s / 2;
    const p = new Float64Array(b * h * h * cout);
    for (let n = 0; n < b; n++)
      for (let r = 0; r < h; r++)
        for (let c = 0; c < h; c++)
          for (let o = 0; o < cout; o++) {
            let m = -Infinity;
            for (let dy = 0; dy < 3; dy++)
              for (let dx = 0; dx < 3; dx++) {
                const rr = 2 * r + dy;
                const cc = 2 * c + dx;
                if (rr < s && cc < s) m = Math.max(m, y[((n * s + rr) * s + cc) * cout + o]);
              }
            p[((n * h + r) * h + c) * cout + o] = m;
          }
    x = p;
    s = h;
    cin = cout;
  }
  return x;
}

/** Sequence pooling of x [B, T, D]: softmax_t(x_t·w + b), weighted mean. */
function bruteSeqPool(x: Float64Array, b: number, t: number, d: number, w: Float64Array, bias: number) {
  const pooled = new Float64Array(b * d);
  const weights = new Float64Array(b * t);
  for (let n = 0; n < b; n++) {
    const s = Array.from({ length: t }, (_, i) => {
      let acc = bias;
      for (let k = 0; k < d; k++) acc += x[(n * t + i) * d + k] * w[k];
      return acc;
    });
    const mx = Math.max(...s);
    const e = s.map((v) => Math.exp(v - mx));
    const z = e.reduce((a, v) => a + v, 0);
    for (let i = 0; i < t; i++) {
      weights[n * t + i] = e[i] / z;
      for (let k = 0; k < d; k++) pooled[n * d + k] += (e[i] / z) * x[(n * t + i) * d + k];
    }
  }
  return { pooled, weights };
}

/** Central differences of a scalar function of one array, every element. */
function numericGrad(f: (v: Float64Array) => number, v: Float64Array, h = 1e-5): Float64Array {
  const g = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const keep = v[i];
    v[i] = keep + h;
    const up = f(v);
    v[i] = keep - h;
    const down = f(v);
    v[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i])));
  assert.ok(worst <= tol, `${what}: worst relative error ${worst} > ${tol}`);
}

function ctxOf(cfg: VitConfig, batch: number): Ctx {
  return { ops: tfjsOps, cfg: completeConfig(cfg), batch, drop: new Dropout(0, undefined) };
}

for (const layers of [1, 2, 3]) {
  test(`conv tokenizer, ${layers} layer(s): tokens and kernel gradients match plain loops`, () => {
    const cfg: VitConfig = {
      ...TINY_VIT,
      imageSize: 8,
      channels: 2,
      dim: 5,
      tokenizer: 'conv',
      convLayers: layers,
      convChannels: 3,
    };
    const b = 2;
    const img = rand(b * 8 * 8 * 2, 7);
    const shapes = parameterSpecs(cfg)
      .filter((s) => s.name.startsWith('embedding/conv_'))
      .map((s) => s.shape);
    assert.equal(shapes.length, layers);
    const kernels = shapes.map((sh, l) => ({ w: rand(sh[0] * sh[1] * sh[2] * sh[3], 100 + l), cout: sh[3] }));
    const grid = 8 / 2 ** layers;
    assert.equal(tokenCount(cfg).grid, grid);
    const r = rand(b * grid * grid * 5, 9); // a random linear read-out makes a scalar loss
    const loss = (tokens: Float64Array) => tokens.reduce((a, v, i) => a + v * r[i], 0);

    const ctx = ctxOf(cfg, b);
    const x = tf.tensor4d(Float32Array.from(img), [b, 8, 8, 2]);
    const ws = kernels.map((k, l) =>
      tf.tensor4d(Float32Array.from(k.w), shapes[l] as [number, number, number, number]),
    );
    const stem = Object.fromEntries(ws.map((w, l) => [`conv${l}`, w]));
    const tokens = convTokens(ctx, x, stem);
    assert.deepEqual(tokens.shape, [b, grid * grid, 5]);
    assertClose(tokens.dataSync(), bruteConvTokens(img, b, 8, 2, kernels), 1e-5, 'tokens');

    const rT = tf.tensor3d(Float32Array.from(r), [b, grid * grid, 5]);
    const grads = tf.grads((...w: tf.Tensor[]) =>
      tf.sum(tf.mul(convTokens(ctx, x, Object.fromEntries(w.map((t, l) => [`conv${l}`, t]))), rT)),
    )(ws);
    kernels.forEach((k, l) => {
      const want = numericGrad(
        (v) =>
          loss(
            bruteConvTokens(
              img,
              b,
              8,
              2,
              kernels.map((kk, i) => (i === l ? { ...kk, w: v } : kk)),
            ),
          ),
        k.w,
      );
      assertClose(grads[l].dataSync(), want, 2e-3, `d conv_${l}`);
    });
    tf.dispose([x, tokens, rT, ...ws, ...grads]);
  });
}

test('sequence pooling: weights, pooled vector and gradients match plain loops; mean and cls pooling are what they say', () => {
  const [b, t, d] = [3, 5, 4];
  const xs = rand(b * t * d, 3).map((v) => 4 * v);
  const w = rand(d, 4);
  const bias = 0.3;
  const r = rand(b * d, 5);
  const want = bruteSeqPool(xs, b, t, d, w, bias);
  const x = tf.tensor2d(Float32Array.from(xs), [b * t, d]);
  const wT = tf.tensor2d(Float32Array.from(w), [d, 1]);
  const bT = tf.tensor1d([bias]);
  const rT = tf.tensor2d(Float32Array.from(r), [b, d]);
  const head = (pool: 'seq' | 'mean' | 'cls') => ({ pool, dim: d });
  const ctx = (p: 'seq' | 'mean' | 'cls') => ctxOf({ ...TINY_VIT, ...head(p) }, b);
  const seq = pool(ctx('seq'), x, { poolW: wT, poolB: bT } as never);
  assertClose(seq.pooled.dataSync(), want.pooled, 1e-5, 'pooled');
  assertClose(seq.weights.dataSync(), want.weights, 1e-6, 'weights');

  const [dx, dw, db] = tf.grads((xa: tf.Tensor, wa: tf.Tensor, ba: tf.Tensor) =>
    tf.sum(tf.mul(pool(ctx('seq'), xa as tf.Tensor2D, { poolW: wa, poolB: ba } as never).pooled, rT)),
  )([x, wT, bT]);
  const loss = (p: Float64Array) => p.reduce((a, v, i) => a + v * r[i], 0);
  assertClose(
    dx.dataSync(),
    numericGrad((v) => loss(bruteSeqPool(v, b, t, d, w, bias).pooled), xs),
    1e-3,
    'dx',
  );
  assertClose(
    dw.dataSync(),
    numericGrad((v) => loss(bruteSeqPool(xs, b, t, d, v, bias).pooled), w),
    1e-3,
    'dw',
  );
  assertClose(
    db.dataSync(),
    numericGrad((v) => loss(bruteSeqPool(xs, b, t, d, w, v[0]).pooled), Float64Array.of(bias)),
    1e-3,
    'db',
  );

  const mean = pool(ctx('mean'), x, {} as never);
  const cls = pool(ctx('cls'), x, {} as never);
  for (let n = 0; n < b; n++)
    for (let k = 0; k < d; k++) {
      let s = 0;
      for (let i = 0; i < t; i++) s += xs[(n * t + i) * d + k];
      assert.ok(Math.abs(mean.pooled.dataSync()[n * d + k] - s / t) < 1e-5);
      assert.ok(Math.abs(cls.pooled.dataSync()[n * d + k] - xs[n * t * d + k]) < 1e-6);
    }
  assert.deepEqual(Array.from(mean.weights.dataSync()), Array(b * t).fill(Math.fround(1 / t)));
  assert.deepEqual(
    Array.from(cls.weights.dataSync()),
    Array.from({ length: b * t }, (_, i) => (i % t === 0 ? 1 : 0)),
  );
  tf.dispose([x, wT, bT, rT, dx, dw, db, seq.pooled, seq.weights, mean.pooled, mean.weights, cls.pooled, cls.weights]);
});

test('sin-cos positions: column then row, sin then cos, frequencies 10000^(-i/(dim/4))', () => {
  const p = sincosPositions(2, 8); // w = 2, omega = [1, 0.01]
  const at = (y: number, x: number) => Array.from(p.subarray((y * 2 + x) * 8, (y * 2 + x + 1) * 8));
  assertClose(at(0, 0), [0, 0, 1, 1, 0, 0, 1, 1], 0, '(0,0)');
  assertClose(at(0, 1), [Math.sin(1), Math.sin(0.01), Math.cos(1), Math.cos(0.01), 0, 0, 1, 1], 1e-7, '(0,1)');
  assertClose(at(1, 0), [0, 0, 1, 1, Math.sin(1), Math.sin(0.01), Math.cos(1), Math.cos(0.01)], 1e-7, '(1,0)');
});

test('model options: parameters present per option; each runs, pools to weights summing to 1, and every parameter gets a gradient', () => {
  const options: VitConfig[] = [
    { ...TINY_VIT, tokenizer: 'conv', convLayers: 2, convChannels: 6, pool: 'seq', posEmbedding: 'none' },
    { ...TINY_VIT, pool: 'mean', posEmbedding: 'sincos' },
    { ...TINY_VIT, tokenizer: 'conv', convLayers: 1, pool: 'cls', posEmbedding: 'sincos' },
  ];
  const names = options.map((cfg) => parameterSpecs(cfg).map((s) => s.name));
  assert.deepEqual(names[0].slice(0, 2), ['embedding/conv_0/kernel', 'embedding/conv_1/kernel']);
  assert.ok(names[0].includes('head/pool/kernel') && !names[0].includes('embedding/cls_token'));
  assert.ok(!names[0].includes('embedding/pos_embedding') && !names[0].includes('embedding/patch/kernel'));
  assert.ok(!names[1].includes('embedding/cls_token') && !names[1].includes('head/pool/kernel'));
  assert.ok(names[2].includes('embedding/cls_token') && !names[2].includes('embedding/pos_embedding'));
  for (const cfg of options) {
    const m = createVit(cfg, 2);
    const x = tf.randomNormal([4, 8, 8, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const y = tf.oneHot(tf.tensor1d([0, 1, 2, 3], 'int32'), 4).toFloat() as tf.Tensor2D;
    const out = forward(m, x, { training: false, returnAttention: true }, tfjsKernels);
    const t = tokenCount(cfg).tokens;
    assert.deepEqual(out.attention?.[0].shape, [4, 2, t, t]);
    assert.deepEqual(out.pool?.shape, [4, t]);
    for (const row of out.pool?.arraySync() ?? []) assert.ok(Math.abs(row.reduce((a, v) => a + v, 0) - 1) < 1e-5);
    const g = computeGradients(m, x, y, { seed: 1 }, tfjsKernels);
    // Every parameter of the option gets a finite, non-zero gradient (none is cut off the graph).
    assert.equal(Object.keys(g.grads).length, m.variables.length);
    m.variables.forEach((v, i) => {
      const d = g.grads[v.name].dataSync();
      assert.ok(d.every(Number.isFinite) && d.some((e) => e !== 0), `gradient of ${m.names[i]}`);
    });
    tf.dispose([x, y, out.logits, out.pool as tf.Tensor, ...(out.attention ?? []), ...Object.values(g.grads)]);
    m.dispose();
  }
});
