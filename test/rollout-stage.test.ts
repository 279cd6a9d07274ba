// The attention_rollout stage's work after loading: a tiny random ViT on synthetic test images.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { initBackend } from '../src/ml/backend.js';
import { createAugmenter } from '../src/ml/augment/index.js';
import { writeDataInfo, writeSplit, type DataInfo, type Split } from '../src/ml/dataset.js';
import { classTokenRollout, pooledRollout } from '../src/ml/rollout.js';
import { createVit, forward, saveCheckpoint, tfjsKernels, type VitConfig } from '../src/ml/vit/index.js';
import { stage, writeRollout } from '../src/kinds/attention_rollout.js';
import type { AttentionRolloutSettings } from '../src/kinds/settings.js';
import type { StageContext, UpstreamArtefacts } from '../src/stage-kind/types.js';
import { TINY_VIT } from './fixtures/vit-configs.js';

before(async () => {
  await initBackend('wasm', 1);
});

const cfg: VitConfig = { ...TINY_VIT, imageSize: 32, classes: 10, patchSize: 8 };
const classes = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
const info: DataInfo = {
  classes,
  imageSize: 32,
  channels: 3,
  mean: [0.49, 0.48, 0.45],
  std: [0.25, 0.24, 0.26],
  counts: { train: 0, val: 0, test: 40 },
};

function syntheticTest(n: number): Split {
  let x = 12345;
  const next = () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x >>> 24;
  };
  return {
    images: Uint8Array.from({ length: n * 32 * 32 * 3 }, next),
    labels: Uint8Array.from({ length: n }, (_, i) => (i * 7) % 10),
    count: n,
  };
}

const settings: AttentionRolloutSettings = {
  images: 6,
  include_misclassified: true,
  checkpoint: 'best',
  method: 'abnar_zuidema',
  head_fusion: 'mean',
  discard_ratio: 0.5,
  upsample: 'bicubic',
  colormap: 'viridis',
  columns: 2,
  scale: 2,
  batch_size: 16,
};

/** Test images `indices` scaled to [0, 1] and normalised with the data's statistics, by hand. */
function normalisedByHand(split: Split, indices: number[]): tf.Tensor4D {
  const per = 32 * 32 * 3;
  const pix = new Float32Array(indices.length * per);
  indices.forEach((idx, k) => {
    for (let j = 0; j < per; j++)
      pix[k * per + j] = (split.images[idx * per + j] / 255 - info.mean[j % 3]) / info.std[j % 3];
  });
  return tf.tensor4d(pix, [indices.length, 32, 32, 3]);
}

/** Minimal .npy reader for the checks (format details are tested in npy.test.ts). */
function readNpy(path: string): { shape: number[]; data: Float32Array } {
  const buf = readFileSync(path);
  const hlen = buf.readUInt16LE(8);
  const header = buf.subarray(10, 10 + hlen).toString('latin1');
  assert.match(header, /'descr': '<f4'/);
  const shape = /'shape': \(([^)]*)\)/
    .exec(header)![1]
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean)
    .map(Number);
  const body = buf.subarray(10 + hlen);
  return { shape, data: new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)) };
}

