// Flips and crops of a float batch [B, H, W, C], each sample with its own parameters.
// On the wasm backend tf.reverse, tf.where and tf.gather are slow (10-30 ms per 128 CIFAR images)
// while cropAndResize is ~3 ms, so every geometric op here is a cropAndResize box: a flip is a box
// with x1 > x2, and a flip next to a crop folds into the crop's box (GeometryQueue), so the
// reference's flip + random-resized-crop costs one kernel call.
import * as tf from '@tensorflow/tfjs';
import type { Rng } from '../rng.js';
import { resizeBoxInPadded, sampleResizedCrop, type PixelBox } from './sampling.js';
import type { Range } from './types.js';

type Box = [number, number, number, number];

interface PendingCrop {
  boxes: Box[];
  size: number;
  method: 'bilinear' | 'nearest';
  /** 'edge': replicate the border pixel once (resized crops); a number: zero padding of that width. */
  pad: 'edge' | number;
}

/** Mirror a normalised box left-right within a symmetric frame and sample it right to left. */
const mirrored = (b: Box): Box => [b[0], 1 - b[1], b[2], 1 - b[3]];
/** Same region, sampled right to left (flips the crop's output). */
const reversed = (b: Box): Box => [b[0], b[3], b[2], b[1]];

/**
 * tfjs-backend-wasm 4.22's CropAndResize takes a row-memcpy shortcut when a box's width equals the
 * crop width in pixels (and, for bilinear, its own test finds no fractional offset); the shortcut
 * ignores x1 and truncates the row index, so it returns wrong pixels for boxes not starting at
 * column 0. Stretch such boxes by 1e-4 pixel so the exact kernel runs. The whole-image box
 * [0, 0, 1, 1] is left alone: the shortcut is right (and fast) there.
 */
export function avoidWasmCropShortcut(
  b: Box,
  imageHeight: number,
  imageWidth: number,
  cropHeight: number,
  cropWidth: number,
  method: 'bilinear' | 'nearest',
): Box {
  const [y1, x1, y2, x2] = b;
  if (!(x2 > x1) || (x1 === 0 && y1 === 0 && x2 === 1 && y2 === 1)) return b;
  const m1 = imageWidth - 1;
  if (Math.abs(1 + (x2 - x1) * m1 - cropWidth) > 1e-3) return b;
  if (method === 'bilinear') {
    // The kernel's test (its y factor uses the height, not height - 1), with slack for float32.
    const nearInt = (v: number): boolean => Math.abs(v - Math.round(v)) < 1e-3;
    const hScale = cropHeight > 1 ? ((y2 - y1) * (imageHeight - 1)) / (cropHeight - 1) : 0;
    const wScale = cropWidth > 1 ? ((x2 - x1) * m1) / (cropWidth - 1) : 0;
    const yFactor = cropHeight > 1 ? y1 * imageHeight + hScale : 0.5 * (y1 + y2) * (imageHeight - 1);
    const xFactor = cropWidth > 1 ? x1 * m1 + wScale : 0.5 * (x1 + x2) * m1;
    if (!(nearInt(yFactor) && nearInt(xFactor))) return b;
  }
  return [y1, x1, y2, x2 + 1e-4 / m1];
}

function runCrop(x: tf.Tensor4D, c: PendingCrop): tf.Tensor4D {
  const n = x.shape[0];
  return tf.tidy(() => {
    let src: tf.Tensor4D = x;
    if (c.pad === 'edge')
      src = tf.mirrorPad(
        x,
        [
          [0, 0],
          [1, 1],
          [1, 1],
          [0, 0],
        ],
        'symmetric',
      );
    else if (c.pad > 0)
      src = tf.pad(x, [
        [0, 0],
        [c.pad, c.pad],
        [c.pad, c.pad],
        [0, 0],
      ]);
    const [, height, width] = src.shape;
    const coords = tf.tensor2d(
      c.boxes.flatMap((b) => avoidWasmCropShortcut(b, height, width, c.size, c.size, c.method)),
      [n, 4],
    );
    const ind = tf.range(0, n, 1, 'int32') as tf.Tensor1D;
    return tf.image.cropAndResize(src, coords, ind, [c.size, c.size], c.method);
  });
}

/**
 * Collects consecutive flips and crops and runs them as one cropAndResize. Parameters are drawn by
 * the caller in op order, so the result equals applying the ops one at a time.
 */
export class GeometryQueue {
  private flips: boolean[] | null = null;
  private crop: PendingCrop | null = null;

  constructor(
    private readonly n: number,
    private height: number,
    private width: number,
  ) {}

  /** Spatial size of the batch once the queue is flushed. */
  get size(): { height: number; width: number } {
    return { height: this.height, width: this.width };
  }

  get empty(): boolean {
    return this.crop === null && (this.flips === null || !this.flips.some(Boolean));
  }

  flip(flags: boolean[]): void {
    if (this.crop !== null) {
      const c = this.crop;
      c.boxes = c.boxes.map((b, i) => (flags[i] ? reversed(b) : b));
    } else {
      const prev = this.flips;
      this.flips = flags.map((f, i) => f !== (prev?.[i] ?? false));
    }
  }

  /** boxes: pixel rectangles in the current (queued) frame; output size x size. */
  resizedCrop(x: tf.Tensor4D, boxes: PixelBox[], size: number): tf.Tensor4D {
    const out = this.crop === null ? x : this.flush(x);
    const coords = boxes.map((b) => resizeBoxInPadded(b, this.height, this.width, size, size));
    this.setCrop({ boxes: coords, size, method: 'bilinear', pad: 'edge' });
    return out;
  }

