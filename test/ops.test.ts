// Each tfjs op must equal its reference twin (stock tfjs ops with autodiff): forward values and
// gradients w.r.t. every input; the GELUs also against values computed here independently.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend.js';
import * as fast from '../src/ml/vit/ops.js';
import { referenceOps as plain } from '../src/ml/vit/ops.js';

before(async () => {
  await initBackend('wasm', 1);
});

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  assert.deepEqual(a.shape, b.shape);
  const x = a.dataSync();
  const y = b.dataSync();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

/** Compares f and g on inputs: outputs, and gradients of sum(out * r) for a random r. */
function checkSame(
  name: string,
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  g: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: tf.Tensor[],
  tol = 1e-4,
): void {
  tf.tidy(() => {
    const yf = f(...inputs);
    const yg = g(...inputs);
    assert.ok(maxAbsDiff(yf, yg) < tol, `${name}: forward differs by ${maxAbsDiff(yf, yg)}`);
    const r = tf.randomNormal(yf.shape, 0, 1, 'float32', 7);
    const gf = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), r)))(inputs);
    const gg = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(g(...xs), r)))(inputs);
    gf.forEach((d, i) => {
      const scale = Math.max(1, tf.max(tf.abs(gg[i])).dataSync()[0]);
      const diff = maxAbsDiff(d, gg[i]) / scale;
      assert.ok(diff < tol, `${name}: gradient of input ${i} differs by ${diff} (relative)`);
    });
  });
}

const rnd = (shape: number[], seed: number): tf.Tensor => tf.randomNormal(shape, 0, 1, 'float32', seed);

test('linear equals matMul + bias, values and gradients', () => {
  checkSame(
    'linear',
    (x, w, b) => fast.linear(x as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D),
    (x, w, b) => plain.linear(x as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D),
    [rnd([37, 24], 1), rnd([24, 19], 2), rnd([19], 3)],
  );
});

test('linearNoBias equals matMul', () => {
  checkSame(
    'linearNoBias',
    (x, w) => fast.linearNoBias(x as tf.Tensor2D, w as tf.Tensor2D),
    (x, w) => plain.linearNoBias(x as tf.Tensor2D, w as tf.Tensor2D),
    [rnd([20, 16], 4), rnd([16, 12], 5)],
  );
});

test('layerNorm equals moments-based layer norm, including gamma/beta gradients', () => {
  checkSame(
    'layerNorm',
    (x, g, b) => fast.layerNorm(x as tf.Tensor2D, g as tf.Tensor1D, b as tf.Tensor1D),
    (x, g, b) => plain.layerNorm(x as tf.Tensor2D, g as tf.Tensor1D, b as tf.Tensor1D),
    [tf.add(tf.mul(rnd([30, 32], 6), 3), 1), rnd([32], 7), rnd([32], 8)],
  );
});

test('geluTanh (x * sigmoid(2z)) equals the tanh formula', () => {
  checkSame(
    'geluTanh',
    (x) => fast.geluTanh(x),
    (x) => plain.geluTanh(x),
    [tf.mul(rnd([50, 40], 9), 3)],
  );
});

