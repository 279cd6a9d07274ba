// The random parameters of the augmentation ops, checked on the sampled boxes themselves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRng } from '../src/ml/rng.js';
import {
  centralCropForRatio,
  resizeBoxInPadded,
  sampleCutmixBox,
  sampleErase,
  sampleResizedCrop,
} from '../src/ml/augment/sampling.js';

test('random_resized_crop boxes stay inside the image and respect scale and ratio', () => {
  const rng = createRng(1);
  // A large image makes the rounding of w and h negligible, so the bounds can be tight.
  const H = 1000;
  const W = 1000;
  let logRatioSum = 0;
  const n = 3000;
  for (let t = 0; t < n; t++) {
    const b = sampleResizedCrop(rng, H, W, [0.08, 1], [3 / 4, 4 / 3]);
    assert.ok(b.i >= 0 && b.j >= 0 && b.i + b.h <= H && b.j + b.w <= W, JSON.stringify(b));
    const frac = (b.h * b.w) / (H * W);
    const ratio = b.w / b.h;
    assert.ok(frac >= 0.08 * 0.995 && frac <= 1.0001, `area fraction ${frac}`);
    assert.ok(ratio >= (3 / 4) * 0.995 && ratio <= (4 / 3) * 1.005, `ratio ${ratio}`);
    logRatioSum += Math.log(ratio);
  }
  // log-uniform on a range symmetric in log space: mean log ratio ~ 0
  assert.ok(Math.abs(logRatioSum / n) < 0.02, `mean log ratio ${logRatioSum / n}`);
});

test('random_resized_crop on 32x32 with the reference settings', () => {
  const rng = createRng(2);
  for (let t = 0; t < 2000; t++) {
    const b = sampleResizedCrop(rng, 32, 32, [0.8, 1], [0.9, 1.1]);
    assert.ok(b.i >= 0 && b.j >= 0 && b.i + b.h <= 32 && b.j + b.w <= 32);
    // w = round(sqrt(area * r)): with area >= 0.8 * 1024 and r >= 0.9, w >= round(27.15) = 27
    assert.ok(b.w >= 27 && b.h >= 27, JSON.stringify(b));
  }
});

test('random_resized_crop falls back to the central crop clamped to the ratio range', () => {
  // An area fraction above 1 never fits, so all 10 tries fail.
  const rng = createRng(3);
  assert.deepEqual(sampleResizedCrop(rng, 32, 40, [2, 3], [0.5, 1]), { i: 0, j: 4, h: 32, w: 32 });
  assert.deepEqual(sampleResizedCrop(rng, 32, 40, [2, 3], [2, 3]), { i: 6, j: 0, h: 20, w: 40 });
  assert.deepEqual(sampleResizedCrop(rng, 32, 40, [2, 3], [1, 2]), { i: 0, j: 0, h: 32, w: 40 });
  // tall image: h = round(32 / 0.9) = 36, centred: i = floor((40 - 36) / 2)
  assert.deepEqual(centralCropForRatio(40, 32, [0.9, 1.1]), { i: 2, j: 0, h: 36, w: 32 });
});

test('random erasing boxes: strictly smaller than the image, area within scale; none when impossible', () => {
  const rng = createRng(4);
  for (let t = 0; t < 1000; t++) {
    const b = sampleErase(rng, 500, 500, [0.02, 0.33], [0.3, 3.3]);
    if (b === undefined) continue;
    assert.ok(b.h < 500 && b.w < 500 && b.i >= 0 && b.j >= 0 && b.i + b.h <= 500 && b.j + b.w <= 500);
    const frac = (b.h * b.w) / 250000;
    assert.ok(frac >= 0.02 * 0.98 && frac <= 0.33 * 1.02, `erase fraction ${frac}`);
  }
  assert.equal(sampleErase(rng, 32, 32, [1, 1], [1, 1]), undefined);
});

test('cutmix box: clipped to the image, half-sides from lam', () => {
  const rng = createRng(5);
  for (let t = 0; t < 500; t++) {
    const lam = rng.next();
    const b = sampleCutmixBox(rng, 32, 32, lam);
    assert.ok(b.i >= 0 && b.j >= 0 && b.i + b.h <= 32 && b.j + b.w <= 32);
    const half = Math.trunc(0.5 * Math.sqrt(1 - lam) * 32);
    assert.ok(b.h <= 2 * half && b.w <= 2 * half);
  }
});

test('resizeBoxInPadded samples at half-pixel centres of the crop', () => {
  // crop rows 4..11 (h 8) of a 32-row image resized to 16: sample k at 4 + (k + 0.5) / 2 - 0.5, +1 for padding
  const [y1, x1, y2, x2] = resizeBoxInPadded({ i: 4, j: 0, h: 8, w: 32 }, 32, 32, 16, 32);
  assert.ok(Math.abs(y1 * 33 - (4 + 0.25 - 0.5 + 1)) < 1e-12);
  assert.ok(Math.abs(y2 * 33 - (4 + 15.5 / 2 - 0.5 + 1)) < 1e-12);
  // same width: exactly the pixel centres 0..31 (+1)
  assert.ok(Math.abs(x1 * 33 - 1) < 1e-12 && Math.abs(x2 * 33 - 32) < 1e-12);
});
