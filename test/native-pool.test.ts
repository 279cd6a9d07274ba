// The native addon's worker pool once hung a tiny training run (a worker asleep, the caller waiting
// for it forever). This hammers the pool with hundreds of back-to-back small runs on several
// threads, with batch sizes 1..7 so that many parallel regions have fewer rows than threads (or a
// last chunk of a single row), and checks every result against tfjs. A hang blocks the JS thread
// inside the native call, where no in-process timer can fire, so the runs happen in a child
// process that a watchdog kills. Without the addon it reports itself skipped with the reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend.js';
import {
  createVit,
  computeGradients,
  predict,
  tfjsKernels,
  type Kernels,
  type VitConfig,
} from '../src/ml/vit/index.js';
import { nativeAvailability, nativeThreads } from '../src/ml/vit/native.js';
import { noAddon } from './native-helpers.js';

const CHILD = 'TFPIPE_POOL_HAMMER_THREADS';
const RUNS = 350;
const skip = noAddon;

// The shape of the pipeline that hung: dim 32, depth 1, dim_head 16, mlp 64; a small image keeps
// each run well under a millisecond so that the pool sees thousands of regions.
const cfg: VitConfig = {
  imageSize: 16,
  channels: 3,
  classes: 10,
  patchSize: 4,
  dim: 32,
  depth: 1,
  heads: 4,
  dimHead: 16,
  mlpDim: 64,
  dropout: 0.1,
};

interface Summary {
  runs: number;
  threads: number;
  worst: number;
  failures: string[];
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 1e-3;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let m = a.length === b.length ? 0 : Infinity;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m / scale;
}

interface Reference {
  x: tf.Tensor4D;
  t: tf.Tensor2D;
  loss: number;
  correct: number;
  grads: Record<string, Float32Array>;
  logits: Float32Array;
}

async function hammer(threads: number): Promise<Summary> {
  await initBackend('wasm', threads);
  const model = createVit(cfg, 11);
  const seed = 5;
  // One tfjs reference per batch size, computed once: tfjs is far too slow to redo per run.
  const refs: Reference[] = [];
  for (let b = 1; b <= 7; b++) {
    const x = tf.randomNormal([b, cfg.imageSize, cfg.imageSize, cfg.channels], 0, 1, 'float32', b) as tf.Tensor4D;
    const t = tf
      .oneHot(
        tf.tensor1d(
          Array.from({ length: b }, (_, i) => (i * 7 + b) % cfg.classes),
          'int32',
        ),
        cfg.classes,
      )
      .toFloat() as tf.Tensor2D;
    const g = computeGradients(model, x, t, { seed }, tfjsKernels);
    const grads: Record<string, Float32Array> = {};
    for (const [name, v] of Object.entries(g.grads)) grads[name] = v.dataSync() as Float32Array;
    tf.dispose(g.grads);
    const p = predict(model, x, b, tfjsKernels);
    refs.push({ x, t, loss: g.loss, correct: g.correct, grads, logits: p.dataSync() as Float32Array });
    p.dispose();
  }
  const available = nativeAvailability();
  if (!available.isa) throw new Error(available.detail);
  const native: Kernels = { path: 'native', isa: available.isa };

  const summary: Summary = { runs: 0, threads: nativeThreads(), worst: 0, failures: [] };
  for (let i = 0; i < RUNS; i++) {
    // Batch sizes in an order that is not a multiple of 7, so train and predict both meet every size.
    const ref = refs[(i * 3) % 7];
    const b = ref.x.shape[0];
    if (i % 2 === 0) {
      const g = computeGradients(model, ref.x, ref.t, { seed }, native);
      let d = Math.abs(g.loss - ref.loss) / Math.max(1, Math.abs(ref.loss));
      for (const [name, v] of Object.entries(g.grads)) d = Math.max(d, maxRelDiff(v.dataSync(), ref.grads[name]));
      tf.dispose(g.grads);
      if (g.correct !== ref.correct)
        summary.failures.push(`run ${i} (batch ${b}): correct ${g.correct} vs ${ref.correct}`);
      summary.worst = Math.max(summary.worst, d);
      if (!(d < 1e-4)) summary.failures.push(`run ${i} (batch ${b}, train): relative difference ${d}`);
    } else {
      const p = predict(model, ref.x, b, native);
      const d = maxRelDiff(p.dataSync(), ref.logits);
      p.dispose();
      summary.worst = Math.max(summary.worst, d);
      if (!(d < 1e-4)) summary.failures.push(`run ${i} (batch ${b}, predict): relative difference ${d}`);
    }
    summary.runs++;
  }
  return summary;
}

if (process.env[CHILD]) {
  // Child mode: run the hammer and print the summary as the last line.
  const summary = await hammer(Number(process.env[CHILD]));
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(0);
}

for (const threads of [2, 3]) {
  test(`${RUNS} back-to-back native runs on ${threads} threads (batch 1..7) all finish and match tfjs`, {
    skip,
  }, () => {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url)], {
      encoding: 'utf8',
      // Without the runner's NODE_TEST_CONTEXT the child is a plain script, not a test file.
      env: { ...process.env, NODE_TEST_CONTEXT: undefined, [CHILD]: String(threads) },
      // A watchdog for a deadlock, not a speed check: a healthy child needs a few seconds.
      timeout: 120_000,
      killSignal: 'SIGKILL',
    });
    assert.equal(r.signal, null, `the child hung (killed by the watchdog)\n${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop() as string) as Summary;
    assert.equal(summary.threads, threads);
    assert.equal(summary.runs, RUNS);
    assert.deepEqual(
      summary.failures.slice(0, 10),
      [],
      `${summary.failures.length} bad runs, worst relative difference ${summary.worst}`,
    );
  });
}
