// Where the train stage gets its batches: made on the main thread when the step needs it, or
// made ahead by worker threads (prefetch.ts) when the step runs elsewhere (the GPU) and would
// otherwise wait for the augmentation. Both give the numbers of makeTrainBatch for the batch's
// indices and seed, so the choice never changes a result.
import * as tf from '@tensorflow/tfjs';
import type { Augmenter, AugmentOp, DatasetStats } from '../augment/index.js';
import type { Split } from '../dataset.js';
import { createRng, deriveSeed } from '../rng.js';
import { BatchPrefetcher, prefetchWorkers, type BatchJob } from './prefetch.js';
import { makeTrainBatch, type BatchShape } from './train-batch.js';

/** The order in which epoch `epoch` visits the split's images. */
export function epochOrder(seed: number, epoch: number, count: number): Int32Array {
  return createRng(deriveSeed(seed, 'shuffle', epoch)).permutation(count);
}

/** The images of batch b of an epoch in that order. */
export function batchIndices(order: Int32Array, b: number, batchSize: number): Int32Array {
  return order.subarray(b * batchSize, Math.min((b + 1) * batchSize, order.length));
}

/**
 * How many workers make batches ahead: every core but one (at most 15) when the step runs on the
 * GPU, none otherwise; TFPIPE_BATCH_WORKERS=N overrides (0: the main thread).
 */
export function batchWorkers(stepOnGpu: boolean): number {
  const forced = process.env.TFPIPE_BATCH_WORKERS;
  if (forced === undefined || forced === '') return stepOnGpu ? prefetchWorkers() : 0;
  const n = Number(forced);
  if (!Number.isInteger(n) || n < 0) throw new Error(`TFPIPE_BATCH_WORKERS must be a whole number, got "${forced}"`);
  return n;
}

export interface BatchSource {
  /** Workers making batches ahead (0: the main thread makes them). */
  readonly workers: number;
  /** Batch b of the epoch (the caller asks in order: epoch by epoch, b = 0, 1, ...). */
  next(epoch: number, b: number): Promise<{ x: tf.Tensor4D; y: tf.Tensor2D; n: number }>;
  close(): Promise<void>;
}

export interface SourceOptions {
  split: Split;
  seed: number;
  batchSize: number;
  shape: BatchShape;
  augmenter: Augmenter;
  ops: AugmentOp[];
  stats: DatasetStats;
  /** First epoch and how many there are (read again as batches are asked ahead: it can shrink). */
  firstEpoch: number;
  epochs: () => number;
  /** Worker threads to make batches ahead; 0 = the main thread. */
  workers: number;
}

export function batchSource(o: SourceOptions): BatchSource {
  const batches = Math.ceil(o.split.count / o.batchSize);
  const seedOf = (epoch: number, b: number) => deriveSeed(o.seed, 'augment', epoch, b);
  if (o.workers <= 0) {
    let order: { epoch: number; order: Int32Array } | undefined;
    return {
      workers: 0,
      async next(epoch, b) {
        if (order?.epoch !== epoch) order = { epoch, order: epochOrder(o.seed, epoch, o.split.count) };
        const idx = batchIndices(order.order, b, o.batchSize);
        return { ...makeTrainBatch(o.split, idx, o.augmenter, seedOf(epoch, b), o.shape), n: idx.length };
      },
      async close() {},
    };
  }
  // The jobs in the order the loop takes them, each tagged so that a mix-up cannot go unnoticed.
  const tags: { epoch: number; b: number }[] = [];
  function* jobs(): Generator<BatchJob> {
    for (let epoch = o.firstEpoch; epoch < o.epochs(); epoch++) {
      const order = epochOrder(o.seed, epoch, o.split.count);
      for (let b = 0; b < batches; b++) {
        tags.push({ epoch, b });
        yield { indices: batchIndices(order, b, o.batchSize).slice(), seed: seedOf(epoch, b) };
      }
    }
  }
  // The workers augment on the kind of backend the main thread would (the same numbers).
  const backend = tf.getBackend();
  const prefetcher = new BatchPrefetcher(
    o.workers,
    { backend, ops: o.ops, stats: o.stats, shape: o.shape, split: o.split },
    jobs(),
  );
  let taken = 0;
  return {
    workers: o.workers,
    async next(epoch, b) {
      const batch = await prefetcher.next();
      const tag = tags[taken++];
      if (!batch || tag.epoch !== epoch || tag.b !== b)
        throw new Error(`internal: batch ${epoch}:${b} asked, ${tag ? `${tag.epoch}:${tag.b}` : 'none'} made`);
      const { imageSize: s, channels: c, classes } = o.shape;
      return { x: tf.tensor4d(batch.x, [batch.n, s, s, c]), y: tf.tensor2d(batch.y, [batch.n, classes]), n: batch.n };
    },
    close: () => prefetcher.close(),
  };
}