test('writeRollout dumps the eval-mode attention, the class-token rollout, meta and a picture', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tfpipe-rollout-'));
  const dir2 = mkdtempSync(join(tmpdir(), 'tfpipe-rollout-'));
  const model = createVit(cfg, 5);
  try {
    const testSplit = syntheticTest(40);
    const augmenter = createAugmenter([{ op: 'random_horizontal_flip' }, { op: 'normalize' }], info);
    const quiet = { progress: () => {}, signal: new AbortController().signal };
    const result = await writeRollout(
      { model, kernels: tfjsKernels, augmenter, test: testSplit, info },
      settings,
      9,
      dir,
      quiet,
    );

    const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as {
      indices: number[];
      true_labels: number[];
      predicted_labels: number[];
      misclassified: boolean[];
      classes: string[];
      method: string;
    };
    assert.equal(meta.indices.length, 6);
    assert.equal(new Set(meta.indices).size, 6);
    assert.deepEqual(
      meta.true_labels,
      meta.indices.map((i) => testSplit.labels[i]),
    );
    assert.deepEqual(
      meta.misclassified,
      meta.predicted_labels.map((p, k) => p !== meta.true_labels[k]),
    );
    assert.ok(meta.misclassified.filter(Boolean).length >= 2, 'at least a quarter misclassified');
    assert.deepEqual(result, { images: 6, misclassified: meta.misclassified.filter(Boolean).length });
    assert.equal(meta.method, 'abnar_zuidema');
    assert.deepEqual(meta.classes, classes);

    // Independent forward pass on the same images, normalised by hand (no flip at eval time).
    const x = normalisedByHand(testSplit, meta.indices);
    const out = forward(model, x, { training: false, returnAttention: true }, tfjsKernels);
    const logits = (await out.logits.array()) as number[][];
    const expectedPred = logits.map((row) => row.indexOf(Math.max(...row)));
    const expectedAtt = await tf.stack(out.attention!, 1).data();
    tf.dispose([x, out.logits, ...out.attention!]);
    assert.deepEqual(meta.predicted_labels, expectedPred);

    const att = readNpy(join(dir, 'attention.npy'));
    const T = (32 / 8) ** 2 + 1;
    assert.deepEqual(att.shape, [6, 2, 2, T, T]);
    for (let i = 0; i < att.data.length; i++)
      assert.ok(Math.abs(att.data[i] - expectedAtt[i]) < 1e-4, `attention[${i}]`);
    for (let r = 0; r < att.data.length / T; r += 7) {
      let s = 0;
      for (let c = 0; c < T; c++) s += att.data[r * T + c];
      assert.ok(Math.abs(s - 1) < 1e-4, 'post-softmax rows sum to 1');
    }

    const roll = readNpy(join(dir, 'rollout.npy'));
    assert.deepEqual(roll.shape, [6, T - 1]);
    const perImage = 2 * 2 * T * T;
    for (let k = 0; k < 6; k++) {
      const want = classTokenRollout(
        att.data.subarray(k * perImage, (k + 1) * perImage),
        { layers: 2, heads: 2, tokens: T },
        {
          method: 'abnar_zuidema',
          headFusion: 'mean',
          discardRatio: 0.5,
        },
      );
      assert.deepEqual(Array.from(roll.data.subarray(k * (T - 1), (k + 1) * (T - 1))), Array.from(want));
    }

    // 6 images, 2 per row, 3 cells each of 64 px: 6 slots across, 3 rows.
    const png = await sharp(readFileSync(join(dir, 'rollout.png'))).metadata();
    assert.equal(png.format, 'png');
    assert.ok(png.width! >= 6 * 64 && png.height! >= 3 * 64, `${png.width}x${png.height}`);

    // Same seed, same model: byte-identical dumps.
    await writeRollout({ model, kernels: tfjsKernels, augmenter, test: testSplit, info }, settings, 9, dir2, quiet);
    assert.ok(readFileSync(join(dir, 'attention.npy')).equals(readFileSync(join(dir2, 'attention.npy'))));
    assert.ok(readFileSync(join(dir, 'rollout.png')).equals(readFileSync(join(dir2, 'rollout.png'))));
  } finally {
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
    rmSync(dir2, { recursive: true, force: true });
  }
});

