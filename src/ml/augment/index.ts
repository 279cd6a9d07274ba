// The training-time augmentation pipeline: an ordered list of ops applied to whole batches with
// tensor ops, every random parameter drawn from a seeded RNG (deterministic for a seed).
// Pixels are first scaled to float [0, 1] (implicitly, like the reference's step 1); label
// smoothing belongs to training, not here.
import * as tf from '@tensorflow/tfjs';
import { createRng, type Rng } from '../rng.js';
import { randomErasing } from './erase.js';
import { GeometryQueue, sampleCropOffsets, sampleFlips, sampleResizedCrops } from './geometric.js';
import { cutmix, mixup } from './mix.js';
import { applyPolicyRound, sampleRandAugment, sampleTrivialAugment } from './policy.js';
import { withDefaults, type AugmentOp, type NormalizeOp, type ResolvedOp } from './types.js';

export type { AugmentOp, ResolvedOp } from './types.js';
export { OP_DEFAULTS, withDefaults } from './types.js';

export interface DatasetStats {
  mean: number[];
  std: number[];
  classes: string[];
}

export interface Augmenter {
  /** The ops with defaults filled in. */
  readonly ops: readonly ResolvedOp[];
  /** Effective normalisation (the last normalize op), or undefined when images stay in [0, 1]. */
  readonly normalization: { mean: number[]; std: number[] } | undefined;
  /**
   * images: [B, H, W, C] with values 0..255 (int32 or float32); labels: [B] int32 class ids.
   * Returns float32 x (augmented, normalised) and y [B, classes] soft targets.
   */
  train(images: tf.Tensor4D, labels: tf.Tensor1D, seed: number): { x: tf.Tensor4D; y: tf.Tensor2D };
  /** To float [0, 1], resized to the training output size if a crop op changes it, then normalised. */
  eval(images: tf.Tensor4D): tf.Tensor4D;
  /** Back to [0, 1] for display: undoes the normalisation and clips. */
  denormalize(x: tf.Tensor4D): tf.Tensor4D;
}

function resolveNormalize(op: NormalizeOp, data: DatasetStats): { mean: number[]; std: number[] } {
  if (op.mean !== undefined || op.std !== undefined) {
    if (op.from !== undefined) throw new Error('normalize: give either from: data or mean and std, not both');
    if (op.mean === undefined || op.std === undefined) throw new Error('normalize: mean and std go together');
    return { mean: op.mean, std: op.std };
  }
  return { mean: data.mean, std: data.std };
}

/** (x - mean) / std per channel, as a fused 1x1 depthwise convolution with bias (fast on wasm). */
export function normalizeTensor(x: tf.Tensor4D, n: { mean: number[]; std: number[] }): tf.Tensor4D {
  const c = x.shape[3];
  if (n.mean.length !== c || n.std.length !== c)
    throw new Error(`normalize: mean/std have ${n.mean.length}/${n.std.length} entries for ${c} channels`);
  if (n.std.some((s) => !(s > 0))) throw new Error(`normalize: std must be positive, got ${n.std}`);
  return tf.tidy(() =>
    tf.fused.depthwiseConv2d({
      x,
      filter: tf.tensor4d(
        n.std.map((s) => 1 / s),
        [1, 1, c, 1],
      ),
      strides: 1,
      pad: 'valid',
      bias: tf.tensor1d(n.mean.map((m, i) => -m / n.std[i])),
    }),
  );
}

