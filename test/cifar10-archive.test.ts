// The real CIFAR-10 archive, read once and shared by every check here (~10-20 s on 2 cores).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import sharp from 'sharp';
import { readCifarSource, type CifarFiles } from '../src/ml/cifar10/source.js';
import { prepareFromFiles } from '../src/ml/cifar10/prepare.js';
import { renderSamples } from '../src/ml/cifar10/samples.js';
import { loadSplit, readDataInfo } from '../src/ml/dataset.js';

const ARCHIVE = process.env.TFPIPE_CIFAR10 ?? resolve(process.cwd(), '../shared/data/cifar-10-binary.tar.gz');
const skip = existsSync(ARCHIVE) ? false : `CIFAR-10 archive not found at ${ARCHIVE} (set TFPIPE_CIFAR10)`;

const REF_MEAN = [0.49139968, 0.48215827, 0.44653124];
const REF_STD = [0.24703233, 0.24348505, 0.26158768];

/** The first record of data_batch_1.bin, read with zlib and a hand-rolled ustar walk (not the tar package). */
function firstRecordDirect(): Uint8Array {
  const raw = gunzipSync(readFileSync(ARCHIVE));
  for (let off = 0; off + 512 <= raw.length; ) {
    const name = raw
      .subarray(off, off + 100)
      .toString('latin1')
      .replace(/\0.*$/s, '');
    if (name === '') break;
    const size = parseInt(
      raw
        .subarray(off + 124, off + 136)
        .toString('latin1')
        .replace(/\0.*$/s, '')
        .trim(),
      8,
    );
    if (name.endsWith('data_batch_1.bin')) return raw.subarray(off + 512, off + 512 + 3073);
    off += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error('data_batch_1.bin not found in archive');
}

// Each prepared copy is ~180 MB: remove them all afterwards.
const made: string[] = [];
function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}
after(() =>
  made.forEach((d) => {
    rmSync(d, { recursive: true, force: true });
  }),
);

let files: CifarFiles;
let fullDir: string;
before(async () => {
  if (skip) return;
  files = await readCifarSource(ARCHIVE);
  fullDir = tmp('tfpipe-cifar-full-');
  await prepareFromFiles(files, { validationFraction: 0.1, statsOver: 'all_train', seed: 1234, outDir: fullDir });
});

test('full archive: counts, class names, split files sizes', { skip }, async () => {
  const info = await readDataInfo(fullDir);
  assert.deepEqual(info.classes, [
    'airplane',
    'automobile',
    'bird',
    'cat',
    'deer',
    'dog',
    'frog',
    'horse',
    'ship',
    'truck',
  ]);
  assert.deepEqual(info.counts, { train: 45000, val: 5000, test: 10000 });
  assert.equal(statSync(join(fullDir, 'train.images.u8')).size, 45000 * 3072);
  const test = await loadSplit(fullDir, 'test');
  const perClass = new Array(10).fill(0);
  for (const l of test.labels) perClass[l]++;
  assert.deepEqual(perClass, new Array(10).fill(1000));
  const train = await loadSplit(fullDir, 'train');
  const val = await loadSplit(fullDir, 'val');
  const all = new Array(10).fill(0);
  for (const l of [...train.labels, ...val.labels]) all[l]++;
  assert.deepEqual(all, new Array(10).fill(5000));
});

test('full archive: channel statistics over the 50,000 match the reference to 1e-6', { skip }, async () => {
  const info = await readDataInfo(fullDir);
  info.mean.forEach((m, c) => {
    assert.ok(Math.abs(m - REF_MEAN[c]) < 1e-6, `mean[${c}] ${m} vs ${REF_MEAN[c]}`);
  });
  info.std.forEach((s, c) => {
    assert.ok(Math.abs(s - REF_STD[c]) < 1e-6, `std[${c}] ${s} vs ${REF_STD[c]}`);
  });
  assert.equal(info.statsOver, 'all_train');
});

test('full archive: the first record decodes to the bytes read directly from the archive', { skip }, async () => {
  const rec = firstRecordDirect();
  // Record 0 lands in train or val depending on the split; find it as the lowest index of either.
  const train = await loadSplit(fullDir, 'train');
  const val = await loadSplit(fullDir, 'val');
  // Both splits keep source order, so record 0 is the first image of whichever split holds it.
  const candidates = [train, val].map((s) => ({ label: s.labels[0], px: s.images.subarray(0, 3072) }));
  const match = candidates.find((c) => {
    if (c.label !== rec[0]) return false;
    for (let p = 0; p < 1024; p++) {
      for (let ch = 0; ch < 3; ch++) if (c.px[p * 3 + ch] !== rec[1 + ch * 1024 + p]) return false;
    }
    return true;
  });
  assert.ok(match, `record 0 (label ${rec[0]}) is the first image of train or val, in NHWC`);
  assert.equal(rec[0], 6, 'the first CIFAR-10 training image is a frog');
});

