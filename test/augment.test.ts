// Augmentation ops checked against plain loops, on the wasm backend that training uses.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { createRng, type Rng } from '../src/ml/rng.js';
import { createAugmenter, normalizeTensor, type AugmentOp } from '../src/ml/augment/index.js';
import {
  cropsAt,
  flipWhere,
  randomCrop,
  randomHorizontalFlip,
  randomResizedCrop,
  resizedCrops,
  selectImages,
} from '../src/ml/augment/geometric.js';
import { cutmixWithBox, mixup } from '../src/ml/augment/mix.js';
import { eraseBoxes } from '../src/ml/augment/erase.js';
import type { PixelBox } from '../src/ml/augment/sampling.js';

before(async () => {
  await tf.setBackend('wasm');
});

const DATA = {
  mean: [0.49, 0.48, 0.45],
  std: [0.25, 0.24, 0.26],
  classes: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'],
};

/** Random 0..255 integer images as a flat array and an int32 tensor. */
function randomImages(n: number, h: number, w: number, seed: number): { data: Float32Array; t: tf.Tensor4D } {
  const rng = createRng(seed);
  const data = Float32Array.from({ length: n * h * w * 3 }, () => rng.int(0, 256));
  return { data, t: tf.tensor4d(Int32Array.from(data), [n, h, w, 3], 'int32') };
}

function unit(data: Float32Array): tf.Tensor4D {
  return tf.tensor4d(
    data.map((v) => v / 255),
    [data.length / (3 * 32 * 32), 32, 32, 3],
  );
}

function maxDiff(a: tf.Tensor, b: ArrayLike<number>): number {
  const av = a.dataSync();
  assert.equal(av.length, b.length);
  let m = 0;
  for (let i = 0; i < av.length; i++) m = Math.max(m, Math.abs(av[i] - b[i]));
  return m;
}

const at = (d: ArrayLike<number>, h: number, w: number, s: number, y: number, x: number, c: number): number =>
  d[((s * h + y) * w + x) * 3 + c];

test('flip matches a loop, per image', () => {
  const { data } = randomImages(4, 32, 32, 1);
  const x = unit(data);
  const flags = [true, false, false, true];
  const expected = new Float32Array(data.length);
  for (let s = 0; s < 4; s++)
    for (let y = 0; y < 32; y++)
      for (let xx = 0; xx < 32; xx++)
        for (let c = 0; c < 3; c++)
          expected[((s * 32 + y) * 32 + xx) * 3 + c] = at(data, 32, 32, s, y, flags[s] ? 31 - xx : xx, c) / 255;
  assert.equal(maxDiff(flipWhere(x, flags), expected), 0);
});

// Also the regression test for the wasm CropAndResize row-copy shortcut (see avoidWasmCropShortcut).
test('random_crop with padding matches a zero-padded loop', () => {
  const { data } = randomImages(3, 32, 32, 2);
  const x = unit(data);
  const offsets = [
    { top: 0, left: 0 },
    { top: 8, left: 3 },
    { top: 5, left: 8 },
  ];
  const P = 4;
  const S = 32;
  const expected = new Float32Array(3 * S * S * 3);
  offsets.forEach((o, s) => {
    for (let y = 0; y < S; y++)
      for (let xx = 0; xx < S; xx++) {
        const sy = o.top + y - P;
        const sx = o.left + xx - P;
        for (let c = 0; c < 3; c++) {
          expected[((s * S + y) * S + xx) * 3 + c] =
            sy < 0 || sy >= 32 || sx < 0 || sx >= 32 ? 0 : at(data, 32, 32, s, sy, sx, c) / 255;
        }
      }
  });
  assert.ok(maxDiff(cropsAt(x, P, offsets, S), expected) < 1e-6);
  // sampled offsets stay within the padded image
  const out = randomCrop(x, createRng(9), 24, 2);
  assert.deepEqual(out.shape, [3, 24, 24, 3]);
});

