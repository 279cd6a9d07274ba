// How fast training batches are made (cut, augmented with the flagship's ops, label-smoothed): on
// the main thread, and by 1..N prefetch workers (src/ml/batches/), in images per second, with
// the CPU named. The GPU step of the flagship takes ~18,000 img/s at batch 128 on an H200, so
// this is what says how many cores its input pipeline needs. Random images (the speed does not
// depend on their content). One JSON line per case to outputs/bench/batches.jsonl.
//   node dist/bench/batches.js [--batch 128] [--seconds 4] [--workers 1,2]
import { appendFileSync, mkdirSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../src/ml/backend.js';
import { createAugmenter, type AugmentOp } from '../src/ml/augment/index.js';
import { batchSource } from '../src/ml/batches/source.js';
import { packageRoot } from '../src/ground/paths.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const batchSize = Number(arg('batch', '128'));
const seconds = Number(arg('seconds', '4'));
const workerCounts = arg(
  'workers',
  Array.from({ length: Math.max(1, availableParallelism() - 1) }, (_, i) => i + 1).join(','),
)
  .split(',')
  .map(Number);

const ops: AugmentOp[] = [
  { op: 'random_crop', size: 32, padding: 4 },
  { op: 'random_horizontal_flip', p: 0.5 },
  { op: 'rand_augment', num_ops: 2, magnitude: 9 },
  { op: 'normalize', from: 'data' },
  { op: 'random_erasing', p: 0.25 },
] as AugmentOp[];
const stats = {
  mean: [0.49, 0.48, 0.45],
  std: [0.25, 0.24, 0.26],
  classes: Array.from({ length: 10 }, (_, i) => `c${i}`),
};
const count = 8192;
const images = new Uint8Array(count * 32 * 32 * 3);
for (let i = 0; i < images.length; i++) images[i] = (i * 2654435761) >>> 24;
const split = { images, labels: Uint8Array.from({ length: count }, (_, i) => i % 10), count };

await initBackend('wasm', 1);
const outDir = join(process.env.TFPIPE_OUTPUTS ?? join(packageRoot, 'outputs'), 'bench');
mkdirSync(outDir, { recursive: true });
const cpu = cpus()[0]?.model ?? 'unknown CPU';
for (const workers of [0, ...workerCounts]) {
  const source = batchSource({
    split,
    seed: 1,
    batchSize,
    shape: { imageSize: 32, channels: 3, classes: 10, labelSmoothing: 0.1 },
    augmenter: createAugmenter(ops, stats),
    ops,
    stats,
    firstEpoch: 0,
    epochs: () => 1000,
    workers,
  });
  const perEpoch = Math.ceil(count / batchSize);
  let made = 0;
  let start = 0;
  for (let i = 0; ; i++) {
    const { x, y, n } = await source.next(Math.floor(i / perEpoch), i % perEpoch);
    x.dispose();
    y.dispose();
    if (i === 2 * Math.max(1, workers))
      start = performance.now(); // workers warmed up
    else if (start) made += n;
    if (start && performance.now() - start > seconds * 1000) break;
  }
  const row = {
    cpu,
    cores: availableParallelism(),
    workers,
    batch: batchSize,
    img_s: Math.round(made / ((performance.now() - start) / 1000)),
    note: 'flagship augmentation (crop, flip, RandAugment 2x9, normalize, erasing), label smoothing; wasm backend',
  };
  await source.close();
  console.log(JSON.stringify(row));
  appendFileSync(join(outDir, 'batches.jsonl'), `${JSON.stringify(row)}\n`);
}
