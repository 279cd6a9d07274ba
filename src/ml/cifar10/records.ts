// CIFAR-10 records (label byte + planar R, G, B) to the NHWC layout the rest of tfpipe uses, and
// per-channel normalisation statistics.
import { CHANNELS, PIXELS, RECORD_BYTES } from './constants.js';

export interface Images {
  /** N x H x W x C, RGB, uint8. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

/** Decode concatenated record files into NHWC images and labels. */
export function decodeRecords(files: Uint8Array[]): Images {
  const count = files.reduce((n, f) => {
    if (f.length % RECORD_BYTES !== 0)
      throw new Error(`CIFAR-10 record data of ${f.length} bytes is not a multiple of ${RECORD_BYTES}`);
    return n + f.length / RECORD_BYTES;
  }, 0);
  const images = new Uint8Array(count * PIXELS * CHANNELS);
  const labels = new Uint8Array(count);
  let n = 0;
  for (const f of files) {
    for (let off = 0; off < f.length; off += RECORD_BYTES, n++) {
      labels[n] = f[off];
      const dst = n * PIXELS * CHANNELS;
      for (let p = 0; p < PIXELS; p++) {
        images[dst + p * 3] = f[off + 1 + p];
        images[dst + p * 3 + 1] = f[off + 1 + PIXELS + p];
        images[dst + p * 3 + 2] = f[off + 1 + 2 * PIXELS + p];
      }
    }
  }
  return { images, labels, count };
}

export interface ChannelStats {
  /** Per channel, on the [0, 1] scale. */
  mean: number[];
  /** Population standard deviation (divide by N), on the [0, 1] scale. */
  std: number[];
}

/**
 * Mean and population std per channel of interleaved uint8 pixels, on the [0, 1] scale.
 * Counting byte values first keeps the sums exact integers, so the result does not depend on
 * accumulation order (float32 running sums over 51M values would drift around the 6th digit).
 */
export function channelStats(images: Uint8Array, channels = CHANNELS): ChannelStats {
  if (images.length === 0 || images.length % channels !== 0)
    throw new Error(`channelStats: ${images.length} bytes is not a positive multiple of ${channels}`);
  const hist = new Float64Array(256 * channels);
  for (let i = 0; i < images.length; i += channels) {
    for (let c = 0; c < channels; c++) hist[c * 256 + images[i + c]]++;
  }
  const n = images.length / channels;
  const mean: number[] = [];
  const std: number[] = [];
  for (let c = 0; c < channels; c++) {
    let s = 0;
    for (let v = 0; v < 256; v++) s += v * hist[c * 256 + v];
    const m = s / n;
    let ss = 0;
    for (let v = 0; v < 256; v++) ss += (v - m) * (v - m) * hist[c * 256 + v];
    mean.push(m / 255);
    std.push(Math.sqrt(ss / n) / 255);
  }
  return { mean, std };
}
