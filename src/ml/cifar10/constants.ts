// Facts about the official CIFAR-10 binary release (Krizhevsky, 2009).

export const OFFICIAL_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz';
export const OFFICIAL_ARCHIVE_MD5 = 'c32a1d4ab5d03f1284b67883e8d87530';

export const TRAIN_FILES = [
  'data_batch_1.bin',
  'data_batch_2.bin',
  'data_batch_3.bin',
  'data_batch_4.bin',
  'data_batch_5.bin',
] as const;
export const TEST_FILE = 'test_batch.bin';
export type BinFile = (typeof TRAIN_FILES)[number] | typeof TEST_FILE;
export const BIN_FILES: readonly BinFile[] = [...TRAIN_FILES, TEST_FILE];

/** md5 of each data file; identical in the official archive and in rebuilt ones. */
export const BIN_MD5: Readonly<Record<BinFile, string>> = {
  'data_batch_1.bin': '5dd7e06a14cb22eb9f671a540d1b7c25',
  'data_batch_2.bin': '5ea93a67294ea407fff1d09f752e9692',
  'data_batch_3.bin': '942cd6a4bcdd0dd3c604fbe906cb4421',
  'data_batch_4.bin': 'ae636b3ba5c66a11e91e8cb52e771fcb',
  'data_batch_5.bin': '53f37980c15c3d472c316c40844f3f0d',
  'test_batch.bin': '803d5f7f4d78ea53de84dbe85f74fb6d',
};

export const IMAGE_SIZE = 32;
export const CHANNELS = 3;
export const PIXELS = IMAGE_SIZE * IMAGE_SIZE;
/** 1 label byte + R, G, B planes of 32x32 bytes each. */
export const RECORD_BYTES = 1 + CHANNELS * PIXELS;
export const RECORDS_PER_FILE = 10000;

export const CLASSES = [
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
] as const;
