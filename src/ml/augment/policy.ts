// RandAugment (Cubuk et al. 2020) and TrivialAugment-Wide (Müller & Hutter 2021) with
// torchvision's op list and magnitude tables, on float images in [0, 1], fill 0, nearest
// interpolation for geometric ops (torchvision's defaults).
// All 14 torchvision ops: identity, shear_x/y, translate_x/y, rotate, brightness, color, contrast,
// sharpness, posterize, solarize, auto_contrast, equalize. Equalize runs in JS on the few images
// that draw it (a per-channel histogram lookup has no cheap tensor form).
//
// Each image draws its own op; images are grouped by op, each group transformed in one batched
// call (all geometric ops together in one tf.image.transform), then put back in order by a gather.
import * as tf from '@tensorflow/tfjs';
import type { Rng } from '../rng.js';
import { selectImages } from './geometric.js';

export const POLICY_OPS = [
  'identity',
  'shear_x',
  'shear_y',
  'translate_x',
  'translate_y',
  'rotate',
  'brightness',
  'color',
  'contrast',
  'sharpness',
  'posterize',
  'solarize',
  'auto_contrast',
  'equalize',
] as const;
export type PolicyOp = (typeof POLICY_OPS)[number];

const linspace = (a: number, b: number, n: number): number[] =>
  Array.from({ length: n }, (_, i) => (n === 1 ? a : a + ((b - a) * i) / (n - 1)));

