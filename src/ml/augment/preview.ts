// Pictures of what augmentation does: preview.png (originals beside augmented versions) and
// patches.png (a batch of 9 as training sees it, and the same 9 cut into their ViT patch grid).
import * as tf from '@tensorflow/tfjs';
import { concatImages, renderGrid, type GridCell } from '../../render/image-grid.js';
import { deriveSeed } from '../rng.js';
import type { Augmenter } from './index.js';

export interface PreviewBatch {
  /** count x size x size x channels, uint8 NHWC. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  imageSize: number;
  channels: number;
}

/** Augmented (normalised) batch back to displayable uint8 images. */
function toDisplay(aug: Augmenter, x: tf.Tensor4D): { pixels: Uint8Array[]; size: number } {
  const [n, h, w, c] = x.shape;
  if (h !== w || c !== 3) throw new Error(`preview: expected square RGB images, got ${h}x${w}x${c}`);
  const data = tf.tidy(() => aug.denormalize(x).mul(255).round()).dataSync();
  const per = h * w * c;
  return {
    pixels: Array.from({ length: n }, (_, i) => Uint8Array.from(data.subarray(i * per, (i + 1) * per))),
    size: h,
  };
}

/** "cat" for a one-hot target, else the classes with weight, e.g. "cat .62\ndog .38". */
export function targetCaption(target: ArrayLike<number>, classes: string[]): string {
  const parts = Array.from(target, (v, k) => ({ v, k }))
    .filter((e) => e.v > 0.005)
    .sort((a, b) => b.v - a.v);
  if (parts.length === 1) return classes[parts[0].k];
  return parts
    .slice(0, 2)
    .map((e) => `${classes[e.k]} ${e.v.toFixed(2).replace(/^0/, '')}`)
    .join('\n');
}

function batchTensors(b: PreviewBatch, count: number): { x: tf.Tensor4D; y: tf.Tensor1D } {
  const n = Math.min(count, b.count);
  const per = b.imageSize * b.imageSize * b.channels;
  return {
    x: tf.tensor4d(Int32Array.from(b.images.subarray(0, n * per)), [n, b.imageSize, b.imageSize, b.channels], 'int32'),
    y: tf.tensor1d(Int32Array.from(b.labels.subarray(0, n)), 'int32'),
  };
}

export async function renderPreview(
  aug: Augmenter,
  batch: PreviewBatch,
  classes: string[],
  opts: { images: number; versions: number; seed: number },
): Promise<Buffer> {
  const { x, y } = batchTensors(batch, opts.images);
  const n = x.shape[0];
  const per = batch.imageSize * batch.imageSize * batch.channels;
  const versions: { pixels: Uint8Array[]; size: number; captions: string[] }[] = [];
  for (let v = 0; v < opts.versions; v++) {
    const out = aug.train(x, y, deriveSeed(opts.seed, 'augmentation-preview', v));
    const targets = out.y.arraySync();
    versions.push({ ...toDisplay(aug, out.x), captions: targets.map((t) => targetCaption(t, classes)) });
    out.x.dispose();
    out.y.dispose();
  }
  x.dispose();
  y.dispose();
  const cells: GridCell[] = [];
  for (let i = 0; i < n; i++) {
    cells.push({
      pixels: batch.images.subarray(i * per, (i + 1) * per),
      width: batch.imageSize,
      height: batch.imageSize,
      caption: classes[batch.labels[i]],
      border: '#444444',
    });
    for (const v of versions)
      cells.push({ pixels: v.pixels[i], width: v.size, height: v.size, caption: v.captions[i] });
  }
  return renderGrid(cells, { columns: 1 + opts.versions, scale: 2, title: 'original (framed) and augmented versions' });
}

/**
 * One image cut into patch x patch tiles with `gap` background pixels between them, e.g. 32x32
 * with patch 4 -> an 8x8 grid, 39x39 pixels.
 */
export function patchGridPixels(
  pixels: Uint8Array,
  size: number,
  patch: number,
  gap: number,
  background = 255,
): { pixels: Uint8Array; size: number } {
  if (size % patch !== 0) throw new Error(`patch size ${patch} does not divide the image size ${size}`);
  const k = size / patch;
  const out = size + (k - 1) * gap;
  const dst = new Uint8Array(out * out * 3).fill(background);
  for (let y = 0; y < size; y++) {
    const oy = y + Math.floor(y / patch) * gap;
    for (let x = 0; x < size; x++) {
      const ox = x + Math.floor(x / patch) * gap;
      dst.set(pixels.subarray((y * size + x) * 3, (y * size + x) * 3 + 3), (oy * out + ox) * 3);
    }
  }
  return { pixels: dst, size: out };
}

export async function renderPatches(
  aug: Augmenter,
  batch: PreviewBatch,
  classes: string[],
  opts: { patch: number; seed: number },
): Promise<Buffer> {
  const { x, y } = batchTensors(batch, 9);
  const out = aug.train(x, y, deriveSeed(opts.seed, 'augmentation-patches'));
  const targets = out.y.arraySync();
  const shown = toDisplay(aug, out.x);
  [x, y, out.x, out.y].forEach((t) => {
    t.dispose();
  });
  const captions = targets.map((t) => targetCaption(t, classes));
  const images: GridCell[] = shown.pixels.map((p, i) => ({
    pixels: p,
    width: shown.size,
    height: shown.size,
    caption: captions[i],
  }));
  const cut: GridCell[] = shown.pixels.map((p, i) => {
    const g = patchGridPixels(p, shown.size, opts.patch, 1);
    return { pixels: g.pixels, width: g.size, height: g.size, caption: captions[i] };
  });
  const k = shown.size / opts.patch;
  const left = await renderGrid(images, { columns: 3, scale: 3, gap: 6, title: 'a training batch' });
  const right = await renderGrid(cut, {
    columns: 3,
    scale: 3,
    gap: 6,
    title: `${k}x${k} patches of ${opts.patch}x${opts.patch}`,
  });
  return concatImages([left, right], { gap: 24 });
}
