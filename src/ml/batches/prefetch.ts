// Training batches made ahead of the step on worker threads, so that a fast model step (the GPU's)
// does not wait for the augmentation of the next batch. Each worker holds its own tfjs backend
// (the main thread's kind, one thread) and an augmenter; the split's images are shared, not
// copied. A batch is makeTrainBatch of its indices and seed wherever it is made, so the numbers
// are those of the main thread's path; batches come back in the order they were asked for.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { AugmentOp, DatasetStats } from '../augment/index.js';
import type { Split } from '../dataset.js';
import type { BatchShape } from './train-batch.js';

/** What a worker is started with (batch-worker.ts). */
export interface WorkerInit {
  backend: string;
  ops: AugmentOp[];
  stats: DatasetStats;
  shape: BatchShape;
  /** The split's images and labels in shared memory. */
  images: SharedArrayBuffer;
  labels: SharedArrayBuffer;
  count: number;
}

export interface BatchJob {
  indices: Int32Array;
  seed: number;
}

export interface ReadyBatch {
  /** [n, H, W, C] float32, augmented and normalised. */
  x: Float32Array;
  /** [n, classes] soft targets. */
  y: Float32Array;
  n: number;
}

/** Workers for a GPU step: every core but the one the main thread uses, at most 15 (source.ts batchWorkers). */
export function prefetchWorkers(): number {
  return Math.max(1, Math.min(15, availableParallelism() - 1));
}

function shared(bytes: Uint8Array): SharedArrayBuffer {
  const sab = new SharedArrayBuffer(bytes.length);
  new Uint8Array(sab).set(bytes);
  return sab;
}

export class BatchPrefetcher {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, { resolve: (b: ReadyBatch) => void; reject: (e: Error) => void }>();
  private readonly results = new Map<number, Promise<ReadyBatch>>();
  private nextAsked = 0;
  private nextTaken = 0;
  private failure: Error | undefined;

  /**
   * jobs yields the batches in the order the step takes them; up to `ahead` are in the making at
   * once. The split's bytes are copied once into shared memory for all workers.
   */
  constructor(
    count: number,
    init: Omit<WorkerInit, 'images' | 'labels' | 'count'> & { split: Split },
    private readonly jobs: Iterator<BatchJob>,
    private readonly ahead = 2 * count,
  ) {
    const { split, ...rest } = init;
    const data: WorkerInit = {
      ...rest,
      images: shared(split.images),
      labels: shared(split.labels),
      count: split.count,
    };
    for (let i = 0; i < count; i++) {
      const w = new Worker(new URL('./batch-worker.js', import.meta.url), { workerData: data });
      w.on('message', (m: { id: number; x?: Float32Array; y?: Float32Array; n?: number; error?: string }) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (!p) return;
        if (m.error !== undefined) p.reject(new Error(`batch worker: ${m.error}`));
        else p.resolve({ x: m.x as Float32Array, y: m.y as Float32Array, n: m.n as number });
      });
      w.on('error', (e) => this.fail(e));
      this.workers.push(w);
    }
    this.fill();
  }

  /** The next batch in order; undefined when the jobs are exhausted. */
  async next(): Promise<ReadyBatch | undefined> {
    if (this.failure) throw this.failure;
    const r = this.results.get(this.nextTaken);
    if (!r) return undefined;
    this.results.delete(this.nextTaken);
    this.nextTaken++;
    const batch = await r;
    this.fill();
    return batch;
  }

  async close(): Promise<void> {
    this.fail(new Error('batch prefetcher closed'));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private fill(): void {
    while (!this.failure && this.nextAsked - this.nextTaken < this.ahead) {
      const job = this.jobs.next();
      if (job.done) return;
      const id = this.nextAsked++;
      const promise = new Promise<ReadyBatch>((resolve, reject) => this.pending.set(id, { resolve, reject }));
      promise.catch(() => {}); // rejections surface through next()
      this.results.set(id, promise);
      this.workers[id % this.workers.length].postMessage({ id, indices: job.value.indices, seed: job.value.seed });
    }
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
  }
}