test('with a conv tokenizer and sequence pooling the rollout follows the pooling weights over the token grid', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tfpipe-rollout-'));
  const conv: VitConfig = {
    ...cfg,
    tokenizer: 'conv',
    convLayers: 2,
    convChannels: 4,
    pool: 'seq',
    posEmbedding: 'none',
  };
  const model = createVit(conv, 6);
  try {
    const testSplit = syntheticTest(40);
    const augmenter = createAugmenter([{ op: 'normalize' }], info);
    const quiet = { progress: () => {}, signal: new AbortController().signal };
    await writeRollout({ model, kernels: tfjsKernels, augmenter, test: testSplit, info }, settings, 9, dir, quiet);
    const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as { indices: number[]; readout: string };
    assert.match(meta.readout, /sequence pooling's weights \(no class token/);
    assert.match(meta.readout, /receptive field through the 2-layer conv tokenizer/);
    const T = 8 * 8; // 32 / 2^2 per side, no class token
    const att = readNpy(join(dir, 'attention.npy'));
    assert.deepEqual(att.shape, [6, 2, 2, T, T]);
    const roll = readNpy(join(dir, 'rollout.npy'));
    assert.deepEqual(roll.shape, [6, T]);

    // The pooling weights from an independent forward pass on the same images.
    const x = normalisedByHand(testSplit, meta.indices);
    const out = forward(model, x, { training: false, returnAttention: true }, tfjsKernels);
    const pool = (await out.pool!.array()) as number[][];
    tf.dispose([x, out.logits, out.pool!, ...out.attention!]);
    const perImage = 2 * 2 * T * T;
    for (let k = 0; k < 6; k++) {
      const want = pooledRollout(
        att.data.subarray(k * perImage, (k + 1) * perImage),
        { layers: 2, heads: 2, tokens: T, classToken: false },
        { method: 'abnar_zuidema', headFusion: 'mean', discardRatio: 0.5 },
        pool[k],
      );
      const got = roll.data.subarray(k * T, (k + 1) * T);
      for (let j = 0; j < T; j++) assert.ok(Math.abs(got[j] - want[j]) < 1e-5, `rollout[${k}][${j}]`);
    }
  } finally {
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the stage loads the chosen checkpoint and the test split from its upstream folders', async () => {
  const root = mkdtempSync(join(tmpdir(), 'tfpipe-rollout-stage-'));
  const model = createVit(cfg, 11);
  try {
    const dirs = Object.fromEntries(['data', 'aug', 'train', 'out'].map((n) => [n, join(root, n)]));
    for (const d of Object.values(dirs)) mkdirSync(d);
    const testSplit = syntheticTest(40);
    const empty: Split = { images: new Uint8Array(0), labels: new Uint8Array(0), count: 0 };
    await writeDataInfo(dirs.data, info);
    await writeSplit(dirs.data, 'test', testSplit);
    await writeSplit(dirs.data, 'train', empty);
    await writeSplit(dirs.data, 'val', empty);
    await saveCheckpoint(model, join(dirs.train, 'last'));
    const up = (name: string, kind: string, settings: UpstreamArtefacts['settings']): UpstreamArtefacts => ({
      name,
      kind,
      key: name,
      dir: dirs[name],
      settings,
      result: {},
    });
    const ctx: StageContext<AttentionRolloutSettings> = {
      pipeline: 't',
      name: 'rollout',
      kind: 'attention_rollout',
      key: 'k',
      seed: 3,
      settings: { ...settings, checkpoint: 'last', method: 'report', images: 4 },
      runtime: { backend: 'wasm', threads: 1 },
      outDir: dirs.out,
      pipelineDir: root,
      cacheDir: root,
      inputs: {
        data: up('data', 'cifar10', {}),
        aug: up('aug', 'augmentation', { ops: [{ op: 'normalize' }] }),
        train: up('train', 'train', {}),
      },
      resolveInput: (p: string) => p,
      progress: () => {},
      log: () => {},
      signal: new AbortController().signal,
    };
    const result = await stage.run(ctx);
    assert.equal(result.images, 4);
    const meta = JSON.parse(readFileSync(join(dirs.out, 'meta.json'), 'utf8')) as {
      method: string;
      checkpoint: string;
      rollout_shape: number[];
    };
    assert.equal(meta.method, 'report');
    assert.equal(meta.checkpoint, 'last');
    assert.deepEqual(meta.rollout_shape, [4, 16]);
    assert.deepEqual(readNpy(join(dirs.out, 'attention.npy')).shape, [4, 2, 2, 17, 17]);
    // 'best' was never written: the stage must say so rather than fall back silently.
    await assert.rejects(
      stage.run({ ...ctx, settings: { ...ctx.settings, checkpoint: 'best' } }),
      /\/best holds no readable ViT checkpoint: ENOENT: .*best\/model\.json/,
    );
  } finally {
    model.dispose();
    rmSync(root, { recursive: true, force: true });
  }
});