/** Bilinear resize of a crop at half-pixel centres (torch's align_corners=False), clamped at the image edge. */
function bruteResizedCrop(data: Float32Array, s: number, b: PixelBox, S: number): number[] {
  const out: number[] = [];
  const clamp = (v: number): number => Math.min(31, Math.max(0, v));
  for (let k = 0; k < S; k++) {
    const y = b.i + ((k + 0.5) * b.h) / S - 0.5;
    const y0 = Math.floor(y);
    const fy = y - y0;
    for (let l = 0; l < S; l++) {
      const xx = b.j + ((l + 0.5) * b.w) / S - 0.5;
      const x0 = Math.floor(xx);
      const fx = xx - x0;
      for (let c = 0; c < 3; c++) {
        const p = (yy: number, xq: number): number => at(data, 32, 32, s, clamp(yy), clamp(xq), c) / 255;
        const top = p(y0, x0) * (1 - fx) + p(y0, x0 + 1) * fx;
        const bot = p(y0 + 1, x0) * (1 - fx) + p(y0 + 1, x0 + 1) * fx;
        out.push(top * (1 - fy) + bot * fy);
      }
    }
  }
  return out;
}

test('random_resized_crop: bilinear resize of each box matches a loop', () => {
  const { data } = randomImages(4, 32, 32, 3);
  const x = unit(data);
  const boxes: PixelBox[] = [
    { i: 0, j: 0, h: 32, w: 32 },
    { i: 3, j: 5, h: 20, w: 27 },
    { i: 0, j: 10, h: 9, w: 22 },
    { i: 29, j: 30, h: 3, w: 2 },
  ];
  const out = resizedCrops(x, boxes, 32);
  const expected = boxes.flatMap((b, s) => bruteResizedCrop(data, s, b, 32));
  assert.ok(maxDiff(out, expected) < 1e-5, `max diff ${maxDiff(out, expected)}`);
  // the whole image at the same size is the identity
  assert.ok(
    maxDiff(
      out.slice(0, 1),
      Array.from(data.subarray(0, 3072), (v) => v / 255),
    ) < 1e-5,
  );
  // a smaller output size (box k applies to image k)
  const boxes16 = [boxes[0], boxes[0], boxes[1], boxes[2]];
  assert.ok(
    maxDiff(
      resizedCrops(x, boxes16, 16),
      boxes16.flatMap((b, s) => bruteResizedCrop(data, s, b, 16)),
    ) < 1e-5,
  );
});

test('selectImages copies images exactly, in the given order', () => {
  const { data } = randomImages(5, 32, 32, 4);
  const x = unit(data);
  const idx = [4, 0, 0, 2];
  const expected = idx.flatMap((s) => Array.from(data.subarray(s * 3072, (s + 1) * 3072), (v) => v / 255));
  assert.ok(maxDiff(selectImages(x, idx), expected) < 1e-7);
});

