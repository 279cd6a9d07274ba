// Loss, accuracy and predictions of a model over a whole split, in eval mode.
import * as tf from '@tensorflow/tfjs';
import type { Augmenter } from './augment/index.js';
import type { Split } from './dataset.js';
import { predict, type Kernels, type Vit } from './vit/index.js';

export interface SplitEvaluation {
  loss: number;
  accuracy: number;
  /** Predicted class per image. */
  predictions: Int32Array;
}

/** Images [start, start+count) of a split as an int32 NHWC tensor (values 0..255). */
export function imageBatch(split: Split, indices: ArrayLike<number>, size: number, channels: number): tf.Tensor4D {
  const per = size * size * channels;
  const buf = new Int32Array(indices.length * per);
  for (let i = 0; i < indices.length; i++) {
    const src = indices[i] * per;
    for (let j = 0; j < per; j++) buf[i * per + j] = split.images[src + j];
  }
  return tf.tensor4d(buf, [indices.length, size, size, channels], 'int32');
}

export function evaluateSplit(
  model: Vit,
  augmenter: Augmenter,
  split: Split,
  opts: { batchSize: number; imageSize: number; channels: number; kernels: Kernels; onBatch?: (done: number) => void },
): SplitEvaluation {
  const predictions = new Int32Array(split.count);
  let lossSum = 0;
  let correct = 0;
  for (let start = 0; start < split.count; start += opts.batchSize) {
    const n = Math.min(opts.batchSize, split.count - start);
    const idx = Array.from({ length: n }, (_, i) => start + i);
    const [loss, preds] = tf.tidy(() => {
      const x = augmenter.eval(imageBatch(split, idx, opts.imageSize, opts.channels));
      const logits = predict(model, x, opts.batchSize, opts.kernels);
      const labels = tf.tensor1d(Array.from(split.labels.subarray(start, start + n)), 'int32');
      const ce = tf.losses.softmaxCrossEntropy(
        tf.oneHot(labels, logits.shape[1]),
        logits,
        undefined,
        0,
        tf.Reduction.SUM,
      );
      return [ce.dataSync()[0], tf.argMax(logits, 1).dataSync() as Int32Array] as const;
    });
    lossSum += loss;
    for (let i = 0; i < n; i++) {
      predictions[start + i] = preds[i];
      if (preds[i] === split.labels[start + i]) correct += 1;
    }
    opts.onBatch?.(start + n);
  }
  return { loss: lossSum / Math.max(1, split.count), accuracy: correct / Math.max(1, split.count), predictions };
}
