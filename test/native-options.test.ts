// The ViT options (conv tokenizer, mean and sequence pooling, sin-cos or no positions) on the native
// kernels must give what the tfjs implementation (src/ml/vit/vit.ts, the definition of the maths)
// gives, on every ISA variant this CPU runs: loss, correct count and every gradient of a training
// step with and without dropout, and the eval logits, attention maps and pooling weights. Without
// the addon (or on a CPU that cannot run a variant) each test reports itself skipped with the reason.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend.js';
import {
  completeConfig,
  createVit,
  computeGradients,
  forward,
  tfjsKernels,
  type Kernels,
  type VitConfig,
} from '../src/ml/vit/index.js';
import { Dropout } from '../src/ml/vit/dropout.js';
import { nativeRun } from '../src/ml/vit/native.js';
import { tfjsOps } from '../src/ml/vit/ops.js';
import { vit } from '../src/ml/vit/vit.js';
import { isaCases, relDiff } from './native-helpers.js';

before(async () => {
  await initBackend('wasm', 2);
});

// Sizes off every vector width and tile: dim 24, 10 and 6 conv channels, 5 classes.
const base = {
  imageSize: 16,
  channels: 3,
  classes: 5,
  patchSize: 4,
  dim: 24,
  depth: 1,
  heads: 2,
  dimHead: 12,
  mlpDim: 40,
  activation: 'gelu',
} as const;

const configs: { name: string; cfg: Omit<VitConfig, 'dropout'> }[] = [
  { name: 'conv 1 layer, cls, learned', cfg: { ...base, tokenizer: 'conv', convLayers: 1, convChannels: 10 } },
  {
    name: 'conv 2 layers, seq, no positions',
    cfg: { ...base, tokenizer: 'conv', convLayers: 2, convChannels: 10, pool: 'seq', posEmbedding: 'none' },
  },
  {
    name: 'conv 3 layers, mean, sincos',
    cfg: { ...base, depth: 2, tokenizer: 'conv', convLayers: 3, convChannels: 6, pool: 'mean', posEmbedding: 'sincos' },
  },
  {
    name: 'conv 2 layers, cls, sincos',
    cfg: { ...base, tokenizer: 'conv', convLayers: 2, convChannels: 6, posEmbedding: 'sincos' },
  },
  { name: 'patch, mean, sincos', cfg: { ...base, pool: 'mean', posEmbedding: 'sincos' } },
  { name: 'patch, seq, learned', cfg: { ...base, pool: 'seq' } },
  { name: 'patch, cls, no positions', cfg: { ...base, posEmbedding: 'none' } },
];

function data(cfg: VitConfig, n: number): { x: tf.Tensor4D; t: tf.Tensor2D } {
  const x = tf.randomNormal([n, cfg.imageSize, cfg.imageSize, cfg.channels], 0, 1, 'float32', 3) as tf.Tensor4D;
  const labels = tf.tensor1d(
    Array.from({ length: n }, (_, i) => (i * 3) % cfg.classes),
    'int32',
  );
  const t = tf.tidy(() => tf.add(tf.mul(tf.oneHot(labels, cfg.classes).toFloat(), 0.9), 0.02) as tf.Tensor2D);
  labels.dispose();
  return { x, t };
}

/** The tfjs pooling weights [B, T] of an eval pass (vit.ts head). */
function tfjsPool(model: ReturnType<typeof createVit>, x: tf.Tensor4D): Float32Array {
  const pool: tf.Tensor2D[] = [];
  const cfg = completeConfig(model.config);
  tf.tidy(() => vit({ ops: tfjsOps, cfg, batch: x.shape[0], drop: new Dropout(0, undefined), pool }, x, model.params));
  const out = pool[0].dataSync() as Float32Array;
  tf.dispose(pool);
  return out;
}