test('normalize matches hand computation; eval = to [0,1] + normalize; denormalize undoes it', () => {
  const img = tf.tensor4d([0, 255, 51, 102, 204, 153], [1, 1, 2, 3], 'int32');
  const norm = { mean: [0.5, 0.25, 0.2], std: [0.5, 0.25, 0.4] };
  const expected = [
    (0 - 0.5) / 0.5,
    (1 - 0.25) / 0.25,
    (0.2 - 0.2) / 0.4,
    (0.4 - 0.5) / 0.5,
    (0.8 - 0.25) / 0.25,
    (0.6 - 0.2) / 0.4,
  ];
  assert.ok(maxDiff(normalizeTensor(tf.cast(img, 'float32').div(255) as tf.Tensor4D, norm), expected) < 1e-6);
  const aug = createAugmenter([{ op: 'random_horizontal_flip' }, { op: 'normalize', ...norm }], {
    ...DATA,
    mean: [9, 9, 9],
  });
  assert.ok(maxDiff(aug.eval(img), expected) < 1e-6, 'explicit mean/std win over the data statistics');
  assert.ok(maxDiff(aug.denormalize(aug.eval(img)), [0, 1, 0.2, 0.4, 0.8, 0.6]) < 1e-6);
  const fromData = createAugmenter([{ op: 'normalize', from: 'data' }], DATA);
  assert.deepEqual(fromData.normalization, { mean: DATA.mean, std: DATA.std });
  const none = createAugmenter([{ op: 'random_horizontal_flip' }], DATA);
  assert.ok(maxDiff(none.eval(img), [0, 1, 0.2, 0.4, 0.8, 0.6]) < 1e-6, 'no normalize op: [0,1] only');
  assert.throws(
    () => createAugmenter([{ op: 'normalize', mean: [0.5, 0.5, 0.5] }], DATA).eval(img),
    /mean and std go together/,
  );
  assert.throws(
    () => createAugmenter([{ op: 'normalize' }, { op: 'trivial_augment' }], DATA),
    /must come before normalize/,
  );
});

test('fused flips and crops equal applying the ops one at a time', () => {
  const { data, t } = randomImages(16, 32, 32, 5);
  const labels = tf.tensor1d(
    Array.from({ length: 16 }, (_, i) => i % 10),
    'int32',
  );
  type Step = (x: tf.Tensor4D, rng: Rng) => tf.Tensor4D;
  const flip: Step = (x, rng) => randomHorizontalFlip(x, rng, 0.5);
  const rrc: Step = (x, rng) => randomResizedCrop(x, rng, 32, [0.3, 1], [0.7, 1.4]);
  const rrc24: Step = (x, rng) => randomResizedCrop(x, rng, 24, [0.3, 1], [0.7, 1.4]);
  const crop: Step = (x, rng) => randomCrop(x, rng, 32, 4);
  const cases: [AugmentOp[], Step[]][] = [
    [
      [{ op: 'random_horizontal_flip' }, { op: 'random_resized_crop', scale: [0.3, 1], ratio: [0.7, 1.4] }],
      [flip, rrc],
    ],
    [
      [{ op: 'random_resized_crop', scale: [0.3, 1], ratio: [0.7, 1.4] }, { op: 'random_horizontal_flip' }],
      [rrc, flip],
    ],
    [
      [{ op: 'random_horizontal_flip' }, { op: 'random_crop' }, { op: 'random_horizontal_flip' }],
      [flip, crop, flip],
    ],
    [
      [
        { op: 'random_crop' },
        { op: 'random_resized_crop', size: 24, scale: [0.3, 1], ratio: [0.7, 1.4] },
        { op: 'random_horizontal_flip' },
      ],
      [crop, rrc24, flip],
    ],
    [
      [{ op: 'random_horizontal_flip' }, { op: 'random_horizontal_flip' }],
      [flip, flip],
    ],
  ];
  for (const [ops, steps] of cases) {
    const got = createAugmenter(ops, DATA).train(t, labels, 77).x;
    const rng = createRng(77);
    let x = unit(data);
    for (const step of steps) x = step(x, rng);
    assert.deepEqual(got.shape, x.shape);
    assert.ok(maxDiff(got, x.dataSync()) < 1e-5, `${ops.map((o) => o.op).join(',')}: ${maxDiff(got, x.dataSync())}`);
  }
});

