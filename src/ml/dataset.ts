// The cifar10 stage's on-disk format, shared by every stage that reads images:
//   data.json                      DataInfo below
//   <split>.images.u8              N x 32 x 32 x 3 bytes, NHWC, RGB, no header
//   <split>.labels.u8              N bytes, class ids 0..9
// Raw bytes load with one read each (a 138 MB training split in ~0.1 s) and need no parser.
import { readFile } from 'node:fs/promises';
import { writeFile } from '../cache/atomic.js';
import { join } from 'node:path';

export const DATA_INFO_FILE = 'data.json';

export type SplitName = 'train' | 'val' | 'test';
export const SPLITS: readonly SplitName[] = ['train', 'val', 'test'];

export interface Split {
  /** count x imageSize x imageSize x channels, NHWC, RGB, uint8. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

export interface DataInfo {
  classes: string[];
  imageSize: number;
  channels: number;
  /** Per-channel mean on the [0, 1] scale. */
  mean: number[];
  /** Per-channel population std on the [0, 1] scale. */
  std: number[];
  counts: Record<SplitName, number>;
  /** Which images mean/std were computed on: 'all_train' (the 50,000) or 'train_split'. */
  statsOver?: string;
}

export function splitFiles(split: SplitName): { images: string; labels: string } {
  return { images: `${split}.images.u8`, labels: `${split}.labels.u8` };
}

export async function readDataInfo(dir: string): Promise<DataInfo> {
  return JSON.parse(await readFile(join(dir, DATA_INFO_FILE), 'utf8')) as DataInfo;
}

export async function writeDataInfo(dir: string, info: DataInfo): Promise<void> {
  await writeFile(join(dir, DATA_INFO_FILE), `${JSON.stringify(info, null, 2)}\n`);
}

export async function writeSplit(dir: string, split: SplitName, data: Split): Promise<void> {
  const f = splitFiles(split);
  await writeFile(join(dir, f.images), data.images);
  await writeFile(join(dir, f.labels), data.labels);
}

/** Load one split written by the cifar10 stage; checks sizes against data.json. */
export async function loadSplit(dir: string, split: SplitName): Promise<Split> {
  const info = await readDataInfo(dir);
  const f = splitFiles(split);
  const [img, lab] = await Promise.all([readFile(join(dir, f.images)), readFile(join(dir, f.labels))]);
  const count = lab.length;
  const per = info.imageSize * info.imageSize * info.channels;
  if (img.length !== count * per || count !== info.counts[split]) {
    throw new Error(
      `${dir}: ${split} split is inconsistent: ${img.length} image bytes, ${count} labels, data.json says ${info.counts[split]} of ${per} bytes`,
    );
  }
  return {
    images: new Uint8Array(img.buffer, img.byteOffset, img.length),
    labels: new Uint8Array(lab.buffer, lab.byteOffset, lab.length),
    count,
  };
}
