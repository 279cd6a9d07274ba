// Checkpoints: round trip into a Vit, and loadable by stock tf.loadLayersModel with equal logits.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend.js';
import { createVit, forward, tfjsKernels, type VitConfig } from '../src/ml/vit/index.js';
import {
  loadCheckpoint,
  readCheckpointMetadata,
  registerVitLayers,
  saveCheckpoint,
  fileSystemHandler,
} from '../src/ml/vit/checkpoint.js';
import { TINY_VIT } from './fixtures/vit-configs.js';

const cfg = TINY_VIT;
let root = '';

before(async () => {
  await initBackend('wasm', 1);
  root = mkdtempSync(join(tmpdir(), 'tfpipe-ckpt-'));
  process.on('exit', () => rmSync(root, { recursive: true, force: true }));
});

// The default options and the Compact Transformers ones (conv kernels [3, 3, in, out], pooling weights, no class token or positions).
const OPTIONS: VitConfig[] = [
  cfg,
  { ...cfg, tokenizer: 'conv', convLayers: 2, convChannels: 5, pool: 'seq', posEmbedding: 'sincos' },
];

for (const [k, c] of OPTIONS.entries())
  test(`saveCheckpoint writes model.json + weights.bin; loadCheckpoint restores every weight (${c.tokenizer ?? 'patch'}, ${c.pool ?? 'cls'})`, async () => {
    const m = createVit(c, 3);
    const dir = join(root, `a${k}`);
    await saveCheckpoint(m, dir, { epoch: 7 });
    assert.deepEqual(readdirSync(dir).sort(), ['model.json', 'weights.bin']);
    const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
    assert.equal(json.format, 'layers-model');
    const names = json.weightsManifest[0].weights.map((w: { name: string }) => w.name).sort();
    assert.deepEqual(names, [...m.names].sort());
    assert.equal((await readCheckpointMetadata(dir)).epoch, 7);
    const back = await loadCheckpoint(dir);
    assert.deepEqual(back.config, m.config);
    back.variables.forEach((v, i) => {
      assert.deepEqual(v.dataSync(), m.variables[i].dataSync(), back.names[i]);
    });
    back.dispose();
    m.dispose();
  });

for (const [k, c] of OPTIONS.entries())
  test(`tf.loadLayersModel (file:// and an IO handler) predicts the same logits as forward (${c.tokenizer ?? 'patch'}, ${c.pool ?? 'cls'})`, async () => {
    const m = createVit(c, 5);
    const dir = join(root, `b${k}`);
    await saveCheckpoint(m, dir);
    registerVitLayers();
    const x = tf.randomNormal([3, 8, 8, 3], 0, 1, 'float32', 2) as tf.Tensor4D;
    const want = forward(m, x, { training: false }, tfjsKernels).logits;
    for (const source of [pathToFileURL(join(dir, 'model.json')).href, fileSystemHandler(dir)]) {
      const layers = await tf.loadLayersModel(source);
      const got = layers.predict(x) as tf.Tensor;
      assert.deepEqual(got.shape, [3, 4]);
      const a = got.dataSync();
      const b = want.dataSync();
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-5, `logit ${i}: ${a[i]} vs ${b[i]}`);
      got.dispose();
      layers.dispose();
    }
    tf.dispose([x, want]);
    m.dispose();
  });

test('saving over an existing checkpoint replaces it and leaves no temporary folders', async () => {
  const dir = join(root, 'c');
  const a = createVit(cfg, 1);
  const b = createVit(cfg, 2);
  await saveCheckpoint(a, dir);
  await saveCheckpoint(b, dir);
  const back = await loadCheckpoint(dir);
  assert.deepEqual(back.variables[0].dataSync(), b.variables[0].dataSync());
  assert.deepEqual(
    readdirSync(root).filter((n) => n.startsWith('c')),
    ['c'],
  );
  [a, b, back].forEach((m) => {
    m.dispose();
  });
});

test('loading something that is not a ViT checkpoint is a clear error naming the file', async () => {
  const missing = join(root, 'missing');
  await assert.rejects(
    loadCheckpoint(missing),
    new RegExp(`^Error: ${missing} holds no readable ViT checkpoint: ENOENT: .*model\\.json`),
  );
  // A folder that exists but holds no model.json.
  const empty = join(root, 'empty');
  mkdirSync(empty);
  await assert.rejects(loadCheckpoint(empty), new RegExp(`${empty} holds no readable ViT checkpoint: ENOENT`));
  // A model.json that is not JSON.
  const garbage = join(root, 'garbage');
  mkdirSync(garbage);
  writeFileSync(join(garbage, 'model.json'), '{"modelTopology": ');
  await assert.rejects(loadCheckpoint(garbage), new RegExp(`${garbage} holds no readable ViT checkpoint: .*JSON`));
  // A valid tf.io Layers model that is not a ViT: a plain dense layer, saved by stock tfjs.
  const dense = join(root, 'dense');
  const plain = tf.sequential({ layers: [tf.layers.dense({ units: 2, inputShape: [3] })] });
  await plain.save(tf.io.withSaveHandler((a) => fileSystemHandler(dense).save(a)));
  plain.dispose();
  await assert.rejects(
    loadCheckpoint(dense),
    /dense\/model\.json is not a tfpipe ViT checkpoint \(no "vit" config in userDefinedMetadata\)/,
  );
  // A ViT checkpoint whose config is not a valid ViT.
  const m = createVit(cfg, 4);
  const bad = join(root, 'bad-config');
  await saveCheckpoint(m, bad);
  const json = JSON.parse(readFileSync(join(bad, 'model.json'), 'utf8'));
  json.userDefinedMetadata.vit.patchSize = 3;
  writeFileSync(join(bad, 'model.json'), JSON.stringify(json));
  await assert.rejects(loadCheckpoint(bad), /ViT patch size 3 must divide the image size 8/);
  // A ViT checkpoint whose weights.bin was cut short (a full disk, a copy that stopped).
  const cut = join(root, 'truncated');
  await saveCheckpoint(m, cut);
  const size = statSync(join(cut, 'weights.bin')).size;
  truncateSync(join(cut, 'weights.bin'), size - 4);
  await assert.rejects(
    loadCheckpoint(cut),
    new RegExp(`truncated/weights\\.bin has ${size - 4} bytes where .*truncated/model\\.json lists ${size}`),
  );
  m.dispose();
});
