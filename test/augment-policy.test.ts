// RandAugment / TrivialAugment ops checked one image at a time against plain loops.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { createRng } from '../src/ml/rng.js';
import {
  applyPolicyRound,
  equalizeChannel,
  magnitudeTable,
  sampleRandAugment,
  sampleTrivialAugment,
  POLICY_OPS,
  type PolicyChoice,
} from '../src/ml/augment/policy.js';

before(async () => {
  await tf.setBackend('wasm');
});

const S = 8; // small images keep the loops short
const C = 3;
type Img = Float32Array; // S x S x C, values in [0, 1]

function randomImage(seed: number): Img {
  const rng = createRng(seed);
  // Multiples of 1/255 like real pixels.
  return Float32Array.from({ length: S * S * C }, () => rng.int(0, 256) / 255);
}

const px = (im: Img, y: number, x: number, c: number): number => im[(y * S + x) * C + c];
const clip = (v: number): number => Math.min(1, Math.max(0, v));
const gray = (im: Img, y: number, x: number): number =>
  0.2989 * px(im, y, x, 0) + 0.587 * px(im, y, x, 1) + 0.114 * px(im, y, x, 2);

function map(f: (y: number, x: number, c: number) => number): Img {
  const out = new Float32Array(S * S * C);
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) for (let c = 0; c < C; c++) out[(y * S + x) * C + c] = f(y, x, c);
  return out;
}

/** Expected output of one op on one image, written as loops from the op's definition. */
function expected(op: string, m: number, im: Img): Img {
  switch (op) {
    case 'identity':
      return im;
    case 'brightness':
      return map((y, x, c) => clip((1 + m) * px(im, y, x, c)));
    case 'color':
      return map((y, x, c) => clip(gray(im, y, x) + (1 + m) * (px(im, y, x, c) - gray(im, y, x))));
    case 'contrast': {
      let mean = 0;
      for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) mean += gray(im, y, x) / (S * S);
      return map((y, x, c) => clip(mean + (1 + m) * (px(im, y, x, c) - mean)));
    }
    case 'sharpness':
      return map((y, x, c) => {
        if (y === 0 || x === 0 || y === S - 1 || x === S - 1) return px(im, y, x, c);
        let smooth = 0;
        for (let dy = -1; dy <= 1; dy++)
          for (let dx = -1; dx <= 1; dx++) smooth += px(im, y + dy, x + dx, c) * (dy === 0 && dx === 0 ? 5 : 1);
        smooth /= 13;
        return clip(smooth + (1 + m) * (px(im, y, x, c) - smooth));
      });
    case 'posterize': {
      const q = 2 ** (8 - m);
      return map((y, x, c) => (Math.floor(Math.round(px(im, y, x, c) * 255) / q) * q) / 255);
    }
    case 'solarize':
      return map((y, x, c) => (px(im, y, x, c) >= m ? 1 - px(im, y, x, c) : px(im, y, x, c)));
    case 'auto_contrast': {
      const lo = [1, 1, 1];
      const hi = [0, 0, 0];
      for (let y = 0; y < S; y++)
        for (let x = 0; x < S; x++)
          for (let c = 0; c < C; c++) {
            lo[c] = Math.min(lo[c], px(im, y, x, c));
            hi[c] = Math.max(hi[c], px(im, y, x, c));
          }
      return map((y, x, c) => (hi[c] > lo[c] ? (px(im, y, x, c) - lo[c]) / (hi[c] - lo[c]) : px(im, y, x, c)));
    }
    case 'translate_x':
      return map((y, x, c) => (x - m >= 0 && x - m < S ? px(im, y, x - m, c) : 0));
    case 'translate_y':
      return map((y, x, c) => (y - m >= 0 && y - m < S ? px(im, y - m, x, c) : 0));
    case 'shear_x': // m = 1: row y shifts by y
      return map((y, x, c) => (x + m * y < S ? px(im, y, x + m * y, c) : 0));
    case 'rotate': // m = 90 degrees
      return map((y, x, c) => px(im, x, S - 1 - y, c));
    default:
      throw new Error(op);
  }
}

