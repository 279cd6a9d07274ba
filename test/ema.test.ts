// train's EMA of the weights: the arithmetic against sequences worked out by hand, on a tiny ViT
// trained by the tfjs trainer, and its part of the resume state.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend.js';
import { emaDecay, emaEnabled, WeightEma } from '../src/ml/ema.js';
import { findResume, saveResume, type TrainState } from '../src/ml/resume.js';
import { createVit, tfjsKernels } from '../src/ml/vit/index.js';
import { vitWithWeights } from '../src/ml/vit/model.js';
import { ADAM, createTrainer } from '../src/ml/vit/trainer.js';
import { TINY_VIT } from './fixtures/vit-configs.js';

before(async () => {
  await initBackend('wasm', 1);
});

const f32 = (...xs: number[]) => Float32Array.from(xs);

test('warm-up decays are min(decay, (1 + t) / (10 + t)); decay 0 or no setting is off', () => {
  const s = { decay: 0.9, warmup: true };
  assert.equal(emaDecay(s, 1), 2 / 11);
  assert.equal(emaDecay(s, 2), 3 / 12);
  assert.equal(emaDecay(s, 80), 0.9, '81/90 = 0.9: warm-up is over');
  assert.equal(emaDecay(s, 1000), 0.9);
  assert.equal(emaDecay({ decay: 0.9, warmup: false }, 1), 0.9);
  assert.equal(emaEnabled({ decay: 0, warmup: true }), undefined);
  assert.equal(emaEnabled(undefined), undefined);
  assert.deepEqual(emaEnabled({ decay: 0.5, warmup: false }), { decay: 0.5, warmup: false });
});

test('three steps of ema = d·ema + (1 − d)·w, by hand, with and without warm-up', () => {
  // Warm-up, decay 0.9: d1 = 2/11, d2 = 3/12, d3 = 4/13. From 0 with weights 11, 1, 3:
  // 9/11·11 = 9; 1/4·9 + 3/4·1 = 3; 4/13·3 + 9/13·3 = 3. Second weight from 22, weights 0, 0, 13:
  // 2/11·22 = 4; 1/4·4 = 1; 4/13·1 + 9/13·13 = 121/13.
  const warm = new WeightEma({ decay: 0.9, warmup: true }, [f32(0), f32(22)]);
  const seen: number[][] = [];
  [
    [f32(11), f32(0)],
    [f32(1), f32(0)],
    [f32(3), f32(13)],
  ].forEach((w, i) => {
    warm.advance(w, i + 1);
    seen.push(warm.weights.map((a) => a[0]));
  });
  assert.deepEqual(seen, [
    [9, 4],
    [3, 1],
    [3, Math.fround(121 / 13)],
  ]);
  assert.equal(warm.step, 3);
  // No warm-up, decay 0.5, from 4 with weights 0, 8, 2: 2, 5, 3.5.
  const plain = new WeightEma({ decay: 0.5, warmup: false }, [f32(4, -4)]);
  const out: number[][] = [];
  for (const [t, w] of [f32(0, 0), f32(8, -8), f32(2, 2)].entries()) {
    plain.advance([w], t + 1);
    out.push([...plain.weights[0]]);
  }
  assert.deepEqual(out, [
    [2, -2],
    [5, -5],
    [3.5, -1.5],
  ]);
});

test('steps taken in together count with the product of their decays (d^k without warm-up)', () => {
  // Warm-up, decay 0.9, steps 1 and 2 at once: d = 2/11 · 3/12 = 1/22; from 0 to 22: 21.
  const warm = new WeightEma({ decay: 0.9, warmup: true }, [f32(0)]);
  warm.advance([f32(22)], 2);
  assert.equal(warm.weights[0][0], 21);
  // Decay 0.5, three steps at once: d = 1/8; from 8 to 0: 1.
  const plain = new WeightEma({ decay: 0.5, warmup: false }, [f32(8)]);
  plain.advance([f32(0)], 3);
  assert.equal(plain.weights[0][0], 1);
  assert.throws(() => plain.advance([f32(0)], 3), /at step 3/);
  assert.throws(() => plain.advance([f32(0, 0)], 4), /weight 0 has 2 values, expected 1/);
});

test('the average starts from copies: the arrays it is given may change afterwards', () => {
  const w = f32(1, 2);
  const e = new WeightEma({ decay: 0.5, warmup: false }, [w]);
  w[0] = 100;
  assert.deepEqual([...e.weights[0]], [1, 2]);
});

test('a tiny ViT on the tfjs trainer: the EMA of three steps is the formula over the weights after each', () => {
  const model = createVit(TINY_VIT, 1);
  const trainer = createTrainer(model, tfjsKernels, ADAM);
  const settings = { decay: 0.99, warmup: true };
  const initial = trainer.weights().map((w) => w.slice());
  const ema = new WeightEma(settings, trainer.weights());
  const expected = initial.map((w) => Float64Array.from(w));
  const x = tf.randomNormal([2, 8, 8, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
  const y = tf.oneHot(tf.tensor1d([1, 3], 'int32'), 4) as tf.Tensor2D;
  try {
    for (let t = 1; t <= 3; t++) {
      trainer.gradients(x, y, { seed: t });
      trainer.update(1e-2);
      const w = trainer.weights();
      assert.deepEqual(
        w.map((a) => [...a]),
        model.variables.map((v) => [...(v.dataSync() as Float32Array)]),
        'weights() are the trained variables',
      );
      ema.advance(w, t);
      // d_t = min(0.99, (1 + t) / (10 + t)): 2/11, 3/12, 4/13; each step rounds to float32.
      const d = (1 + t) / (10 + t);
      expected.forEach((e, i) => {
        for (let j = 0; j < e.length; j++) e[j] = Math.fround(d * e[j] + (1 - d) * w[i][j]);
      });
    }
    assert.deepEqual(
      ema.weights.map((a) => [...a]),
      expected.map((a) => [...a]),
    );
    assert.notDeepEqual(
      ema.weights.map((a) => [...a]),
      trainer.weights().map((a) => [...a]),
      'the average is not the trained weights',
    );
    // A ViT made from the average holds exactly it, in the same order.
    const averaged = vitWithWeights(model.config, ema.weights);
    assert.deepEqual(
      averaged.variables.map((v) => [...(v.dataSync() as Float32Array)]),
      ema.weights.map((a) => [...a]),
    );
    averaged.dispose();
  } finally {
    tf.dispose([x, y]);
    trainer.dispose();
    model.dispose();
  }
});

test('the resume state keeps the EMA and its step exactly; without one there is none', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tfpipe-ema-resume-'));
  try {
    const state: TrainState = {
      epochsDone: 2,
      plannedEpochs: 5,
      bestEpoch: 2,
      bestValAccuracy: 0.5,
      elapsedSeconds: 1,
      metrics: [],
    };
    const optimizer = { step: 10, slots: [f32(1, 2), f32(3)] };
    // Values whose float32 bits a text format would lose.
    const arrays = [f32(Math.PI, -1e-30), f32(1 / 3)];
    await saveResume(dir, state, optimizer, async () => {}, { step: 10, arrays });
    const r = await findResume(dir);
    assert.deepEqual(r?.ema, { step: 10, arrays });
    assert.deepEqual(r?.optimizer, optimizer);
    await saveResume(dir, { ...state, epochsDone: 3 }, optimizer, async () => {});
    assert.equal((await findResume(dir))?.ema, undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
