// The augmentation stage: its schema (defaults, per-op errors) and a run on a tiny fake data dir.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import sharp from 'sharp';
import { stage } from '../src/kinds/augmentation.js';
import type { AugmentationSettings } from '../src/kinds/settings.js';
import { OP_DEFAULTS } from '../src/ml/augment/types.js';
import { writeDataInfo, writeSplit } from '../src/ml/dataset.js';
import type { JsonObject, StageContext } from '../src/stage-kind/types.js';
import { patchGridPixels, targetCaption } from '../src/ml/augment/preview.js';

before(async () => {
  await tf.setBackend('wasm'); // the runner does this for kinds with usesTensorflow
});

const made: string[] = [];
after(() =>
  made.forEach((d) => {
    rmSync(d, { recursive: true, force: true });
  }),
);

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, discriminator: true });
const validate = ajv.compile(stage.schema);

interface OpSchema {
  properties: Record<string, { const?: string; default?: unknown }>;
}

test('schema defaults for every op equal the code defaults', () => {
  const branches = ((stage.schema.properties as JsonObject).ops as unknown as { items: { oneOf: OpSchema[] } }).items
    .oneOf;
  const names = branches.map((b) => b.properties.op.const);
  assert.deepEqual(names.sort(), Object.keys(OP_DEFAULTS).sort());
  for (const b of branches) {
    const name = b.properties.op.const as keyof typeof OP_DEFAULTS;
    const fromSchema = Object.fromEntries(
      Object.entries(b.properties)
        .filter(([, v]) => v.default !== undefined)
        .map(([k, v]) => [k, v.default]),
    );
    assert.deepEqual(fromSchema, { ...OP_DEFAULTS[name] }, name);
  }
});

test('schema fills defaults and names the one op that is wrong', () => {
  const ok = { kind: 'augmentation', ops: [{ op: 'random_crop' }, { op: 'mixup', p: 0.3 }] };
  assert.ok(validate(ok), JSON.stringify(validate.errors));
  assert.deepEqual(ok.ops, [
    { op: 'random_crop', size: 32, padding: 4 },
    { op: 'mixup', p: 0.3, alpha: 0.8 },
  ]);
  const dflt: Record<string, unknown> = { kind: 'augmentation' };
  assert.ok(validate(dflt));
  assert.deepEqual(dflt.ops, [
    { op: 'random_horizontal_flip', p: 0.5 },
    { op: 'random_resized_crop', size: 32, scale: [0.8, 1], ratio: [0.9, 1.1] },
    { op: 'normalize', from: 'data' },
  ]);
  assert.equal(
    validate({ kind: 'augmentation', ops: [{ op: 'random_horizontal_flip' }, { op: 'random_crop', paddin: 4 }] }),
    false,
  );
  const errors = validate.errors ?? [];
  assert.ok(
    errors.every((e) => e.instancePath === '/ops/1'),
    JSON.stringify(errors),
  );
  assert.ok(errors.some((e) => e.keyword === 'additionalProperties' && e.params.additionalProperty === 'paddin'));
  assert.equal(validate({ kind: 'augmentation', ops: [{ op: 'normalize', mean: [0.5, 0.5, 0.5] }] }), false);
  assert.equal(validate({ kind: 'augmentation', ops: [{ op: 'sharpen' }] }), false);
});

test('patchGridPixels puts each patch at its gapped position', () => {
  // 4x4 image, patch 2, gap 1 -> 5x5
  const pixels = Uint8Array.from({ length: 4 * 4 * 3 }, (_, k) => Math.floor(k / 3));
  const g = patchGridPixels(pixels, 4, 2, 1, 255);
  assert.equal(g.size, 5);
  const at = (y: number, x: number): number => g.pixels[(y * 5 + x) * 3];
  assert.equal(at(0, 0), 0);
  assert.equal(at(0, 2), 255); // gap column
  assert.equal(at(0, 3), 2);
  assert.equal(at(3, 0), 8);
  assert.equal(at(4, 4), 15);
  assert.throws(() => patchGridPixels(pixels, 4, 3, 1), /does not divide/);
});

test('targetCaption shows a class, or the two largest weights', () => {
  const classes = ['cat', 'dog', 'car'];
  assert.equal(targetCaption([0, 1, 0], classes), 'dog');
  assert.equal(targetCaption([0.62, 0, 0.38], classes), 'cat .62\ncar .38');
});

test('the stage writes preview.png and patches.png from the cifar10 stage dir', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tfpipe-aug-data-'));
  made.push(dataDir);
  const n = 12;
  const images = Uint8Array.from({ length: n * 3072 }, (_, k) => (k * 7) % 256);
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  await writeSplit(dataDir, 'train', { images, labels, count: n });
  const classes = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
  await writeDataInfo(dataDir, {
    classes,
    imageSize: 32,
    channels: 3,
    mean: [0.5, 0.5, 0.5],
    std: [0.25, 0.25, 0.25],
    counts: { train: n, val: 0, test: 0 },
  });
  const settings = {
    kind: 'augmentation' as const,
    ops: [{ op: 'random_crop' }, { op: 'random_horizontal_flip' }, { op: 'normalize' }, { op: 'cutmix', p: 1 }],
  } as unknown as AugmentationSettings;
  assert.ok(validate(settings));
  const outDir = mkdtempSync(join(tmpdir(), 'tfpipe-aug-out-'));
  made.push(outDir);
  const ctx: StageContext<AugmentationSettings> = {
    pipeline: 'test',
    name: 'augment',
    kind: 'augmentation',
    key: 'k',
    settings,
    seed: 3,
    runtime: { backend: 'wasm', threads: 0 },
    outDir,
    inputs: { data: { name: 'data', kind: 'cifar10', key: 'd', dir: dataDir, settings: {}, result: {} } },
    pipelineDir: outDir,
    cacheDir: outDir,
    resolveInput: (p) => p,
    progress: () => {},
    log: () => {},
    signal: new AbortController().signal,
  };
  const result = await stage.run(ctx);
  assert.deepEqual(result.ops, ['random_crop', 'random_horizontal_flip', 'normalize', 'cutmix']);
  assert.deepEqual(result.normalization, { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] });
  const preview = await sharp(readFileSync(join(outDir, 'preview.png'))).metadata();
  const patches = await sharp(readFileSync(join(outDir, 'patches.png'))).metadata();
  // 8 rows of 1 + 6 images at scale 2
  assert.ok((preview.width ?? 0) > 7 * 64 && (preview.height ?? 0) > 8 * 64, `${preview.width}x${preview.height}`);
  assert.ok((patches.width ?? 0) > 6 * 96 && (patches.height ?? 0) > 3 * 96, `${patches.width}x${patches.height}`);
  await assert.rejects(stage.run({ ...ctx, settings: { ...settings, preview_patch_size: 5 } }), /does not divide/);
});
