// Dropout masks from a counter-based hash instead of tf.dropout's stateful RNG, so that every
// implementation of the forward pass (tfjs ops, a native kernel) draws exactly the same mask for
// a given (seed, site, element) and training gives the same numbers whichever path runs.
import * as tf from '@tensorflow/tfjs';

/** murmur3's 32-bit finaliser: a cheap, well-mixed hash of one integer. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Scale factor per element: 0 for dropped, 1 / (1 - rate) for kept. */
export function dropoutMask(seed: number, site: number, size: number, rate: number): Float32Array {
  const out = new Float32Array(size);
  const keep = 1 / (1 - rate);
  // Drop when the top 24 bits, read as a fraction, fall below rate.
  const threshold = Math.floor(rate * 16777216);
  const base = fmix32((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(site + 1, 0x85ebca77)) >>> 0);
  for (let i = 0; i < size; i++) {
    out[i] = fmix32((base ^ Math.imul(i + 1, 0xcc9e2d51)) >>> 0) >>> 8 < threshold ? 0 : keep;
  }
  return out;
}

/** Dropout at numbered sites (layout.ts) for one forward pass: off unless training with a seed. */
export class Dropout {
  constructor(
    private readonly rate: number,
    private readonly seed: number | undefined,
  ) {}

  get active(): boolean {
    return this.rate > 0 && this.seed !== undefined;
  }

  apply<R extends tf.Rank>(x: tf.Tensor<R>, site: number): tf.Tensor<R> {
    if (!this.active) return x;
    const mask = dropoutMask(this.seed as number, site, x.size, this.rate);
    return tf.mul(x, tf.tensor(mask, x.shape, 'float32'));
  }
}
