// Unit tests of the cifar10 data stage on small synthetic data (no archive needed).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, mkdirSync, readdirSync, writeFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { channelStats, decodeRecords } from '../src/ml/cifar10/records.js';
import { balancedSubset, splitIndices, take } from '../src/ml/cifar10/split.js';
import { readCifarSource } from '../src/ml/cifar10/source.js';
import { downloadCached } from '../src/ml/cifar10/download.js';
import { prepareCifar10, validationCount } from '../src/ml/cifar10/prepare.js';
import { BIN_FILES } from '../src/ml/cifar10/constants.js';
import { loadSplit, writeDataInfo, writeSplit } from '../src/ml/dataset.js';
import { createRng } from '../src/ml/rng.js';

const made: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'tfpipe-cifar-'));
  made.push(d);
  return d;
};
after(() =>
  made.forEach((d) => {
    rmSync(d, { recursive: true, force: true });
  }),
);

test('decodeRecords turns planar records into NHWC', () => {
  const rec = new Uint8Array(3073 * 2);
  for (let r = 0; r < 2; r++) {
    rec[r * 3073] = 7 - r;
    for (let c = 0; c < 3; c++)
      for (let p = 0; p < 1024; p++) rec[r * 3073 + 1 + c * 1024 + p] = (p + 50 * c + 3 * r) % 256;
  }
  const d = decodeRecords([rec]);
  assert.equal(d.count, 2);
  assert.deepEqual([...d.labels], [7, 6]);
  // image 1, pixel (row 2, col 5) = p 69, channel g: (69 + 50 + 3) % 256
  assert.equal(d.images[3072 + (2 * 32 + 5) * 3 + 1], 122);
  assert.equal(d.images[(31 * 32 + 31) * 3 + 2], (1023 + 100) % 256);
  assert.throws(() => decodeRecords([new Uint8Array(3074)]), /not a multiple of 3073/);
});

test('channelStats matches a hand computation (population std, [0,1] scale)', () => {
  // two pixels: R = 0, 255; G = 51, 51; B = 102, 204
  const s = channelStats(new Uint8Array([0, 51, 102, 255, 51, 204]));
  const close = (a: number[], b: number[]): void =>
    a.forEach((v, i) => {
      assert.ok(Math.abs(v - b[i]) < 1e-12, `${a} vs ${b}`);
    });
  close(s.mean, [0.5, 0.2, 0.6]);
  close(s.std, [0.5, 0, 0.2]);
});

test('splitIndices is deterministic for a seed, disjoint, complete and sized', () => {
  const a = splitIndices(1000, validationCount(1000, 0.1), createRng(3));
  const b = splitIndices(1000, 100, createRng(3));
  const c = splitIndices(1000, 100, createRng(4));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.val, c.val);
  assert.equal(a.val.length, 100);
  assert.equal(a.train.length, 900);
  const all = new Set([...a.train, ...a.val]);
  assert.equal(all.size, 1000);
  assert.ok(
    [...a.val].every((v, i, arr) => i === 0 || arr[i - 1] < v),
    'sorted',
  );
});

test("balancedSubset balances classes and hands a short class's share to the others", () => {
  // class 0: 100 members, class 1: 100, class 2: only 5
  const labels = new Uint8Array(205);
  labels.fill(1, 100, 200);
  labels.fill(2, 200, 205);
  const idx = Int32Array.from({ length: 205 }, (_, i) => i);
  const count = (sel: Int32Array): number[] => [0, 1, 2].map((c) => [...sel].filter((i) => labels[i] === c).length);
  assert.deepEqual(count(balancedSubset(idx, labels, 12, createRng(1))), [4, 4, 4]);
  assert.deepEqual(count(balancedSubset(idx, labels, 13, createRng(1))), [5, 4, 4]);
  assert.deepEqual(count(balancedSubset(idx, labels, 30, createRng(1))), [13, 12, 5]);
  assert.deepEqual(count(balancedSubset(idx, labels, 45, createRng(1))), [20, 20, 5]);
  assert.equal(balancedSubset(idx, labels, 500, createRng(1)).length, 205);
  const s = balancedSubset(idx, labels, 45, createRng(1));
  assert.equal(new Set(s).size, 45);
  assert.deepEqual(s, balancedSubset(idx, labels, 45, createRng(1)));
});

test('writeSplit/loadSplit round-trip and loadSplit rejects a truncated split', async () => {
  const dir = tmp();
  const data = {
    images: Uint8Array.from({ length: 2 * 3072 }, (_, i) => i % 251),
    labels: new Uint8Array([3, 9]),
    count: 2,
  };
  await writeSplit(dir, 'val', data);
  await writeDataInfo(dir, {
    classes: [],
    imageSize: 32,
    channels: 3,
    mean: [0, 0, 0],
    std: [1, 1, 1],
    counts: { train: 0, val: 2, test: 0 },
  });
  const back = await loadSplit(dir, 'val');
  assert.equal(back.count, 2);
  assert.deepEqual(back.labels, data.labels);
  assert.deepEqual(back.images, data.images);
  writeFileSync(join(dir, 'val.images.u8'), data.images.subarray(0, 3072));
  await assert.rejects(loadSplit(dir, 'val'), /inconsistent/);
  const t = take(data, Int32Array.from([1]));
  assert.deepEqual([...t.labels], [9]);
  assert.deepEqual(t.images, data.images.subarray(3072));
});

