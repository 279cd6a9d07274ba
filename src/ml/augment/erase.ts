// torchvision RandomErasing: per sample, with probability p, one rectangle set to `value`
// (a number, one number per channel, or 'random' for standard-normal noise).
import * as tf from '@tensorflow/tfjs';
import type { Rng } from '../rng.js';
import { sampleErase, type PixelBox } from './sampling.js';
import type { Range } from './types.js';

export function eraseBoxes(
  x: tf.Tensor4D,
  boxes: (PixelBox | undefined)[],
  value: number | number[] | 'random',
  noiseSeed: number,
): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  if (boxes.every((b) => b === undefined)) return x.clone();
  if (Array.isArray(value) && value.length !== c)
    throw new Error(`random_erasing: value has ${value.length} entries for ${c} channels`);
  // Full-size mask and fill built in JS: broadcasting over the channel axis is slow on wasm.
  const mask = new Float32Array(n * h * w * c);
  const fill = value === 'random' ? undefined : new Float32Array(n * h * w * c);
  boxes.forEach((b, s) => {
    if (b === undefined) return;
    for (let r = b.i; r < b.i + b.h; r++) {
      const from = ((s * h + r) * w + b.j) * c;
      const to = from + b.w * c;
      mask.fill(1, from, to);
      if (fill !== undefined) {
        if (Array.isArray(value)) for (let k = from; k < to; k++) fill[k] = value[k % c];
        else fill.fill(value as number, from, to);
      }
    }
  });
  return tf.tidy(() => {
    const m = tf.tensor4d(mask, x.shape);
    const f = fill === undefined ? tf.randomNormal(x.shape, 0, 1, 'float32', noiseSeed) : tf.tensor4d(fill, x.shape);
    return x.add(f.sub(x).mul(m)) as tf.Tensor4D;
  });
}

export function randomErasing(
  x: tf.Tensor4D,
  rng: Rng,
  p: number,
  scale: Range,
  ratio: Range,
  value: number | number[] | 'random',
): tf.Tensor4D {
  const [n, h, w] = x.shape;
  const boxes = Array.from({ length: n }, () => (rng.next() < p ? sampleErase(rng, h, w, scale, ratio) : undefined));
  return eraseBoxes(x, boxes, value, rng.int(0, 2 ** 31));
}
