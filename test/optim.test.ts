import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { decays, Optimizer, type OptimizerSettings } from '../src/ml/optim.js';
import { learningRate } from '../src/ml/schedule.js';
import { confusion } from '../src/kinds/evaluate.js';

const close = (a: number, b: number, tol = 1e-6) =>
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);

test('multistep follows torch MultiStepLR stepped per epoch', () => {
  const s = { name: 'multistep' as const, milestones: [100, 150], gamma: 0.1 };
  close(learningRate(s, 1e-3, 0, 200), 1e-3);
  close(learningRate(s, 1e-3, 99.99, 200), 1e-3);
  close(learningRate(s, 1e-3, 100, 200), 1e-4);
  close(learningRate(s, 1e-3, 149.5, 200), 1e-4);
  close(learningRate(s, 1e-3, 150, 200), 1e-5);
});

test('cosine: linear warm-up, then half a cosine to min_lr', () => {
  const s = { name: 'cosine' as const, warmup_epochs: 2, min_lr: 0.1 };
  close(learningRate(s, 1, 1, 10), (1 + 1e-3) / 2);
  close(learningRate(s, 1, 2, 10), 1);
  close(learningRate(s, 1, 6, 10), 0.1 + 0.45 * (1 + Math.cos(Math.PI / 2)));
  close(learningRate(s, 1, 10, 10), 0.1);
  assert.equal(learningRate({ name: 'constant' }, 0.3, 7, 10), 0.3);
});

const settings = (o: Partial<OptimizerSettings>): OptimizerSettings => ({
  name: 'adam',
  lr: 0.1,
  weight_decay: 0,
  momentum: 0.9,
  betas: [0.9, 0.999],
  eps: 1e-8,
  ...o,
});

function steps(opt: OptimizerSettings, w0: number[][], grads: number[][][], lrs: number[]): number[][] {
  const v = tf.variable(tf.tensor2d(w0));
  const o = new Optimizer(opt, [v], ['blocks/0/mlp/fc1/kernel']);
  grads.forEach((g, i) => {
    const gt = tf.tensor2d(g);
    o.apply({ [v.name]: gt }, lrs[i]);
    gt.dispose();
  });
  const out = v.arraySync();
  o.dispose();
  v.dispose();
  return out;
}

test('Adam, AdamW and SGD match hand-computed torch updates', () => {
  // Two Adam steps on one weight, by hand: m, v, bias correction.
  const g = [0.5, -0.2];
  let m = 0,
    vv = 0,
    w = 1;
  g.forEach((gi, i) => {
    const t = i + 1;
    const gg = gi + 0.01 * w; // coupled L2 in Adam
    m = 0.9 * m + 0.1 * gg;
    vv = 0.999 * vv + 0.001 * gg * gg;
    w -= (0.1 * (m / (1 - 0.9 ** t))) / (Math.sqrt(vv / (1 - 0.999 ** t)) + 1e-8);
  });
  close(
    steps(
      settings({ weight_decay: 0.01 }),
      [[1]],
      g.map((x) => [[x]]),
      [0.1, 0.1],
    )[0][0],
    w,
    1e-5,
  );

  // AdamW: decay applied to the weight directly, scaled by lr.
  m = 0;
  vv = 0;
  w = 1;
  g.forEach((gi, i) => {
    const t = i + 1;
    w *= 1 - 0.1 * 0.5;
    m = 0.9 * m + 0.1 * gi;
    vv = 0.999 * vv + 0.001 * gi * gi;
    w -= (0.1 * (m / (1 - 0.9 ** t))) / (Math.sqrt(vv / (1 - 0.999 ** t)) + 1e-8);
  });
  close(
    steps(
      settings({ name: 'adamw', weight_decay: 0.5 }),
      [[1]],
      g.map((x) => [[x]]),
      [0.1, 0.1],
    )[0][0],
    w,
    1e-5,
  );

  // SGD with momentum: buf = g, then buf = 0.9 buf + g; lr changes between steps.
  const sgd = steps(settings({ name: 'sgd' }), [[1, 2]], [[[1, 1]], [[2, 0]]], [0.1, 0.05]);
  close(sgd[0][0], 1 - 0.1 * 1 - 0.05 * (0.9 * 1 + 2));
  close(sgd[0][1], 2 - 0.1 * 1 - 0.05 * (0.9 * 1 + 0));
});