function fakeBinFolder(): string {
  const dir = tmp();
  for (const f of BIN_FILES) writeFileSync(join(dir, f), new Uint8Array(3073 * 2));
  return dir;
}

test('a corrupted .bin in a folder is rejected naming the file, and the stage writes nothing', async () => {
  const src = fakeBinFolder();
  await assert.rejects(
    readCifarSource(src),
    /data_batch_1\.bin .*corrupted: md5 [0-9a-f]{32}, expected 5dd7e06a14cb22eb9f671a540d1b7c25/,
  );
  const out = tmp();
  await assert.rejects(
    prepareCifar10({
      source: src,
      validationFraction: 0.1,
      statsOver: 'all_train',
      seed: 1,
      cacheDir: tmp(),
      outDir: out,
    }),
    /data_batch_1\.bin/,
  );
  assert.deepEqual(readdirSync(out), []);
});

test('a missing .bin is named; a corrupted .bin inside a .tar.gz is named', async () => {
  const src = fakeBinFolder();
  const archive = join(tmp(), 'fake.tar.gz');
  mkdirSync(join(src, 'cifar-10-batches-bin'));
  for (const f of BIN_FILES) writeFileSync(join(src, 'cifar-10-batches-bin', f), new Uint8Array(3073));
  await tar.c({ gzip: true, file: archive, cwd: src }, ['cifar-10-batches-bin']);
  await assert.rejects(readCifarSource(archive), /data_batch_1\.bin in .*fake\.tar\.gz is corrupted/);
  const partial = tmp();
  writeFileSync(join(partial, 'test_batch.bin'), new Uint8Array(3073));
  await assert.rejects(readCifarSource(partial), /lacks data_batch_1\.bin, .*data_batch_5\.bin/);
});

async function serve(body: Buffer): Promise<{ server: Server; url: string; hits: () => number }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    if (req.url !== '/files/cifar.tar.gz') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/gzip' });
    // Two chunks so progress is reported more than once.
    res.write(body.subarray(0, body.length >> 1));
    setTimeout(() => res.end(body.subarray(body.length >> 1)), 5);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return { server, url: `http://127.0.0.1:${addr.port}/files/cifar.tar.gz`, hits: () => hits };
}

test('download: verified by md5, reported, kept once, reused from the cache', async () => {
  const body = Buffer.from(Array.from({ length: 100000 }, (_, i) => (i * 31) % 256));
  const sum = createHash('md5').update(body).digest('hex');
  const { server, url, hits } = await serve(body);
  try {
    const dir = tmp();
    const fractions: (number | undefined)[] = [];
    const path = await downloadCached(url, dir, { md5: sum, onProgress: (f) => fractions.push(f) });
    assert.deepEqual(readFileSync(path), body);
    assert.ok(fractions.length >= 2 && fractions.at(-1) === 1, `progress ${fractions}`);
    assert.deepEqual(readdirSync(dir), [path.split('/').at(-1)], 'no temp files left');
    assert.equal(await downloadCached(url, dir, { md5: sum }), path);
    assert.equal(hits(), 1, 'second call served from the cache');
  } finally {
    server.close();
  }
});

test('download: a wrong md5 is an error and leaves no file; HTTP errors are reported', async () => {
  const { server, url } = await serve(Buffer.from('not the archive'));
  try {
    const dir = tmp();
    await assert.rejects(
      downloadCached(url, dir, { md5: 'c32a1d4ab5d03f1284b67883e8d87530' }),
      /md5 [0-9a-f]{32}, expected c32a1d4ab5d03f1284b67883e8d87530/,
    );
    assert.deepEqual(readdirSync(dir), []);
    await assert.rejects(downloadCached(url.replace('cifar.tar.gz', 'missing.tar.gz'), dir), /HTTP 404/);
    assert.deepEqual(readdirSync(dir), []);
    // Through the stage's code path: the bad download is not kept in <cacheDir>/downloads.
    const cacheDir = tmp();
    await assert.rejects(
      prepareCifar10({
        source: url,
        md5: 'c32a1d4ab5d03f1284b67883e8d87530',
        validationFraction: 0.1,
        statsOver: 'all_train',
        seed: 1,
        cacheDir,
        outDir: tmp(),
      }),
      /expected c32a1d4ab5d03f1284b67883e8d87530/,
    );
    assert.ok(!existsSync(join(cacheDir, 'downloads')) || readdirSync(join(cacheDir, 'downloads')).length === 0);
  } finally {
    server.close();
  }
});