test('each policy op matches its loop, and images keep their place in a mixed batch', () => {
  const choices: PolicyChoice[] = [
    { op: 'identity', magnitude: 0 },
    { op: 'brightness', magnitude: 0.4 },
    { op: 'brightness', magnitude: -0.3 },
    { op: 'color', magnitude: 0.8 },
    { op: 'contrast', magnitude: -0.5 },
    { op: 'contrast', magnitude: 0.9 },
    { op: 'sharpness', magnitude: 0.9 },
    { op: 'posterize', magnitude: 3 },
    { op: 'solarize', magnitude: 0.6 },
    { op: 'auto_contrast', magnitude: 0 },
    { op: 'translate_x', magnitude: 3 },
    { op: 'translate_y', magnitude: -2 },
    { op: 'shear_x', magnitude: 1 },
    { op: 'rotate', magnitude: 90 },
    { op: 'identity', magnitude: 0 },
  ];
  const images = choices.map((_, i) => randomImage(100 + i));
  const batch = tf.tensor4d(Float32Array.from(images.flatMap((im) => Array.from(im))), [images.length, S, S, C]);
  const out = applyPolicyRound(batch, choices).dataSync();
  choices.forEach((ch, i) => {
    const want = expected(ch.op, ch.magnitude, images[i]);
    let maxDiff = 0;
    for (let k = 0; k < want.length; k++) maxDiff = Math.max(maxDiff, Math.abs(out[i * S * S * C + k] - want[k]));
    assert.ok(maxDiff < 1e-5, `image ${i} (${ch.op} ${ch.magnitude}): max diff ${maxDiff}`);
  });
});

test('equalize follows the PIL/torchvision histogram lookup', () => {
  // 256 pixels at 10 and 256 at 20: step = (512 - 256) // 255 = 1, lut[10] = 0, lut[20] = min(255, 256)
  const v = new Uint8Array(512).fill(10, 0, 256).fill(20, 256);
  equalizeChannel(v);
  assert.equal(v[0], 0);
  assert.equal(v[511], 255);
  // too few distinct pixels: step 0, unchanged
  const w = new Uint8Array([5, 6, 7, 8]);
  equalizeChannel(w);
  assert.deepEqual([...w], [5, 6, 7, 8]);
  // through the batch path: a two-valued 8x8 channel ends up as 0/255 only when N is large enough
  const im = tf.tensor4d(
    Float32Array.from({ length: 64 * 3 }, (_, k) => (k % 2 ? 0.2 : 0.6)),
    [1, 8, 8, 3],
  );
  const same = applyPolicyRound(im, [{ op: 'equalize', magnitude: 0 }]).dataSync();
  assert.ok(Math.abs(same[0] - 0.6) < 1e-6, '64 pixels: step 0, left alone');
});

test('magnitude tables match torchvision at the usual settings', () => {
  const ra = magnitudeTable(31, 32, 32, false);
  const close = (a: number, b: number): boolean => Math.abs(a - b) < 1e-9;
  assert.ok(close(ra.shear_x.magnitudes![9], 0.09));
  assert.ok(close(ra.translate_x.magnitudes![9], ((150 / 331) * 32 * 9) / 30));
  assert.ok(close(ra.rotate.magnitudes![9], 9));
  assert.ok(close(ra.brightness.magnitudes![9], 0.27));
  assert.equal(ra.posterize.magnitudes![9], 7); // 8 - round(9 / 7.5)
  assert.equal(ra.posterize.magnitudes![30], 4);
  assert.ok(close(ra.solarize.magnitudes![9], 0.7));
  assert.equal(ra.identity.magnitudes, null);
  const ta = magnitudeTable(31, 32, 32, true);
  assert.ok(close(ta.rotate.magnitudes![30], 135));
  assert.ok(close(ta.translate_y.magnitudes![30], 32));
  assert.equal(ta.posterize.magnitudes![30], 2);
});

test('RandAugment and TrivialAugment draws: all ops appear, signs both ways, deterministic', () => {
  const draw = (seed: number): PolicyChoice[][] => sampleRandAugment(createRng(seed), 500, 2, 9, 31, 32, 32);
  const a = draw(1);
  assert.equal(a.length, 2);
  assert.deepEqual(a, draw(1));
  assert.notDeepEqual(a, draw(2));
  const ops = new Set(a.flat().map((c) => c.op));
  assert.equal(ops.size, POLICY_OPS.length);
  const rot = a
    .flat()
    .filter((c) => c.op === 'rotate')
    .map((c) => c.magnitude);
  assert.ok(rot.every((m) => Math.abs(Math.abs(m) - 9) < 1e-9) && rot.some((m) => m > 0) && rot.some((m) => m < 0));
  const t = sampleTrivialAugment(createRng(3), 2000, 31, 32, 32)[0];
  const rotT = t.filter((c) => c.op === 'rotate').map((c) => Math.abs(c.magnitude));
  assert.ok(Math.max(...rotT) > 100 && Math.min(...rotT) < 20, 'TrivialAugment draws the magnitude bin per image');
  assert.throws(() => sampleRandAugment(createRng(1), 1, 1, 31, 31, 32, 32), /magnitude 31/);
});