test('geluTanh matches hand-computed values', () => {
  const y = fast.geluTanh(tf.tensor1d([-2, -0.5, 0, 1, 3])).dataSync();
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  const ref = [-2, -0.5, 0, 1, 3].map(
    (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  );
  ref.forEach((r, i) => {
    assert.ok(Math.abs(y[i] - r) < 1e-5, `geluTanh(${i}) ${y[i]} vs ${r}`);
  });
});

/** The standard normal CDF by Simpson's rule on its density (double precision, no erf involved). */
function phiBruteForce(x: number): number {
  const pdf = (t: number) => Math.exp((-t * t) / 2) / Math.sqrt(2 * Math.PI);
  // Φ(x) = 1/2 + ∫_0^x φ(t) dt
  const n = 2000;
  const h = x / n;
  let s = pdf(0) + pdf(x);
  for (let i = 1; i < n; i++) s += (i % 2 ? 4 : 2) * pdf(i * h);
  return 0.5 + (s * h) / 3;
}

test('exact gelu and its gradient match x Φ(x) and Φ(x) + x φ(x) computed by brute force', () => {
  const xs = Array.from({ length: 61 }, (_, i) => -6 + i * 0.2);
  const x = tf.tensor1d(xs);
  const y = fast.gelu(x).dataSync();
  const dy = tf
    .grad((v: tf.Tensor) => tf.sum(fast.gelu(v)))(x)
    .dataSync();
  xs.forEach((v, i) => {
    const cdf = phiBruteForce(v);
    const pdf = Math.exp((-v * v) / 2) / Math.sqrt(2 * Math.PI);
    assert.ok(Math.abs(y[i] - v * cdf) < 2e-6 * Math.max(1, Math.abs(v)), `gelu(${v}) = ${y[i]}, want ${v * cdf}`);
    assert.ok(Math.abs(dy[i] - (cdf + v * pdf)) < 2e-6, `gelu'(${v}) = ${dy[i]}, want ${cdf + v * pdf}`);
  });
  // Exact and tanh GELU really differ (by up to ~5e-4 around |x| = 2), so tests can tell them apart.
  const t = fast.geluTanh(x).dataSync();
  assert.ok(xs.some((_, i) => Math.abs(t[i] - y[i]) > 1e-4));
  x.dispose();
});

test('exact gelu equals the erf formula with autodiff, values and gradients', () => {
  checkSame(
    'gelu',
    (x) => fast.gelu(x),
    (x) => plain.gelu(x),
    [tf.mul(rnd([50, 40], 19), 3)],
  );
});

test('bmm (depthwise conv) equals batched matMul', () => {
  checkSame(
    'bmm',
    (a, b) => fast.bmm(a as tf.Tensor3D, b as tf.Tensor3D),
    (a, b) => plain.bmm(a as tf.Tensor3D, b as tf.Tensor3D),
    [rnd([6, 9, 5], 10), rnd([6, 5, 11], 11)],
  );
});

test('bmm matches a brute-force loop', () => {
  const a = rnd([3, 4, 5], 12);
  const b = rnd([3, 5, 2], 13);
  const c = fast.bmm(a as tf.Tensor3D, b as tf.Tensor3D).arraySync();
  const A = a.arraySync() as number[][][];
  const B = b.arraySync() as number[][][];
  for (let g = 0; g < 3; g++)
    for (let i = 0; i < 4; i++)
      for (let j = 0; j < 2; j++) {
        let s = 0;
        for (let k = 0; k < 5; k++) s += A[g][i][k] * B[g][k][j];
        assert.ok(Math.abs(c[g][i][j] - s) < 1e-5);
      }
  tf.dispose([a, b]);
});

test('softmax equals tf.softmax with gradients', () => {
  checkSame(
    'softmax',
    (x) => fast.softmax(x),
    (x) => plain.softmax(x),
    [tf.mul(rnd([4, 7, 13], 14), 2)],
  );
});

test('tfjs ops leak no tensors in forward + backward', () => {
  const x = rnd([16, 8], 15) as tf.Tensor2D;
  const w = rnd([8, 8], 16) as tf.Tensor2D;
  const b = rnd([8], 17) as tf.Tensor1D;
  const step = () => {
    const g = tf.grads((xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
      tf.sum(
        fast.geluTanh(
          fast.gelu(
            fast.layerNorm(
              fast.linear(xx as tf.Tensor2D, ww as tf.Tensor2D, bb as tf.Tensor1D),
              bb as tf.Tensor1D,
              bb as tf.Tensor1D,
            ),
          ),
        ),
      ),
    )([x, w, b]);
    tf.dispose(g);
  };
  step();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) step();
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([x, w, b]);
});
