// Mixup and CutMix (torchvision v2 style): the batch is mixed with itself rolled by one sample, one
// mixing weight per batch; targets become the same mixture of one-hot labels.
import * as tf from '@tensorflow/tfjs';
import type { Rng } from '../rng.js';
import { sampleCutmixBox, type PixelBox } from './sampling.js';

export interface Mixed {
  x: tf.Tensor4D;
  y: tf.Tensor2D;
  lam: number;
  box?: PixelBox;
}

/** Sample b paired with sample b-1 (b = 0 with the last), like torch's roll(1, 0). */
function rolled<T extends tf.Tensor>(t: T): T {
  const n = t.shape[0];
  if (n < 2) return t.clone();
  return tf.concat([t.slice(n - 1, 1), t.slice(0, n - 1)], 0) as T;
}

export function mixup(x: tf.Tensor4D, y: tf.Tensor2D, rng: Rng, alpha: number): Mixed {
  const lam = rng.beta(alpha, alpha);
  const out = tf.tidy(() => ({
    x: x.mul(lam).add(rolled(x).mul(1 - lam)) as tf.Tensor4D,
    y: y.mul(lam).add(rolled(y).mul(1 - lam)) as tf.Tensor2D,
  }));
  return { ...out, lam };
}

/** Paste box b of the rolled batch into every image; lam is recomputed from the pasted area. */
export function cutmixWithBox(x: tf.Tensor4D, y: tf.Tensor2D, box: PixelBox): Mixed {
  const [n, h, w, c] = x.shape;
  const lam = 1 - (box.h * box.w) / (h * w);
  // Full-size mask: broadcasting over batch and channel axes is slow on wasm.
  const mask = new Float32Array(n * h * w * c);
  for (let s = 0; s < n; s++) {
    for (let r = box.i; r < box.i + box.h; r++)
      mask.fill(1, ((s * h + r) * w + box.j) * c, ((s * h + r) * w + box.j + box.w) * c);
  }
  const out = tf.tidy(() => {
    const m = tf.tensor4d(mask, x.shape);
    return {
      x: x.add(rolled(x).sub(x).mul(m)) as tf.Tensor4D,
      y: y.mul(lam).add(rolled(y).mul(1 - lam)) as tf.Tensor2D,
    };
  });
  return { ...out, lam, box };
}

export function cutmix(x: tf.Tensor4D, y: tf.Tensor2D, rng: Rng, alpha: number): Mixed {
  const [, h, w] = x.shape;
  return cutmixWithBox(x, y, sampleCutmixBox(rng, h, w, rng.beta(alpha, alpha)));
}