  /** offsets: top-left corners in the zero-padded current frame. */
  paddedCrop(x: tf.Tensor4D, offsets: { top: number; left: number }[], padding: number, size: number): tf.Tensor4D {
    const out = this.crop === null ? x : this.flush(x);
    const hp = this.height + 2 * padding - 1;
    const wp = this.width + 2 * padding - 1;
    // Corners on pixel centres with nearest sampling: exact copies of the padded pixels.
    const coords = offsets.map(
      (o): Box => [o.top / hp, o.left / wp, (o.top + size - 1) / hp, (o.left + size - 1) / wp],
    );
    this.setCrop({ boxes: coords, size, method: 'nearest', pad: padding });
    return out;
  }

  private setCrop(c: PendingCrop): void {
    // A flip queued before the crop: the crop was placed in the flipped frame.
    if (this.flips !== null) {
      const f = this.flips;
      c.boxes = c.boxes.map((b, i) => (f[i] ? mirrored(b) : b));
      this.flips = null;
    }
    this.crop = c;
    this.height = c.size;
    this.width = c.size;
  }

  /** Run whatever is queued on x (the batch as it was when the queue started); x itself when nothing is. */
  flush(x: tf.Tensor4D): tf.Tensor4D {
    let out = x;
    if (this.crop !== null) out = runCrop(x, this.crop);
    else if (this.flips?.some(Boolean)) {
      out = runCrop(x, {
        boxes: this.flips.map((f): Box => (f ? [0, 1, 1, 0] : [0, 0, 1, 1])),
        size: x.shape[1],
        method: 'nearest',
        pad: 0,
      });
    }
    this.crop = null;
    this.flips = null;
    if (out !== x && out.shape[0] !== this.n) throw new Error('GeometryQueue: batch size changed');
    return out;
  }
}

export function sampleFlips(rng: Rng, n: number, p: number): boolean[] {
  return Array.from({ length: n }, () => rng.next() < p);
}

export function sampleResizedCrops(rng: Rng, n: number, h: number, w: number, scale: Range, ratio: Range): PixelBox[] {
  return Array.from({ length: n }, () => sampleResizedCrop(rng, h, w, scale, ratio));
}

export function sampleCropOffsets(
  rng: Rng,
  n: number,
  h: number,
  w: number,
  size: number,
  padding: number,
): { top: number; left: number }[] {
  const hp = h + 2 * padding;
  const wp = w + 2 * padding;
  if (size > hp || size > wp) throw new Error(`random_crop: size ${size} exceeds the padded image ${hp}x${wp}`);
  return Array.from({ length: n }, () => ({ top: rng.int(0, hp - size + 1), left: rng.int(0, wp - size + 1) }));
}

// One-op-at-a-time forms (tests, previews).

export function flipWhere(x: tf.Tensor4D, flip: boolean[]): tf.Tensor4D {
  const q = new GeometryQueue(x.shape[0], x.shape[1], x.shape[2]);
  q.flip(flip);
  const out = q.flush(x);
  return out === x ? x.clone() : out;
}

export function resizedCrops(x: tf.Tensor4D, boxes: PixelBox[], size: number): tf.Tensor4D {
  const q = new GeometryQueue(x.shape[0], x.shape[1], x.shape[2]);
  q.resizedCrop(x, boxes, size);
  return q.flush(x);
}

export function cropsAt(
  x: tf.Tensor4D,
  padding: number,
  offsets: { top: number; left: number }[],
  size: number,
): tf.Tensor4D {
  const q = new GeometryQueue(x.shape[0], x.shape[1], x.shape[2]);
  q.paddedCrop(x, offsets, padding, size);
  return q.flush(x);
}

export function randomHorizontalFlip(x: tf.Tensor4D, rng: Rng, p: number): tf.Tensor4D {
  return flipWhere(x, sampleFlips(rng, x.shape[0], p));
}

export function randomResizedCrop(x: tf.Tensor4D, rng: Rng, size: number, scale: Range, ratio: Range): tf.Tensor4D {
  return resizedCrops(x, sampleResizedCrops(rng, x.shape[0], x.shape[1], x.shape[2], scale, ratio), size);
}

export function randomCrop(x: tf.Tensor4D, rng: Rng, size: number, padding: number): tf.Tensor4D {
  return cropsAt(x, padding, sampleCropOffsets(rng, x.shape[0], x.shape[1], x.shape[2], size, padding), size);
}

/**
 * Images idx[0], idx[1], ... of x, as a new batch: tf.gather's job, done by cropAndResize with
 * whole-image boxes and nearest sampling (exact copies; ~5x faster than gather on wasm).
 */
export function selectImages(x: tf.Tensor4D, idx: ArrayLike<number>): tf.Tensor4D {
  const [, h, w] = x.shape;
  const m = idx.length;
  return tf.tidy(() => {
    const boxes = tf.tensor2d(
      new Float32Array(m * 4).map((_, k) => (k % 4 >= 2 ? 1 : 0)),
      [m, 4],
    );
    const ind = tf.tensor1d(Int32Array.from(idx), 'int32');
    return tf.image.cropAndResize(x, boxes, ind, [h, w], 'nearest');
  });
}