/** torch.round: halves go to the even neighbour. */
const roundHalfEven = (v: number): number => {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

interface OpMeta {
  magnitudes: number[] | null;
  signed: boolean;
}

/** torchvision's magnitude tables: RandAugment (wide = false) or TrivialAugmentWide (wide = true). */
export function magnitudeTable(bins: number, height: number, width: number, wide: boolean): Record<PolicyOp, OpMeta> {
  const amount = linspace(0, wide ? 0.99 : 0.9, bins);
  return {
    identity: { magnitudes: null, signed: false },
    shear_x: { magnitudes: linspace(0, wide ? 0.99 : 0.3, bins), signed: true },
    shear_y: { magnitudes: linspace(0, wide ? 0.99 : 0.3, bins), signed: true },
    translate_x: { magnitudes: linspace(0, wide ? 32 : (150 / 331) * width, bins), signed: true },
    translate_y: { magnitudes: linspace(0, wide ? 32 : (150 / 331) * height, bins), signed: true },
    rotate: { magnitudes: linspace(0, wide ? 135 : 30, bins), signed: true },
    brightness: { magnitudes: amount, signed: true },
    color: { magnitudes: amount, signed: true },
    contrast: { magnitudes: amount, signed: true },
    sharpness: { magnitudes: amount, signed: true },
    posterize: {
      magnitudes: Array.from({ length: bins }, (_, i) => 8 - roundHalfEven(i / ((bins - 1) / (wide ? 6 : 4)))),
      signed: false,
    },
    solarize: { magnitudes: linspace(1, 0, bins), signed: false },
    auto_contrast: { magnitudes: null, signed: false },
    equalize: { magnitudes: null, signed: false },
  };
}

export interface PolicyChoice {
  op: PolicyOp;
  magnitude: number;
}

/** RandAugment: `numOps` rounds, each image drawing a uniform op at the fixed magnitude bin. */
export function sampleRandAugment(
  rng: Rng,
  n: number,
  numOps: number,
  magnitude: number,
  bins: number,
  h: number,
  w: number,
): PolicyChoice[][] {
  if (!(magnitude >= 0 && magnitude < bins))
    throw new Error(`rand_augment: magnitude ${magnitude} must be in [0, ${bins - 1}]`);
  const table = magnitudeTable(bins, h, w, false);
  return Array.from({ length: numOps }, () =>
    Array.from({ length: n }, () => {
      const op = POLICY_OPS[rng.int(0, POLICY_OPS.length)];
      const meta = table[op];
      let m = meta.magnitudes === null ? 0 : meta.magnitudes[Math.trunc(magnitude)];
      if (meta.signed && rng.next() < 0.5) m = -m;
      return { op, magnitude: m };
    }),
  );
}

/** TrivialAugment-Wide: one op per image with a uniformly drawn magnitude bin. */
export function sampleTrivialAugment(rng: Rng, n: number, bins: number, h: number, w: number): PolicyChoice[][] {
  const table = magnitudeTable(bins, h, w, true);
  return [
    Array.from({ length: n }, () => {
      const op = POLICY_OPS[rng.int(0, POLICY_OPS.length)];
      const meta = table[op];
      let m = meta.magnitudes === null ? 0 : meta.magnitudes[rng.int(0, meta.magnitudes.length)];
      if (meta.signed && rng.next() < 0.5) m = -m;
      return { op, magnitude: m };
    }),
  ];
}

const GRAY = [0.2989, 0.587, 0.114];

function grayscale(x: tf.Tensor4D): tf.Tensor4D {
  // A 1x1 convolution: broadcasting over the channel axis is slow on wasm.
  return tf.conv2d(x, tf.tensor4d(GRAY, [1, 1, 3, 1]), 1, 'valid');
}

/** torchvision _blend: clamp(f * img + (1 - f) * degenerate, 0, 1). */
function blend(x: tf.Tensor4D, degenerate: tf.Tensor, f: tf.Tensor): tf.Tensor4D {
  return tf.clipByValue(degenerate.add(x.sub(degenerate).mul(f)), 0, 1) as tf.Tensor4D;
}

/** Output-to-input pixel map (tf.image.transform's 8 numbers) for one geometric op. */
export function affineFor(op: PolicyOp, m: number, h: number, w: number): number[] {
  switch (op) {
    case 'shear_x':
      return [1, m, 0, 0, 1, 0, 0, 0];
    case 'shear_y':
      return [1, 0, 0, m, 1, 0, 0, 0];
    // torchvision passes int(magnitude) pixels.
    case 'translate_x':
      return [1, 0, -Math.trunc(m), 0, 1, 0, 0, 0];
    case 'translate_y':
      return [1, 0, 0, 0, 1, -Math.trunc(m), 0, 0];
    case 'rotate': {
      // Counter-clockwise by m degrees about the image centre; the map goes output -> input.
      const t = (m * Math.PI) / 180;
      const c = Math.cos(t);
      const s = Math.sin(t);
      const cx = (w - 1) / 2;
      const cy = (h - 1) / 2;
      return [c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy, 0, 0];
    }
    default:
      throw new Error(`${op} is not geometric`);
  }
}

const GEOMETRIC = new Set<PolicyOp>(['shear_x', 'shear_y', 'translate_x', 'translate_y', 'rotate']);

/** torchvision _equalize_single_image on one uint8 channel (PIL's algorithm), in place. */
export function equalizeChannel(v: Uint8Array): void {
  const hist = new Array<number>(256).fill(0);
  for (const p of v) hist[p]++;
  let last = 255;
  while (last > 0 && hist[last] === 0) last--;
  const step = Math.floor((v.length - hist[last]) / 255);
  if (step === 0) return;
  const lut = new Uint8Array(256);
  let cum = 0;
  for (let i = 0; i < 256; i++) {
    lut[i] = Math.min(255, Math.floor((cum + Math.floor(step / 2)) / step));
    cum += hist[i];
  }
  for (let i = 0; i < v.length; i++) v[i] = lut[v[i]];
}

function equalize(x: tf.Tensor4D): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const data = x.dataSync();
  const out = new Float32Array(data.length);
  const plane = new Uint8Array(h * w);
  for (let s = 0; s < n; s++) {
    for (let ch = 0; ch < c; ch++) {
      for (let p = 0; p < h * w; p++) plane[p] = Math.round(data[(s * h * w + p) * c + ch] * 255);
      equalizeChannel(plane);
      for (let p = 0; p < h * w; p++) out[(s * h * w + p) * c + ch] = plane[p] / 255;
    }
  }
  return tf.tensor4d(out, x.shape);
}