test('optimizer state round-trips exactly, so a resumed run continues identically', () => {
  const v1 = tf.variable(
    tf.tensor2d([
      [1, 2],
      [3, 4],
    ]),
  );
  const v2 = tf.variable(
    tf.tensor2d([
      [1, 2],
      [3, 4],
    ]),
  );
  const a = new Optimizer(settings({ name: 'adamw', weight_decay: 0.1 }), [v1], ['w']);
  const b = new Optimizer(settings({ name: 'adamw', weight_decay: 0.1 }), [v2], ['w']);
  const g = tf.tensor2d([
    [0.1, -0.3],
    [0.2, 0.05],
  ]);
  a.apply({ [v1.name]: g }, 0.01);
  b.apply({ [v2.name]: g }, 0.01);
  const saved = a.getState();
  const c = new Optimizer(settings({ name: 'adamw', weight_decay: 0.1 }), [v2], ['w']);
  c.setState(saved);
  a.apply({ [v1.name]: g }, 0.01);
  c.apply({ [v2.name]: g }, 0.01);
  assert.deepEqual(v2.arraySync(), v1.arraySync());
  assert.equal(c.step, 2);
  [a, b, c].forEach((o) => {
    o.dispose();
  });
  tf.dispose([v1, v2, g]);
});

test('weight decay skips vectors, the class token and position embedding', () => {
  assert.equal(decays('blocks/0/mlp/fc1/kernel', [64, 128]), true);
  assert.equal(decays('blocks/0/mlp/fc1/bias', [128]), false);
  assert.equal(decays('cls_token', [1, 64]), false);
  assert.equal(decays('pos_embedding', [65, 64]), false);
});

test('confusion matrix and per-class accuracy by hand', () => {
  const { matrix, perClass } = confusion([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3);
  assert.deepEqual(matrix, [
    [1, 1, 0],
    [0, 1, 0],
    [1, 0, 2],
  ]);
  assert.deepEqual(perClass, [0.5, 1, 2 / 3]);
});

test('a time budget re-plans the epoch count from recent epoch times', async () => {
  const { plannedEpochs } = await import('../src/kinds/train.js');
  const state = (secs: number[]) => ({
    epochsDone: secs.length,
    plannedEpochs: 100,
    bestEpoch: 0,
    bestValAccuracy: 0,
    elapsedSeconds: secs.reduce((a, b) => a + b, 0),
    metrics: secs.map((s, i) => ({
      epoch: i + 1,
      seconds: s,
      train_loss: 0,
      train_accuracy: 0,
      val_loss: null,
      val_accuracy: null,
      lr: 0,
      images_per_second: 0,
      elapsed_seconds: 0,
      tensors: 0,
    })),
  });
  assert.equal(plannedEpochs(100, state([60]), 600), 10); // 540 s left, 60 s each: 9 more
  assert.equal(plannedEpochs(5, state([60]), 600), 5); // capped by epochs
  assert.equal(plannedEpochs(100, state([60, 60, 120]), 600), 6); // slowed down: (600-240)/120 = 3 more
  assert.equal(plannedEpochs(100, state([60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60]), 600), 11); // over budget: stop now
});

test('last/ and the resume state are written again only once ten times their last write has passed', async () => {
  const { writeDue } = await import('../src/kinds/train.js');
  assert.equal(writeDue({ at: 0, took: 0 }, 5), true, 'the first write');
  // A flagship write takes ~1 s; GPU epochs of ~2.5 s end at 2.5, 5, 7.5, 10, 12.5 s after it.
  const last = { at: 1000, took: 1000 };
  assert.deepEqual(
    [3500, 6000, 8500, 11000, 13500].map((t) => writeDue(last, t)),
    [false, false, false, true, true],
  );
  // Tiny test runs write in milliseconds: every epoch.
  assert.equal(writeDue({ at: 1000, took: 20 }, 1500), true);
});
