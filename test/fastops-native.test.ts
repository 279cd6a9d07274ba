// The native kernels must give what the tfjs implementation gives: loss, correct count, every
// gradient (with dropout on) and eval logits. Skipped when the optional addon is not built.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend.js';
import { createVit, computeGradients, predict, type VitConfig } from '../src/ml/vit/index.js';
import { nativeAddonPath, nativeStatus, setNativeEnabled } from '../src/ml/vit/native.js';

const skip = existsSync(nativeAddonPath) ? false : 'native addon not built (node native/build.mjs)';

before(async () => {
  await initBackend('wasm', 2);
});

// Odd sizes on purpose: dims that are not multiples of the 16/32-wide tiles, row tails, and
// 26 tokens so attention rows take both the vector and the scalar-tail paths.
const cfg: VitConfig = { imageSize: 20, channels: 3, classes: 5, patchSize: 4, dim: 40, depth: 2, heads: 3, dimHead: 12, mlpDim: 72, dropout: 0.2 };

function data(n: number): { x: tf.Tensor4D; t: tf.Tensor2D } {
  const x = tf.randomNormal([n, 20, 20, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
  // Soft targets (label smoothing-like) to exercise the soft cross-entropy.
  const hard = tf.oneHot(tf.tensor1d(Array.from({ length: n }, (_, i) => (i * 3) % 5), 'int32'), 5).toFloat();
  const t = tf.add(tf.mul(hard, 0.9), 0.02) as tf.Tensor2D;
  hard.dispose();
  return { x, t };
}

function relDiff(a: Float32Array | Int32Array | Uint8Array, b: Float32Array | Int32Array | Uint8Array): number {
  let scale = 1e-3;
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m / scale;
}

test('native training step equals the tfjs one (loss, correct, all gradients, dropout)', { skip }, () => {
  const model = createVit(cfg, 5);
  const { x, t } = data(7);
  setNativeEnabled(true);
  assert.ok(nativeStatus().active, nativeStatus().detail);
  const n = computeGradients(model, x, t, { seed: 42 });
  setNativeEnabled(false);
  const j = computeGradients(model, x, t, { seed: 42 });
  setNativeEnabled(true);
  assert.ok(Math.abs(n.loss - j.loss) < 1e-4, `loss ${n.loss} vs ${j.loss}`);
  assert.equal(n.correct, j.correct);
  for (const name of Object.keys(j.grads)) {
    const d = relDiff(n.grads[name].dataSync() as Float32Array, j.grads[name].dataSync() as Float32Array);
    assert.ok(d < 1e-4, `${model.stableName(name)}: relative difference ${d}`);
  }
  tf.dispose([x, t, n.grads, j.grads]);
  model.dispose();
});

test('native predict equals the tfjs predict, also across batch boundaries', { skip }, () => {
  const model = createVit(cfg, 8);
  const { x, t } = data(9);
  setNativeEnabled(true);
  const n = predict(model, x, 4);
  setNativeEnabled(false);
  const j = predict(model, x, 9);
  setNativeEnabled(true);
  assert.ok(relDiff(n.dataSync() as Float32Array, j.dataSync() as Float32Array) < 1e-4);
  tf.dispose([x, t, n, j]);
  model.dispose();
});

test('native training on one batch with Adam drives the loss down like tfjs does, without leaks', { skip }, () => {
  const losses: Record<string, number[]> = {};
  for (const mode of ['native', 'tfjs']) {
    setNativeEnabled(mode === 'native');
    const model = createVit({ ...cfg, dropout: 0 }, 1);
    const opt: tf.Optimizer = tf.train.adam(3e-3);
    const { x, t } = data(8);
    losses[mode] = [];
    let tensors = 0;
    for (let i = 0; i < 25; i++) {
      const r = computeGradients(model, x, t, { seed: i });
      opt.applyGradients(r.grads);
      tf.dispose(r.grads);
      losses[mode].push(r.loss);
      if (i === 1) tensors = tf.memory().numTensors; // Adam's slots exist from step 1
      if (i > 1) assert.equal(tf.memory().numTensors, tensors, `${mode} step ${i} leaked tensors`);
    }
    tf.dispose([x, t]);
    opt.dispose();
    model.dispose();
  }
  setNativeEnabled(true);
  assert.ok(losses.native[24] < 0.5 * losses.native[0], `native loss ${losses.native[0]} -> ${losses.native[24]}`);
  // Same trajectory within float drift.
  for (let i = 0; i < 25; i++) assert.ok(Math.abs(losses.native[i] - losses.tfjs[i]) < 1e-3 * Math.max(1, losses.tfjs[i]), `step ${i}`);
});

test('a failing native build exits 0 with a note, so npm install goes on without the addon', () => {
  const script = fileURLToPath(new URL('../../native/build.mjs', import.meta.url));
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8', env: { ...process.env, CXX: '/nonexistent/c++' } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /native kernels not built .*using tfjs kernels/);
});