test('same seed gives the same batch, another seed a different one; no tensors leak', () => {
  const { t } = randomImages(8, 32, 32, 6);
  const labels = tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7], 'int32');
  const ops: AugmentOp[] = [
    { op: 'random_crop' },
    { op: 'random_horizontal_flip' },
    { op: 'rand_augment' },
    { op: 'trivial_augment' },
    { op: 'random_resized_crop' },
    { op: 'normalize' },
    { op: 'random_erasing', value: 'random' },
    { op: 'mixup', p: 0.5 },
    { op: 'cutmix', p: 0.5 },
  ];
  const aug = createAugmenter(ops, DATA);
  const before = tf.memory().numTensors;
  const a = aug.train(t, labels, 123);
  const b = aug.train(t, labels, 123);
  const c = aug.train(t, labels, 124);
  assert.equal(tf.memory().numTensors, before + 6, 'only the returned tensors remain');
  assert.deepEqual(a.x.dataSync(), b.x.dataSync());
  assert.deepEqual(a.y.dataSync(), b.y.dataSync());
  assert.ok(maxDiff(a.x, c.x.dataSync()) > 0.1);
  assert.deepEqual(a.x.shape, [8, 32, 32, 3]);
  assert.deepEqual(a.y.shape, [8, 10]);
});

test('mixup: x and y are the same convex mix with the batch rolled by one; targets sum to 1', () => {
  const { data } = randomImages(4, 32, 32, 7);
  const x = unit(data);
  const y = tf.oneHot(tf.tensor1d([1, 3, 3, 9], 'int32'), 10).toFloat() as tf.Tensor2D;
  const out = mixup(x, y, createRng(8), 0.4);
  assert.ok(out.lam >= 0 && out.lam <= 1);
  const partner = [3, 0, 1, 2];
  const ex = new Float32Array(data.length);
  for (let s = 0; s < 4; s++)
    for (let k = 0; k < 3072; k++)
      ex[s * 3072 + k] = (out.lam * data[s * 3072 + k] + (1 - out.lam) * data[partner[s] * 3072 + k]) / 255;
  assert.ok(maxDiff(out.x, ex) < 1e-5);
  const yy = out.y.arraySync();
  assert.ok(Math.abs(yy[0][1] - out.lam) < 1e-6 && Math.abs(yy[0][9] - (1 - out.lam)) < 1e-6);
  assert.ok(Math.abs(yy[2][3] - 1) < 1e-6, 'same class on both sides stays one-hot');
  for (const row of yy) assert.ok(Math.abs(row.reduce((s, v) => s + v, 0) - 1) < 1e-6);
});

test('cutmix: the box comes from the partner and the target weights equal the mixed areas', () => {
  // Constant images (image s has value s+1) so the partner's share of pixels can be counted.
  const n = 3;
  const data = new Float32Array(n * 3072).map((_, k) => Math.floor(k / 3072) + 1);
  const x = tf.tensor4d(data, [n, 32, 32, 3]);
  const y = tf.oneHot(tf.tensor1d([0, 1, 2], 'int32'), 10).toFloat() as tf.Tensor2D;
  const box = { i: 5, j: 10, h: 8, w: 12 };
  const out = cutmixWithBox(x, y, box);
  const xv = out.x.dataSync();
  const yv = out.y.arraySync();
  for (let s = 0; s < n; s++) {
    const partner = (s + n - 1) % n;
    let fromPartner = 0;
    for (let yy = 0; yy < 32; yy++)
      for (let xx = 0; xx < 32; xx++) {
        const inside = yy >= 5 && yy < 13 && xx >= 10 && xx < 22;
        const v = xv[((s * 32 + yy) * 32 + xx) * 3];
        assert.equal(v, inside ? partner + 1 : s + 1);
        if (v === partner + 1) fromPartner++;
      }
    assert.ok(Math.abs(yv[s][partner] - fromPartner / 1024) < 1e-6);
    assert.ok(Math.abs(yv[s][s] - (1 - fromPartner / 1024)) < 1e-6);
  }
  assert.ok(Math.abs(out.lam - (1 - 96 / 1024)) < 1e-12);
});