for (const { isa, skip } of isaCases()) {
  const native: Kernels = { path: 'native', isa };
  for (const { name, cfg: shape } of configs) {
    for (const dropout of [0, 0.2]) {
      test(`native ${isa}, ${name}, dropout ${dropout}: a training step equals the tfjs one (loss, correct, every gradient)`, {
        skip,
      }, () => {
        const cfg: VitConfig = { ...shape, dropout };
        const model = createVit(cfg, 5);
        const { x, t } = data(cfg, 5);
        const n = computeGradients(model, x, t, { seed: 42 }, native);
        const j = computeGradients(model, x, t, { seed: 42 }, tfjsKernels);
        assert.ok(Math.abs(n.loss - j.loss) < 1e-4, `loss ${n.loss} vs ${j.loss}`);
        assert.equal(n.correct, j.correct);
        assert.deepEqual(Object.keys(n.grads).sort(), Object.keys(j.grads).sort());
        for (const key of Object.keys(j.grads)) {
          const d = relDiff(n.grads[key].dataSync(), j.grads[key].dataSync());
          assert.ok(d < 1e-4, `${model.stableName(key)}: relative difference ${d}`);
        }
        tf.dispose([x, t, n.grads, j.grads]);
        model.dispose();
      });
    }

    test(`native ${isa}, ${name}: eval logits, attention maps and pooling weights equal the tfjs ones`, {
      skip,
    }, () => {
      const cfg: VitConfig = { ...shape, dropout: 0.1 };
      const model = createVit(cfg, 8);
      const { x, t } = data(cfg, 6);
      const fn = forward(model, x, { training: false, returnAttention: true }, native);
      const fj = forward(model, x, { training: false, returnAttention: true }, tfjsKernels);
      assert.ok(relDiff(fn.logits.dataSync(), fj.logits.dataSync()) < 1e-4, 'logits');
      assert.equal(fn.attention?.length, cfg.depth);
      fn.attention?.forEach((a, l) => {
        assert.deepEqual(a.shape, (fj.attention as tf.Tensor[])[l].shape);
        assert.ok(relDiff(a.dataSync(), (fj.attention as tf.Tensor[])[l].dataSync()) < 1e-4, `block ${l} attention`);
      });
      const weights = model.variables.map((v) => v.dataSync() as Float32Array);
      const r = nativeRun(isa, cfg, weights, x.dataSync() as Float32Array, 6, null, undefined, { attention: true });
      const want = tfjsPool(model, x);
      assert.equal(r.pool?.length, want.length);
      assert.ok(relDiff(r.pool as Float32Array, want) < 1e-4, 'pooling weights');
      tf.dispose([x, t, fn.logits, fj.logits, ...(fn.attention ?? []), ...(fj.attention ?? [])]);
      model.dispose();
    });
  }
}

test('the addon refuses option values it does not know, and sizes the options cannot take', {
  skip: isaCases().find((c) => !c.skip) ? false : 'no runnable native variant here',
}, () => {
  const isa = (isaCases().find((c) => !c.skip) as { isa: string }).isa;
  const cfg: VitConfig = { ...base, dropout: 0, tokenizer: 'conv', convLayers: 2, convChannels: 6 };
  const model = createVit(cfg, 1);
  const weights = model.variables.map((v) => v.dataSync() as Float32Array);
  const images = new Float32Array(2 * 16 * 16 * 3);
  const run = (c: VitConfig) => () => nativeRun(isa, c, weights, images, 2, null, undefined);
  assert.throws(run({ ...cfg, tokenizer: 'conv2' as 'conv' }), /unknown tokenizer "conv2" \(one of "patch", "conv"\)/);
  assert.throws(run({ ...cfg, pool: 'max' as 'mean' }), /unknown pool "max"/);
  assert.throws(run({ ...cfg, posEmbedding: 'rope' as 'none' }), /unknown posEmbedding "rope"/);
  assert.throws(run({ ...cfg, convLayers: 5 }), /config\.convLayers must be an integer from 1 to 4/);
  assert.throws(run({ ...cfg, imageSize: 20, convLayers: 3 }), /needs imageSize divisible by 8/);
  assert.throws(run({ ...cfg, dim: 22, posEmbedding: 'sincos' }), /sin-cos positions need dim divisible by 4/);
  // The patch size need not divide the image for a conv tokenizer (it reads no patches).
  assert.doesNotThrow(run({ ...cfg, patchSize: 5 }));
  model.dispose();
});
