// The ViT model: patch order, attention, gradients against plain tfjs, determinism, leaks, learning.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend.js';
import {
  createVit,
  forward,
  computeGradients,
  predict,
  patchify,
  parameterTable,
  referenceKernels,
  tfjsKernels,
} from '../src/ml/vit/index.js';
import { dropoutMask } from '../src/ml/vit/dropout.js';
import { BLOCK_PARAMS, dropoutSite, groupParams, parameterSpecs } from '../src/ml/vit/layout.js';
import { TINY_VIT } from './fixtures/vit-configs.js';

// These tests are about the tfjs implementation; native.test.ts checks the addon against it.
const tfjs = tfjsKernels;

before(async () => {
  await initBackend('wasm', 1);
});

const tiny = TINY_VIT;

function images(n: number, seed: number, cfg = tiny): tf.Tensor4D {
  return tf.randomNormal([n, cfg.imageSize, cfg.imageSize, cfg.channels], 0, 1, 'float32', seed);
}

function oneHot(labels: number[], classes: number): tf.Tensor2D {
  return tf.oneHot(tf.tensor1d(labels, 'int32'), classes).toFloat() as tf.Tensor2D;
}

test('patchify gives (channel, row, col) order per patch, patches row-major', () => {
  const [b, h, w, c, p] = [2, 8, 12, 3, 4];
  const data = Float32Array.from({ length: b * h * w * c }, (_, i) => i);
  const x = tf.tensor4d(data, [b, h, w, c]);
  const got = patchify(x, p).arraySync();
  const gw = w / p;
  const n = (h / p) * gw;
  for (let bi = 0; bi < b; bi++)
    for (let pi = 0; pi < n; pi++) {
      const [gy, gx] = [Math.floor(pi / gw), pi % gw];
      let k = 0;
      for (let ci = 0; ci < c; ci++)
        for (let r = 0; r < p; r++)
          for (let col = 0; col < p; col++) {
            const want = data[((bi * h + gy * p + r) * w + gx * p + col) * c + ci];
            assert.equal(got[bi * n + pi][k++], want);
          }
    }
  x.dispose();
});

test('parameter table: names, shapes and the hand-counted total', () => {
  const m = createVit(tiny, 1);
  const table = parameterTable(m);
  const total = table.reduce((s, r) => s + r.count, 0);
  const d = 16,
    inner = 16,
    mlp = 32,
    T = 5;
  const perBlock = 2 * d + 3 * d * inner + inner * d + d + 2 * d + d * mlp + mlp + mlp * d + d;
  assert.equal(total, 48 * d + d + d + T * d + 2 * perBlock + 2 * d + d * 4 + 4);
  assert.deepEqual(table.find((r) => r.name === 'embedding/pos_embedding')?.shape, [T, d]);
  assert.equal(new Set(m.variables.map((v) => v.name)).size, m.variables.length);
  m.dispose();
});

test('same seed gives the same weights; a different seed does not', () => {
  const a = createVit(tiny, 3);
  const b = createVit(tiny, 3);
  const c = createVit(tiny, 4);
  assert.deepEqual(Array.from(a.variables[0].dataSync()), Array.from(b.variables[0].dataSync()));
  assert.notDeepEqual(Array.from(a.variables[0].dataSync()), Array.from(c.variables[0].dataSync()));
  [a, b, c].forEach((m) => {
    m.dispose();
  });
});

test('attention: one [B, heads, T, T] map per block, rows sum to 1', () => {
  const m = createVit(tiny, 2);
  const x = images(3, 5);
  const { logits, attention } = forward(m, x, { training: false, returnAttention: true }, tfjs);
  assert.deepEqual(logits.shape, [3, 4]);
  assert.equal(attention?.length, 2);
  for (const a of attention ?? []) {
    assert.deepEqual(a.shape, [3, 2, 5, 5]);
    const sums = tf.sum(a, -1).dataSync();
    for (const s of sums) assert.ok(Math.abs(s - 1) < 1e-5);
  }
  tf.dispose([logits, x, ...(attention ?? [])]);
  m.dispose();
});