test('mixup/cutmix through the augmenter: at most one per batch, soft targets sum to 1', () => {
  const { t } = randomImages(8, 32, 32, 9);
  const labels = tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7], 'int32');
  const always = createAugmenter(
    [
      { op: 'mixup', p: 0.5 },
      { op: 'cutmix', p: 0.5 },
    ],
    DATA,
  );
  let cut = 0;
  for (let seed = 0; seed < 30; seed++) {
    const { x, y } = always.train(t, labels, seed);
    const rows = y.arraySync();
    for (const r of rows) assert.ok(Math.abs(r.reduce((s, v) => s + v, 0) - 1) < 1e-5);
    // p 0.5 + 0.5 = 1: every batch is mixed one way or the other. With all labels distinct (label s
    // in row s), row s holds its own class with the batch's lam and its partner's (the batch rolled
    // by one) with 1 - lam, nothing else; an unmixed (one-hot) row fails this.
    const lam = rows[0][0];
    assert.ok(lam > 1e-6 && lam < 1 - 1e-6, `seed ${seed}: batch mixed (lam ${lam})`);
    rows.forEach((r, s) => {
      const partner = (s + 7) % 8;
      r.forEach((v, c) => {
        const want = c === s ? lam : c === partner ? 1 - lam : 0;
        assert.ok(Math.abs(v - want) < 1e-5, `seed ${seed} row ${s} class ${c}: ${v}, expected ${want}`);
      });
    });
    // CutMix keeps every pixel of either image exactly; mixup blends them.
    const xv = x.dataSync();
    const orig = t.dataSync();
    let exact = 0;
    for (let k = 3072; k < 2 * 3072; k++)
      if (Math.abs(xv[k] * 255 - orig[k]) < 1e-3 || Math.abs(xv[k] * 255 - orig[k - 3072]) < 1e-3) exact++;
    if (exact === 3072 && lam < 1 - 1e-6) cut++;
  }
  assert.ok(cut > 5 && cut < 25, `cutmix in ${cut} of 30 batches`);
  assert.throws(
    () =>
      createAugmenter(
        [
          { op: 'mixup', p: 0.7 },
          { op: 'cutmix', p: 0.5 },
        ],
        DATA,
      ),
    /exceeds 1/,
  );
  const never = createAugmenter([{ op: 'mixup', p: 0 }], DATA).train(t, labels, 1).y;
  assert.deepEqual(never.arraySync(), tf.oneHot(labels, 10).arraySync());
});

test('random erasing sets exactly the box to the value', () => {
  const { data } = randomImages(2, 32, 32, 10);
  const x = unit(data);
  const boxes = [{ i: 2, j: 3, h: 5, w: 7 }, undefined];
  const out = eraseBoxes(x, boxes, [0.1, 0.2, 0.3], 1).dataSync();
  for (let s = 0; s < 2; s++)
    for (let y = 0; y < 32; y++)
      for (let xx = 0; xx < 32; xx++)
        for (let c = 0; c < 3; c++) {
          const inside = s === 0 && y >= 2 && y < 7 && xx >= 3 && xx < 10;
          const v = out[((s * 32 + y) * 32 + xx) * 3 + c];
          assert.ok(Math.abs(v - (inside ? [0.1, 0.2, 0.3][c] : at(data, 32, 32, s, y, xx, c) / 255)) < 1e-6);
        }
  // through the augmenter with p = 1 every image gets one rectangle of zeros
  const ones = tf.fill([4, 32, 32, 3], 200, 'int32') as tf.Tensor4D;
  const erased = createAugmenter([{ op: 'random_erasing', p: 1 }], DATA)
    .train(ones, tf.tensor1d([0, 1, 2, 3], 'int32'), 5)
    .x.dataSync();
  for (let s = 0; s < 4; s++) {
    let zeros = 0;
    for (let k = 0; k < 3072; k++) if (erased[s * 3072 + k] === 0) zeros++;
    const frac = zeros / 3072;
    assert.ok(frac >= 0.015 && frac <= 0.36, `image ${s} erased fraction ${frac}`);
  }
});
