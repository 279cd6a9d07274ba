// How one training batch is made: the images of the given indices cut from the split, augmented
// with the batch's seed, and the targets smoothed. A pure function of its inputs, so the main
// thread and the prefetch workers (prefetch.ts) make the same numbers for the same batch.
import * as tf from '@tensorflow/tfjs';
import type { Augmenter } from '../augment/index.js';
import type { Split } from '../dataset.js';
import { imageBatch } from '../evaluation.js';

export interface BatchShape {
  imageSize: number;
  channels: number;
  classes: number;
  /** Mix the targets with the uniform distribution by this much (0: none). */
  labelSmoothing: number;
}

/** x [n, H, W, C] augmented and normalised, y [n, classes] soft targets; the caller disposes. */
export function makeTrainBatch(
  split: Split,
  indices: ArrayLike<number>,
  augmenter: Augmenter,
  seed: number,
  shape: BatchShape,
): { x: tf.Tensor4D; y: tf.Tensor2D } {
  return tf.tidy(() => {
    const images = imageBatch(split, indices, shape.imageSize, shape.channels);
    const labels = tf.tensor1d(
      Array.from(indices, (i) => split.labels[i]),
      'int32',
    );
    const out = augmenter.train(images, labels, seed);
    const s = shape.labelSmoothing;
    const y = s > 0 ? (tf.add(tf.mul(out.y, 1 - s), s / shape.classes) as tf.Tensor2D) : out.y;
    return { x: out.x, y };
  });
}