/** Apply one op to a group of images, magnitudes per image. */
function applyColorOp(op: PolicyOp, x: tf.Tensor4D, mags: number[]): tf.Tensor4D {
  const n = x.shape[0];
  const per = (v: number[]): tf.Tensor => tf.tensor4d(v, [n, 1, 1, 1]);
  switch (op) {
    case 'brightness':
      return tf.clipByValue(x.mul(per(mags.map((m) => 1 + m))), 0, 1) as tf.Tensor4D;
    case 'color':
      return blend(x, grayscale(x), per(mags.map((m) => 1 + m)));
    case 'contrast':
      return blend(x, tf.mean(grayscale(x), [1, 2, 3], true), per(mags.map((m) => 1 + m)));
    case 'sharpness': {
      // torchvision: 3x3 smoothing kernel [[1,1,1],[1,5,1],[1,1,1]]/13 on the interior, borders kept.
      const [, h, w, c] = x.shape;
      const k = tf
        .tensor2d([1, 1, 1, 1, 5, 1, 1, 1, 1], [3, 3])
        .div(13)
        .reshape([3, 3, 1, 1])
        .tile([1, 1, c, 1]) as tf.Tensor4D;
      const smooth = tf.depthwiseConv2d(x, k, 1, 'same');
      const interior = tf.pad(tf.ones([1, h - 2, w - 2, 1]), [
        [0, 0],
        [1, 1],
        [1, 1],
        [0, 0],
      ]);
      const degenerate = smooth.mul(interior).add(x.mul(tf.scalar(1).sub(interior)));
      return blend(x, degenerate, per(mags.map((m) => 1 + m)));
    }
    case 'posterize': {
      // Keep the top `bits` bits of the uint8 value.
      const q = per(mags.map((b) => 2 ** (8 - b)));
      return tf
        .floor(tf.round(x.mul(255)).div(q))
        .mul(q)
        .div(255) as tf.Tensor4D;
    }
    case 'solarize': {
      const over = tf.cast(tf.greaterEqual(x, per(mags)), 'float32');
      return x.add(over.mul(tf.scalar(1).sub(x.mul(2)))) as tf.Tensor4D;
    }
    case 'auto_contrast': {
      const lo = tf.min(x, [1, 2], true);
      const hi = tf.max(x, [1, 2], true);
      // torchvision: a flat channel is left as is (scale 1, offset 0).
      const flat = tf.cast(tf.lessEqual(hi, lo), 'float32');
      const range = hi.sub(lo).add(flat);
      const offset = lo.mul(tf.scalar(1).sub(flat));
      return tf.clipByValue(x.sub(offset).div(range), 0, 1) as tf.Tensor4D;
    }
    case 'equalize':
      return equalize(x);
    default:
      throw new Error(`${op} is not a colour op`);
  }
}

/** Apply one round of per-image choices to the batch. */
export function applyPolicyRound(x: tf.Tensor4D, choices: PolicyChoice[]): tf.Tensor4D {
  const [n, h, w] = x.shape;
  if (choices.length !== n) throw new Error(`policy: ${choices.length} choices for ${n} images`);
  return tf.tidy(() => {
    const groups = new Map<string, number[]>();
    choices.forEach((c, i) => {
      const key = GEOMETRIC.has(c.op) ? 'geometric' : c.op;
      const g = groups.get(key) ?? [];
      g.push(i);
      groups.set(key, g);
    });
    if (groups.size === 1 && groups.has('identity')) return x.clone();
    const pieces: tf.Tensor4D[] = [];
    const order: number[] = [];
    for (const [key, idx] of groups) {
      const sub = idx.length === n ? x : selectImages(x, idx);
      let out: tf.Tensor4D;
      if (key === 'identity') out = sub;
      else if (key === 'geometric') {
        const mats = tf.tensor2d(
          idx.flatMap((i) => affineFor(choices[i].op, choices[i].magnitude, h, w)),
          [idx.length, 8],
        );
        out = tf.image.transform(sub, mats, 'nearest', 'constant', 0);
      } else
        out = applyColorOp(
          key as PolicyOp,
          sub,
          idx.map((i) => choices[i].magnitude),
        );
      pieces.push(out);
      order.push(...idx);
    }
    const inverse = new Int32Array(n);
    order.forEach((src, pos) => {
      inverse[src] = pos;
    });
    const all = pieces.length === 1 ? pieces[0] : tf.concat(pieces, 0);
    return selectImages(all, inverse);
  });
}