test('limits: class-balanced subsets, proportional validation, stats over the split differ', { skip }, async () => {
  const dir = tmp('tfpipe-cifar-lim-');
  await prepareFromFiles(files, {
    validationFraction: 0.1,
    limitTrain: 1000,
    limitTest: 500,
    statsOver: 'train_split',
    seed: 1234,
    outDir: dir,
  });
  const info = await readDataInfo(dir);
  assert.deepEqual(info.counts, { train: 1000, val: 111, test: 500 });
  const hist = (labels: Uint8Array): number[] => {
    const h = new Array(10).fill(0);
    for (const l of labels) h[l]++;
    return h;
  };
  assert.deepEqual(hist((await loadSplit(dir, 'train')).labels), new Array(10).fill(100));
  assert.deepEqual(hist((await loadSplit(dir, 'test')).labels), new Array(10).fill(50));
  const v = hist((await loadSplit(dir, 'val')).labels);
  assert.ok(Math.max(...v) - Math.min(...v) <= 1, `val balanced: ${v}`);
  assert.ok(
    Math.abs(info.mean[0] - REF_MEAN[0]) > 1e-6 && Math.abs(info.mean[0] - REF_MEAN[0]) < 0.02,
    'train_split stats are over the 1000 images',
  );
  // Same seed -> same subset, and the validation images come out of the full run's validation split.
  const full = await loadSplit(fullDir, 'val');
  const lim = await loadSplit(dir, 'val');
  const key = (px: Uint8Array, i: number): string => Buffer.from(px.subarray(i * 3072, i * 3072 + 64)).toString('hex');
  const fullKeys = new Set(Array.from({ length: full.count }, (_, i) => key(full.images, i)));
  for (let i = 0; i < lim.count; i++)
    assert.ok(fullKeys.has(key(lim.images, i)), 'limited val image comes from the same validation split');
});

test('samples.png renders one column per class', { skip }, async () => {
  const png = await renderSamples(await loadSplit(fullDir, 'train'), files.classes, 2);
  const meta = await sharp(png).metadata();
  assert.equal(meta.format, 'png');
  assert.ok((meta.width ?? 0) >= 10 * 64 && (meta.height ?? 0) >= 2 * 64);
});

test('the cifar10 stage: resolves a local source, writes data.json, splits and samples.png', { skip }, async () => {
  const { stage } = await import('../src/kinds/cifar10.js');
  const { localPathSettings } = await import('../src/config/path-settings.js');
  const { Ajv } = await import('ajv');
  const { SCHEMA_KEYWORDS } = await import('../src/config/validate.js');
  const settings: Record<string, unknown> = {
    kind: 'cifar10',
    source: basename(ARCHIVE),
    limit_train: 200,
    limit_test: 50,
  };
  const ajv = new Ajv({ strict: true, useDefaults: true, allErrors: true });
  for (const keyword of SCHEMA_KEYWORDS) ajv.addKeyword({ keyword });
  assert.ok(ajv.compile(stage.schema)(settings));
  // source is the stage's one local input (its content enters the key); a URL is not.
  assert.deepEqual(localPathSettings(stage.schema, settings as never), [
    { path: ['source'], value: basename(ARCHIVE) },
  ]);
  assert.deepEqual(
    localPathSettings(stage.schema, { ...settings, source: 'https://example.org/c.tar.gz' } as never),
    [],
  );
  const outDir = tmp('tfpipe-cifar-stage-');
  const messages: string[] = [];
  const result = await stage.run({
    pipeline: 't',
    name: 'data',
    kind: 'cifar10',
    key: 'k',
    settings: settings as never,
    seed: 5,
    runtime: { backend: 'cpu', threads: 0 },
    outDir,
    inputs: {},
    pipelineDir: outDir,
    cacheDir: outDir,
    resolveInput: (p: string) => join(dirname(ARCHIVE), p),
    progress: (u) => {
      if (u.message) messages.push(u.message);
    },
    log: () => {},
    signal: new AbortController().signal,
  });
  assert.deepEqual(result.counts, { train: 200, val: 22, test: 50 });
  assert.ok(
    messages.some((m) => m.startsWith('reading data_batch')),
    'extraction progress reported',
  );
  assert.deepEqual((await readDataInfo(outDir)).counts, { train: 200, val: 22, test: 50 });
  assert.equal((await sharp(join(outDir, 'samples.png')).metadata()).format, 'png');
});