test('the tfjs-ops model equals the reference-ops model: loss and every gradient (with dropout), both activations', () => {
  for (const activation of ['gelu_tanh', 'gelu'] as const) {
    const m = createVit({ ...tiny, activation }, 6);
    const x = images(4, 8);
    const t = oneHot([0, 1, 2, 3], 4);
    const fastR = computeGradients(m, x, t, { seed: 11 }, tfjs);
    const plainR = computeGradients(m, x, t, { seed: 11 }, referenceKernels);
    assert.ok(Math.abs(fastR.loss - plainR.loss) < 1e-4, `${activation}: loss ${fastR.loss} vs ${plainR.loss}`);
    assert.equal(fastR.correct, plainR.correct);
    for (const name of Object.keys(plainR.grads)) {
      const a = fastR.grads[name].dataSync();
      const b = plainR.grads[name].dataSync();
      let scale = 1;
      for (const v of b) scale = Math.max(scale, Math.abs(v));
      for (let i = 0; i < a.length; i++)
        assert.ok(
          Math.abs(a[i] - b[i]) / scale < 1e-4,
          `${activation} ${m.stableName(name)}[${i}]: ${a[i]} vs ${b[i]}`,
        );
    }
    tf.dispose([x, t, fastR.grads, plainR.grads]);
    m.dispose();
  }
});

test('the activation setting changes the model: exact and tanh GELU give different logits', () => {
  const x = images(3, 4);
  const logits = (['gelu', 'gelu_tanh'] as const).map((activation) => {
    const m = createVit({ ...tiny, activation }, 3);
    const l = forward(m, x, { training: false }, tfjs).logits;
    const data = l.dataSync().slice();
    l.dispose();
    m.dispose();
    return data;
  });
  let d = 0;
  for (let i = 0; i < logits[0].length; i++) d = Math.max(d, Math.abs(logits[0][i] - logits[1][i]));
  // GELU and its tanh form differ by up to ~2e-4 per activation; through two blocks that shows.
  assert.ok(d > 1e-6, `logits differ by only ${d}`);
  x.dispose();
});

test('one layout drives the parameters: model order, names, shapes and the role-keyed view', () => {
  const m = createVit(tiny, 1);
  const specs = parameterSpecs(tiny);
  assert.deepEqual(
    m.names,
    specs.map((s) => s.name),
  );
  // The default options: patch tokenizer, class token, learned positions (no conv kernels, no pooling weights).
  assert.equal(specs.length, 4 + tiny.depth * BLOCK_PARAMS.length + 4);
  assert.deepEqual(
    specs.slice(0, 4).map((s) => s.name),
    ['embedding/patch/kernel', 'embedding/patch/bias', 'embedding/cls_token', 'embedding/pos_embedding'],
  );
  assert.equal(specs[4 + BLOCK_PARAMS.length + 2].name, 'block_1/attn/to_q');
  assert.deepEqual(specs[specs.length - 2].shape, [16, 4]);
  // The role-keyed view points at the same variables as the model order.
  assert.equal(m.params.blocks[1].toQ, m.variables[4 + BLOCK_PARAMS.length + 2]);
  assert.equal(m.params.headB, m.variables[m.variables.length - 1]);
  assert.equal(m.params.posEmbedding?.shape[0], 5);
  const grouped = groupParams(
    specs.map((s) => s.name),
    tiny,
  );
  assert.equal(grouped.blocks[0].fc2B, 'block_0/mlp/fc2/bias');
  assert.equal(grouped.headNormGamma, 'head/norm/gamma');
  m.dispose();
});

