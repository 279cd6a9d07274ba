// The cifar10 stage's work, free of runner types so tests can call it directly:
// fetch or read the source, verify, decode, split, subset, compute statistics, write splits.
import { join } from 'node:path';
import type { DataInfo, Split, SplitName } from '../dataset.js';
import { writeDataInfo, writeSplit } from '../dataset.js';
import { createRng, deriveSeed } from '../rng.js';
import { CHANNELS, IMAGE_SIZE, OFFICIAL_ARCHIVE_MD5, OFFICIAL_URL, TEST_FILE, TRAIN_FILES } from './constants.js';
import { downloadCached, isUrl } from './download.js';
import { channelStats, decodeRecords } from './records.js';
import { readCifarSource, type CifarFiles } from './source.js';
import { balancedSubset, splitIndices, take } from './split.js';

export type StatsOver = 'all_train' | 'train_split';

export interface PrepareOptions {
  /** http(s) URL, or an absolute path to a .tar.gz or an extracted folder. */
  source: string;
  /** md5 of a downloaded archive; undefined = the official archive's md5 for the official URL, else unchecked. */
  md5?: string;
  validationFraction: number;
  limitTrain?: number;
  limitVal?: number;
  limitTest?: number;
  statsOver: StatsOver;
  seed: number;
  /** Shared download cache (downloads land in <cacheDir>/downloads). */
  cacheDir: string;
  outDir: string;
  progress?: (message: string, fraction?: number) => void;
  signal?: AbortSignal;
}

export interface Prepared {
  info: DataInfo;
  splits: Record<SplitName, Split>;
}

/** Validation images taken out of `n` training images. */
export function validationCount(n: number, fraction: number): number {
  return Math.round(n * fraction);
}

export async function prepareCifar10(o: PrepareOptions): Promise<Prepared> {
  const progress = o.progress ?? (() => {});
  let path = o.source;
  if (isUrl(o.source)) {
    const md5 = o.md5 ?? (o.source === OFFICIAL_URL ? OFFICIAL_ARCHIVE_MD5 : undefined);
    path = await downloadCached(o.source, join(o.cacheDir, 'downloads'), {
      md5,
      signal: o.signal,
      onProgress: (fraction, bytes) => progress(`downloading ${(bytes / 1e6).toFixed(1)} MB`, fraction),
    });
  }
  progress(`reading ${path}`, 0);
  const files = await readCifarSource(path, (fraction, name) => progress(`reading ${name}`, fraction));
  o.signal?.throwIfAborted();
  return prepareFromFiles(files, o);
}

/** Everything after reading: split, subset, statistics, write. Exposed so tests read the archive once. */
export async function prepareFromFiles(
  files: CifarFiles,
  o: Omit<PrepareOptions, 'source' | 'md5' | 'cacheDir'>,
): Promise<Prepared> {
  const progress = o.progress ?? (() => {});
  const allTrain = decodeRecords(TRAIN_FILES.map((f) => files.bins[f]));
  const test = decodeRecords([files.bins[TEST_FILE]]);

  const splitRng = createRng(deriveSeed(o.seed, 'cifar10', 'split'));
  const { train: trainIdx, val: valIdx } = splitIndices(
    allTrain.count,
    validationCount(allTrain.count, o.validationFraction),
    splitRng,
  );
  // limit_val defaults to the limit_train share so a quick run keeps the split's proportions.
  const limitVal =
    o.limitVal ??
    (o.limitTrain !== undefined && o.validationFraction < 1
      ? Math.round((o.limitTrain * o.validationFraction) / (1 - o.validationFraction))
      : undefined);
  const subsetRng = createRng(deriveSeed(o.seed, 'cifar10', 'limit'));
  const pick = (idx: Int32Array, labels: Uint8Array, limit: number | undefined): Int32Array =>
    limit === undefined ? idx : balancedSubset(idx, labels, limit, subsetRng);
  const allTestIdx = Int32Array.from({ length: test.count }, (_, i) => i);
  const splits: Record<SplitName, Split> = {
    train: take(allTrain, pick(trainIdx, allTrain.labels, o.limitTrain)),
    val: take(allTrain, pick(valIdx, allTrain.labels, limitVal)),
    test: take(test, pick(allTestIdx, test.labels, o.limitTest)),
  };

  progress('computing channel statistics');
  const stats = channelStats(o.statsOver === 'all_train' ? allTrain.images : splits.train.images);
  const info: DataInfo = {
    classes: files.classes,
    imageSize: IMAGE_SIZE,
    channels: CHANNELS,
    mean: stats.mean,
    std: stats.std,
    counts: { train: splits.train.count, val: splits.val.count, test: splits.test.count },
    statsOver: o.statsOver,
  };
  for (const s of ['train', 'val', 'test'] as const) await writeSplit(o.outDir, s, splits[s]);
  await writeDataInfo(o.outDir, info);
  return { info, splits };
}
