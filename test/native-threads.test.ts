// A native training step must give the same bits whatever the thread count: the loss, the correct
// count, the gradient norm, every gradient (clipped), the weights after an optimizer update, and
// the eval logits and attention maps. The kernels share work out by thread count, so this holds
// only if every sum over the batch runs in pieces and an order that do not depend on it (see
// native/src/model.cc). Batches and sizes are odd so that 1..4 threads cut the samples, rows and
// weight-gradient units at different places. Without the addon, or for a variant this CPU cannot
// run, each test reports itself skipped with the reason (native-helpers.ts).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { initBackend } from '../src/ml/backend.js';
import { createVit, type VitConfig } from '../src/ml/vit/index.js';
import { nativeOptimize, nativeRun } from '../src/ml/vit/native.js';
import { ODD_VIT } from './fixtures/vit-configs.js';
import { isaCases } from './native-helpers.js';

before(async () => {
  await initBackend('wasm', 1);
});

const configs: { name: string; cfg: VitConfig; batch: number }[] = [
  // Sizes off every vector width and tile, 26 tokens.
  {
    name: 'odd sizes',
    cfg: ODD_VIT,
    batch: 37,
  },
  // CIFAR's shape (65 tokens) with the small model's widths.
  {
    name: 'cifar shape',
    cfg: {
      imageSize: 32,
      channels: 3,
      classes: 10,
      patchSize: 4,
      dim: 64,
      depth: 1,
      heads: 4,
      dimHead: 16,
      mlpDim: 128,
      dropout: 0.1,
    },
    batch: 19,
  },
  // The ViT options: a 2-layer conv tokenizer (its weight gradients sum over every pixel of the
  // batch), sequence pooling (its score weights sum over every token), no positions; and patches
  // with mean pooling and sin-cos positions.
  {
    name: 'conv tokens, seq pool, no positions',
    cfg: {
      ...ODD_VIT,
      imageSize: 16,
      tokenizer: 'conv',
      convLayers: 2,
      convChannels: 10,
      pool: 'seq',
      posEmbedding: 'none',
    },
    batch: 13,
  },
  {
    name: 'patches, mean pool, sincos positions',
    cfg: { ...ODD_VIT, pool: 'mean', posEmbedding: 'sincos' },
    batch: 13,
  },
];

// A fixed pseudo-random sequence (an LCG), so the data does not depend on any backend.
function noise(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** Everything one training step and one eval pass produce, as bytes by name. */
function step(
  isa: string,
  cfg: VitConfig,
  batch: number,
  weights: Float32Array[],
  threads: number,
): Map<string, Uint8Array> {
  const images = noise(batch * cfg.imageSize * cfg.imageSize * cfg.channels, 1);
  const targets = new Float32Array(batch * cfg.classes).fill(0.1 / cfg.classes);
  for (let b = 0; b < batch; b++) targets[b * cfg.classes + ((b * 7) % cfg.classes)] += 0.9;
  const out = new Map<string, Uint8Array>();
  const bytes = (a: Float32Array | Float64Array) =>
    new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));

  // A tiny clip bound, so that the clipping (and with it the global norm) is in play.
  const r = nativeRun(isa, cfg, weights, images, batch, targets, 9, { clipNorm: 1e-3, threads });
  assert.ok((r.gradNorm as number) > 1e-3, 'the step clipped its gradients');
  out.set('loss', bytes(new Float64Array([r.loss as number])));
  out.set('correct', bytes(new Float64Array([r.correct as number])));
  out.set('gradNorm', bytes(new Float64Array([r.gradNorm as number])));
  const grads = r.grads as Float32Array[];
  for (const [i, g] of grads.entries()) out.set(`grad ${i}`, bytes(g));

  const updated = weights.map((w) => w.slice());
  const slots = weights.flatMap((w) => [new Float32Array(w.length).fill(1e-3), new Float32Array(w.length).fill(1e-6)]);
  const settings = {
    name: 'adamw' as const,
    lr: 1e-2,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.05,
    momentum: 0,
    step: 2,
  };
  nativeOptimize(settings, updated, grads, slots, new Uint8Array(weights.length).fill(1));
  for (const [i, w] of updated.entries()) out.set(`updated weight ${i}`, bytes(w));

  const p = nativeRun(isa, cfg, updated, images, batch, null, undefined, { attention: true, threads });
  out.set('logits', bytes(p.logits));
  out.set('attention', bytes(p.attention as Float32Array));
  out.set('pool', bytes(p.pool as Float32Array));
  return out;
}

for (const { isa, skip } of isaCases()) {
  for (const { name, cfg, batch } of configs) {
    test(`native ${isa}, ${name}: a training step and an eval pass give the same bits on 1, 2, 3 and 4 threads`, {
      skip,
    }, () => {
      const model = createVit(cfg, 3);
      const weights = model.variables.map((v) => (v.dataSync() as Float32Array).slice());
      model.dispose();
      const one = step(isa, cfg, batch, weights, 1);
      // Something to compare: a step that moved the weights.
      assert.ok(
        !Buffer.from(one.get('updated weight 0') as Uint8Array).equals(
          Buffer.from(new Uint8Array(weights[0].buffer.slice(0))),
        ),
      );
      for (const threads of [2, 3, 4]) {
        const other = step(isa, cfg, batch, weights, threads);
        assert.deepEqual([...other.keys()], [...one.keys()]);
        const differing = [...one.keys()].filter(
          (k) => !Buffer.from(one.get(k) as Uint8Array).equals(Buffer.from(other.get(k) as Uint8Array)),
        );
        assert.deepEqual(differing, [], `${threads} threads differ from 1 thread in: ${differing.join(', ')}`);
      }
    });
  }
}