export function createAugmenter(ops: AugmentOp[], data: DatasetStats): Augmenter {
  const resolved = ops.map(withDefaults);
  const numClasses = data.classes.length;
  // The policy ops clip to [0, 1] and posterize/solarize read 8-bit levels: after normalize they
  // would silently destroy the images.
  const firstNorm = resolved.findIndex((o) => o.op === 'normalize');
  resolved.forEach((o, i) => {
    if ((o.op === 'rand_augment' || o.op === 'trivial_augment') && firstNorm !== -1 && i > firstNorm) {
      throw new Error(`augmentation: ${o.op} works on [0, 1] pixels and must come before normalize`);
    }
  });
  const norms = resolved.filter((o): o is NormalizeOp => o.op === 'normalize').map((o) => resolveNormalize(o, data));
  const normalization = norms.at(-1);
  const mixOps = resolved.filter((o) => o.op === 'mixup' || o.op === 'cutmix');
  if (mixOps.filter((o) => o.op === 'mixup').length > 1 || mixOps.filter((o) => o.op === 'cutmix').length > 1) {
    throw new Error('augmentation: at most one mixup and one cutmix op');
  }
  // mixup and cutmix share one draw per batch so a batch gets at most one of them: their p's are
  // consecutive slices of [0, 1) (e.g. p 0.5 each = always one, chosen 50/50).
  const pMix = mixOps.reduce((s, o) => s + o.p, 0);
  if (pMix > 1 + 1e-9)
    throw new Error(`augmentation: mixup p + cutmix p = ${pMix} exceeds 1 (a batch gets at most one of them)`);
  const outSize = resolved.reduce<number | undefined>(
    (s, o) => (o.op === 'random_resized_crop' || o.op === 'random_crop' ? o.size : s),
    undefined,
  );

  const toUnit = (images: tf.Tensor4D): tf.Tensor4D => tf.tidy(() => tf.cast(images, 'float32').div(255));

  /** Non-geometric ops; geometric ones are queued in train(). */
  function applyOp(
    op: ResolvedOp,
    x: tf.Tensor4D,
    y: tf.Tensor2D,
    rng: Rng,
    mixChoice: () => string,
  ): { x: tf.Tensor4D; y: tf.Tensor2D } {
    const [, h, w] = x.shape;
    switch (op.op) {
      case 'normalize':
        return { x: normalizeTensor(x, resolveNormalize(op, data)), y };
      case 'rand_augment': {
        let cur = x;
        for (const round of sampleRandAugment(rng, x.shape[0], op.num_ops, op.magnitude, op.num_magnitude_bins, h, w)) {
          const next = applyPolicyRound(cur, round);
          if (cur !== x) cur.dispose();
          cur = next;
        }
        return { x: cur, y };
      }
      case 'trivial_augment':
        return { x: applyPolicyRound(x, sampleTrivialAugment(rng, x.shape[0], op.num_magnitude_bins, h, w)[0]), y };
      case 'random_erasing':
        return { x: randomErasing(x, rng, op.p, op.scale, op.ratio, op.value), y };
      case 'mixup':
        return mixChoice() === 'mixup' ? mixup(x, y, rng, op.alpha) : { x, y };
      case 'cutmix':
        return mixChoice() === 'cutmix' ? cutmix(x, y, rng, op.alpha) : { x, y };
      default:
        throw new Error(`augmentation: ${op.op} is geometric and handled by the queue`);
    }
  }

  return {
    ops: resolved,
    normalization,
    train(images, labels, seed) {
      if (images.shape[0] !== labels.shape[0])
        throw new Error(`augment: ${images.shape[0]} images but ${labels.shape[0]} labels`);
      const rng = createRng(seed);
      let choice: string | undefined;
      const mixChoice = (): string => {
        if (choice === undefined) {
          const u = rng.next();
          let acc = 0;
          choice = 'none';
          for (const o of mixOps) {
            acc += o.p;
            if (u < acc) {
              choice = o.op;
              break;
            }
          }
        }
        return choice;
      };
      let x = toUnit(images);
      let y = tf.tidy(() => tf.oneHot(tf.cast(labels, 'int32'), numClasses).toFloat()) as tf.Tensor2D;
      const n = x.shape[0];
      const replaceX = (next: tf.Tensor4D): void => {
        if (next !== x) x.dispose();
        x = next;
      };
      // Consecutive flips/crops are queued and run as one cropAndResize (see geometric.ts);
      // random parameters are still drawn in op order, so fusing does not change the numbers.
      const queue = new GeometryQueue(n, x.shape[1], x.shape[2]);
      for (const op of resolved) {
        const { height, width } = queue.size;
        if (op.op === 'random_horizontal_flip') queue.flip(sampleFlips(rng, n, op.p));
        else if (op.op === 'random_resized_crop') {
          replaceX(queue.resizedCrop(x, sampleResizedCrops(rng, n, height, width, op.scale, op.ratio), op.size));
        } else if (op.op === 'random_crop') {
          replaceX(
            queue.paddedCrop(x, sampleCropOffsets(rng, n, height, width, op.size, op.padding), op.padding, op.size),
          );
        } else {
          replaceX(queue.flush(x));
          const next = applyOp(op, x, y, rng, mixChoice);
          replaceX(next.x);
          if (next.y !== y) y.dispose();
          y = next.y;
        }
      }
      replaceX(queue.flush(x));
      return { x, y };
    },
    eval(images) {
      return tf.tidy(() => {
        let x = toUnit(images);
        if (outSize !== undefined && (x.shape[1] !== outSize || x.shape[2] !== outSize)) {
          x = tf.image.resizeBilinear(x, [outSize, outSize], false, true);
        }
        for (const nz of norms) x = normalizeTensor(x, nz);
        return x;
      });
    },
    denormalize(x) {
      return tf.tidy(() => {
        let out = x;
        for (const n of [...norms].reverse()) out = out.mul(tf.tensor1d(n.std)).add(tf.tensor1d(n.mean));
        return tf.clipByValue(out, 0, 1);
      });
    },
  };
}
