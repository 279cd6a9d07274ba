// A prefetch worker (prefetch.ts): makes the training batches it is asked for, in the order asked.
import { parentPort, workerData } from 'node:worker_threads';
import { createAugmenter } from '../augment/index.js';
import { initBackend, type BackendName } from '../backend.js';
import type { WorkerInit } from './prefetch.js';
import { makeTrainBatch } from './train-batch.js';

const init = workerData as WorkerInit;
const port = parentPort;
if (!port) throw new Error('batch-worker.js runs as a worker thread');
await initBackend(init.backend as BackendName, 1);
const augmenter = createAugmenter(init.ops, init.stats);
const split = { images: new Uint8Array(init.images), labels: new Uint8Array(init.labels), count: init.count };

port.on('message', (job: { id: number; indices: Int32Array; seed: number }) => {
  try {
    const { x, y } = makeTrainBatch(split, job.indices, augmenter, job.seed, init.shape);
    const xs = Float32Array.from(x.dataSync());
    const ys = Float32Array.from(y.dataSync());
    x.dispose();
    y.dispose();
    port.postMessage({ id: job.id, x: xs, y: ys, n: job.indices.length }, [xs.buffer, ys.buffer]);
  } catch (err) {
    port.postMessage({ id: job.id, error: (err as Error).message });
  }
});