test('dropout sites are numbered by position, not by call order', () => {
  assert.equal(dropoutSite(0, 'attn/weights'), 1);
  assert.equal(dropoutSite(0, 'mlp/out'), 4);
  assert.equal(dropoutSite(2, 'attn/out'), 10);
  // Every site of a 3-block model is distinct and follows the embedding's 0.
  const sites = [
    0,
    ...[0, 1, 2].flatMap((b) =>
      (['attn/weights', 'attn/out', 'mlp/hidden', 'mlp/out'] as const).map((s) => dropoutSite(b, s)),
    ),
  ];
  assert.deepEqual(
    sites,
    Array.from({ length: 13 }, (_, i) => i),
  );
});

test('dropout: deterministic per seed, only in training, drops about the rate', () => {
  const a = dropoutMask(5, 2, 100000, 0.1);
  assert.deepEqual(a, dropoutMask(5, 2, 100000, 0.1));
  assert.notDeepEqual(a, dropoutMask(6, 2, 100000, 0.1));
  const dropped = a.filter((v) => v === 0).length / a.length;
  assert.ok(Math.abs(dropped - 0.1) < 0.01, `dropped ${dropped}`);
  const m = createVit(tiny, 1);
  const x = images(2, 1);
  const l1 = forward(m, x, { training: true, seed: 1 }, tfjs).logits;
  const l2 = forward(m, x, { training: true, seed: 1 }, tfjs).logits;
  const l3 = forward(m, x, { training: true, seed: 2 }, tfjs).logits;
  const e1 = forward(m, x, { training: false, seed: 1 }, tfjs).logits;
  const e2 = forward(m, x, { training: false }, tfjs).logits;
  assert.deepEqual(l1.dataSync(), l2.dataSync());
  assert.notDeepEqual(l1.dataSync(), l3.dataSync());
  assert.deepEqual(e1.dataSync(), e2.dataSync());
  tf.dispose([x, l1, l2, l3, e1, e2]);
  m.dispose();
});

test('predict in batches equals one eval forward', () => {
  const m = createVit(tiny, 9);
  const x = images(5, 3);
  const p = predict(m, x, 2, tfjs);
  const f = forward(m, x, { training: false }, tfjs).logits;
  const a = p.dataSync();
  const b = f.dataSync();
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-5);
  tf.dispose([x, p, f]);
  m.dispose();
});

test('gradient clipping bounds the global norm', () => {
  const m = createVit(tiny, 2);
  const x = images(4, 2);
  const t = oneHot([3, 2, 1, 0], 4);
  const r = computeGradients(m, x, t, { seed: 1, gradClipNorm: 0.01 }, tfjs);
  const norm = Math.sqrt(Object.values(r.grads).reduce((s, g) => s + tf.sum(tf.square(g)).dataSync()[0], 0));
  assert.ok(norm <= 0.01 + 1e-6, `norm ${norm}`);
  tf.dispose([x, t, r.grads]);
  m.dispose();
});

test('training steps leak no tensors and a tiny model overfits one batch', () => {
  const m = createVit({ ...tiny, dropout: 0 }, 4);
  const x = images(8, 21);
  const t = oneHot([0, 1, 2, 3, 0, 1, 2, 3], 4);
  // Typed as the base class: AdamOptimizer's own typing wants a NamedVariableMap.
  const opt: tf.Optimizer = tf.train.adam(3e-3);
  const losses: number[] = [];
  let tensorsAfterFirst = 0;
  for (let i = 0; i < 60; i++) {
    const { loss, grads } = computeGradients(m, x, t, { seed: i }, tfjs);
    opt.applyGradients(grads);
    tf.dispose(grads);
    losses.push(loss);
    if (i === 1) tensorsAfterFirst = tf.memory().numTensors; // Adam's slots exist from step 1
    if (i > 1) assert.equal(tf.memory().numTensors, tensorsAfterFirst, `step ${i} leaked`);
  }
  assert.ok(losses[59] < 0.2 * losses[0], `loss went from ${losses[0]} to ${losses[59]}`);
  opt.dispose();
  tf.dispose([x, t]);
  m.dispose();
});

test('a patch size that does not divide the image size is a clear error', () => {
  assert.throws(() => createVit({ ...tiny, patchSize: 3 }, 1), /patch size 3 must divide the image size 8/);
});
