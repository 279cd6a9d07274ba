// Attention rollout for one image, as plain Float32Array maths. The matrices are tiny (65x65 for a
// patch-4 CIFAR ViT) so a JS loop beats a round trip through a tfjs backend and keeps the numbers
// bit-for-bit the same on every backend.

export type RolloutMethod = 'report' | 'abnar_zuidema';
export type HeadFusion = 'mean' | 'max' | 'min';
export type UpsampleMode = 'bicubic' | 'bilinear';

export interface AttentionDims {
  layers: number;
  heads: number;
  /** Tokens: the class token, if any, then the image tokens (a square number of them). */
  tokens: number;
  /** Token 0 is a class token (absent: true, the ViT's default). */
  classToken?: boolean;
}

/** Number of leading non-image tokens (the class token). */
const specialTokens = (d: AttentionDims): number => (d.classToken === false ? 0 : 1);

export interface RolloutOptions {
  method: RolloutMethod;
  headFusion: HeadFusion;
  /** Fraction of the patch-to-patch entries of each fused attention matrix to zero (lowest first). */
  discardRatio: number;
}

/**
 * Bicubic kernel parameter. PyTorch (`F.interpolate(mode='bicubic')`) and OpenCV (`INTER_CUBIC`)
 * both use a = -0.75; the reference experiment upsampled with one of them, so this is the default.
 * (PIL and Keys' original paper use -0.5.)
 */
export const BICUBIC_A = -0.75;

function checkDims(attention: Float32Array, d: AttentionDims): void {
  const want = d.layers * d.heads * d.tokens * d.tokens;
  if (attention.length !== want) {
    throw new Error(
      `attention has ${attention.length} values; expected layers*heads*T*T = ${d.layers}*${d.heads}*${d.tokens}^2 = ${want}`,
    );
  }
}

/** Fuse the heads of one layer ([heads, T, T] starting at `offset`) into one T x T matrix. */
export function fuseHeads(
  attention: Float32Array,
  offset: number,
  heads: number,
  tokens: number,
  fusion: HeadFusion,
): Float64Array {
  const n = tokens * tokens;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let acc = attention[offset + i];
    for (let h = 1; h < heads; h++) {
      const v = attention[offset + h * n + i];
      if (fusion === 'mean') acc += v;
      else if (fusion === 'max') acc = Math.max(v, acc);
      else acc = Math.min(v, acc);
    }
    out[i] = fusion === 'mean' ? acc / heads : acc;
  }
  return out;
}

/**
 * Zero the lowest `ratio` fraction of the patch-to-patch entries, in place.
 *
 * With a class token (`special` = 1), entries in row 0 (what the class token attends to) and
 * column 0 (attention paid to the class token) are never candidates: the read-out is the class
 * token's row, and the popular vit-explain code's intent of "keep the class token" is applied to
 * all of its entries, not just (0,0). Without one (`special` = 0) every entry is a candidate. The
 * count is floor(ratio * (T-special)^2); ties are broken by position so the result is
 * deterministic.
 */
export function discardLowest(m: Float64Array, tokens: number, ratio: number, special = 1): void {
  if (!(ratio >= 0 && ratio < 1)) throw new Error(`discard_ratio must be in [0, 1), got ${ratio}`);
  const p = tokens - special;
  const count = Math.floor(ratio * p * p);
  if (count === 0) return;
  const idx: number[] = [];
  for (let r = special; r < tokens; r++) for (let c = special; c < tokens; c++) idx.push(r * tokens + c);
  idx.sort((a, b) => m[a] - m[b] || a - b);
  for (let k = 0; k < count; k++) m[idx[k]] = 0;
}

/** C = A @ B for n x n row-major matrices. */
function matmul(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k];
      if (aik === 0) continue;
      const bRow = k * n;
      const cRow = i * n;
      for (let j = 0; j < n; j++) c[cRow + j] += aik * b[bRow + j];
    }
  }
  return c;
}

function addIdentity(m: Float64Array, n: number): Float64Array {
  const out = Float64Array.from(m);
  for (let i = 0; i < n; i++) out[i * n + i] += 1;
  return out;
}

/** Divide every row by its sum, so each row is a distribution again after adding the identity. */
function normaliseRows(m: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += m[i * n + j];
    if (s === 0) continue;
    for (let j = 0; j < n; j++) m[i * n + j] /= s;
  }
}

/** The per-layer fused (and possibly discarded) attention matrices, oldest layer first. */
export function fusedLayers(attention: Float32Array, d: AttentionDims, o: RolloutOptions): Float64Array[] {
  checkDims(attention, d);
  const perLayer = d.heads * d.tokens * d.tokens;
  const out: Float64Array[] = [];
  for (let l = 0; l < d.layers; l++) {
    const m = fuseHeads(attention, l * perLayer, d.heads, d.tokens, o.headFusion);
    discardLowest(m, d.tokens, o.discardRatio, specialTokens(d));
    out.push(m);
  }
  return out;
}

/**
 * The rolled-out T x T matrix.
 *
 * - `report`: the reference report's formula as its code runs it: R starts as the first block's
 *   matrix and then every block, the first included, is multiplied in on the right:
 *   R = A_1 @ (A_1 + I) @ (A_2 + I) @ ... @ (A_L + I). A_1 appearing twice and the missing row
 *   re-normalisation are reproduced on purpose so the pipeline can match the report.
 * - `abnar_zuidema`: A' = (A + I) with each row divided by its sum, newest layer on the left:
 *   R = A_L' ... A_1'. Every row of R sums to 1. (vit-explain divides along the other axis; this
 *   does not.)
 *
 * Head fusion and discarding apply to both methods, before the identity is added.
 */
export function rolloutMatrix(attention: Float32Array, d: AttentionDims, o: RolloutOptions): Float64Array {
  const layers = fusedLayers(attention, d, o);
  const n = d.tokens;
  if (layers.length === 0) throw new Error('attention rollout needs at least one layer');
  if (o.method === 'report') {
    let r: Float64Array = Float64Array.from(layers[0]);
    for (const a of layers) r = matmul(r, addIdentity(a, n), n);
    return r;
  }
  let r: Float64Array = addIdentity(new Float64Array(n * n), n);
  for (const a of layers) {
    const ap = addIdentity(a, n);
    normaliseRows(ap, n);
    r = matmul(ap, r, n);
  }
  return r;
}

/** The class token's row of R, patch columns only (length T-1): the raw rollout. */
export function classTokenRollout(attention: Float32Array, d: AttentionDims, o: RolloutOptions): Float32Array {
  const r = rolloutMatrix(attention, d, o);
  return Float32Array.from(r.subarray(1, d.tokens));
}

/**
 * The raw rollout to the head's read-out: Σ_i w_i R[i, j] over the image tokens j, where w (length
 * T) is the weight each token has in the vector the head classifies. With a class token (w one-hot
 * at 0) that is the class token's row, as classTokenRollout; with mean or sequence pooling there is
 * no class token and the rollout follows the pooling weights instead.
 */
export function pooledRollout(
  attention: Float32Array,
  d: AttentionDims,
  o: RolloutOptions,
  weights: ArrayLike<number>,
): Float32Array {
  if (weights.length !== d.tokens)
    throw new Error(`pooling weights have ${weights.length} values; expected ${d.tokens}`);
  const r = rolloutMatrix(attention, d, o);
  const n = d.tokens;
  const first = specialTokens(d);
  const out = new Float32Array(n - first);
  for (let j = first; j < n; j++) {
    let acc = 0;
    for (let i = 0; i < n; i++) acc += weights[i] * r[i * n + j];
    out[j - first] = acc;
  }
  return out;
}

/**
 * The pixel span [start, end] (inclusive, clipped to the image) that token-grid index k sees along
 * one axis through a conv tokenizer of `layers` layers (vit.ts convTokens): a 3x3 conv widens a
 * span by one pixel on each side; a 3x3 stride-2 max-pool reads positions 2k..2k+2 of the layer
 * below.
 */
export function receptiveField(k: number, layers: number, imageSize: number): [number, number] {
  // Walk down from the token grid to the pixels: pool, then conv, per layer, top layer first.
  let lo = k;
  let hi = k;
  for (let l = 0; l < layers; l++) {
    lo = 2 * lo - 1; // pool reads 2k.., the conv below it 1 more on each side
    hi = 2 * hi + 2 + 1;
  }
  return [Math.max(0, lo), Math.min(imageSize - 1, hi)];
}

/**
 * Spread a raw rollout over a conv tokenizer's receptive fields: each pixel gets the mean of the
 * tokens whose receptive field holds it. (A patch tokenizer's tokens are disjoint patches; those
 * are upsampled instead.)
 */
export function receptiveFieldMap(raw: Float32Array, grid: number, layers: number, imageSize: number): Float32Array {
  if (raw.length !== grid * grid) throw new Error(`rollout has ${raw.length} values; expected ${grid}x${grid}`);
  const sum = new Float64Array(imageSize * imageSize);
  const count = new Float64Array(imageSize * imageSize);
  const spans = Array.from({ length: grid }, (_, k) => receptiveField(k, layers, imageSize));
  for (let gy = 0; gy < grid; gy++)
    for (let gx = 0; gx < grid; gx++) {
      const v = raw[gy * grid + gx];
      const [y0, y1] = spans[gy];
      const [x0, x1] = spans[gx];
      for (let y = y0; y <= y1; y++)
        for (let x = x0; x <= x1; x++) {
          sum[y * imageSize + x] += v;
          count[y * imageSize + x] += 1;
        }
    }
  return Float32Array.from(sum, (s, i) => (count[i] > 0 ? s / count[i] : 0));
}

function cubicWeights(t: number, a: number): [number, number, number, number] {
  // Keys' cubic convolution kernel evaluated at the distances of the 4 taps: 1+t, t, 1-t, 2-t.
  const near = (x: number) => ((a + 2) * x - (a + 3)) * x * x + 1;
  const far = (x: number) => ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return [far(t + 1), near(t), near(1 - t), far(2 - t)];
}

/**
 * Resize a single-channel h x w grid to outH x outW with half-pixel centres (align_corners=False)
 * and borders clamped, the way PyTorch's F.interpolate and OpenCV resize do.
 */
export function upsample(
  grid: Float32Array,
  h: number,
  w: number,
  outH: number,
  outW: number,
  mode: UpsampleMode,
  a: number = BICUBIC_A,
): Float32Array {
  if (grid.length !== h * w) throw new Error(`grid has ${grid.length} values; expected ${h}x${w}`);
  const out = new Float32Array(outH * outW);
  const sy = h / outH;
  const sx = w / outW;
  const at = (y: number, x: number) => grid[Math.min(h - 1, Math.max(0, y)) * w + Math.min(w - 1, Math.max(0, x))];
  for (let oy = 0; oy < outH; oy++) {
    for (let ox = 0; ox < outW; ox++) {
      let fy = (oy + 0.5) * sy - 0.5;
      let fx = (ox + 0.5) * sx - 0.5;
      if (mode === 'bilinear') {
        // PyTorch clamps negative source coordinates to 0 for linear modes, not for cubic.
        fy = Math.max(0, fy);
        fx = Math.max(0, fx);
        const y0 = Math.floor(fy);
        const x0 = Math.floor(fx);
        const ty = fy - y0;
        const tx = fx - x0;
        const top = at(y0, x0) * (1 - tx) + at(y0, x0 + 1) * tx;
        const bottom = at(y0 + 1, x0) * (1 - tx) + at(y0 + 1, x0 + 1) * tx;
        out[oy * outW + ox] = top * (1 - ty) + bottom * ty;
      } else {
        const y0 = Math.floor(fy);
        const x0 = Math.floor(fx);
        const wy = cubicWeights(fy - y0, a);
        const wx = cubicWeights(fx - x0, a);
        let acc = 0;
        for (let i = 0; i < 4; i++) {
          let row = 0;
          for (let j = 0; j < 4; j++) row += wx[j] * at(y0 - 1 + i, x0 - 1 + j);
          acc += wy[i] * row;
        }
        out[oy * outW + ox] = acc;
      }
    }
  }
  return out;
}

/** Scale to [0, 1]; a constant input carries no information and becomes all zeros. */
export function minMaxScale(v: Float32Array): Float32Array {
  let lo = Infinity;
  let hi = -Infinity;
  for (const x of v) {
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  const out = new Float32Array(v.length);
  const span = hi - lo;
  if (!(span > 0)) return out;
  for (let i = 0; i < v.length; i++) out[i] = (v[i] - lo) / span;
  return out;
}

export interface RolloutMask {
  /** The read-out over the image tokens, before mapping to pixels and scaling (length N). */
  raw: Float32Array;
  /** imageSize x imageSize, row-major, min-max scaled to [0, 1]. */
  mask: Float32Array;
  grid: number;
}

/** How tokens map back to pixels: disjoint patches (upsampled), or a conv tokenizer's receptive fields. */
export type TokenPixels = { kind: 'patch' } | { kind: 'conv'; layers: number };

/**
 * Rollout read-out for one image: the raw rollout to the class token (or to the pooling weights
 * `pool`, length T, when given) and the [0,1] mask on the image's pixels.
 */
export function rolloutMask(
  attention: Float32Array,
  d: AttentionDims,
  o: RolloutOptions & { upsample: UpsampleMode; imageSize: number; pool?: ArrayLike<number>; tokenizer?: TokenPixels },
): RolloutMask {
  const patches = d.tokens - specialTokens(d);
  const grid = Math.round(Math.sqrt(patches));
  if (grid * grid !== patches) throw new Error(`${patches} image tokens do not form a square grid`);
  const raw = o.pool ? pooledRollout(attention, d, o, o.pool) : classTokenRollout(attention, d, o);
  const tok = o.tokenizer ?? { kind: 'patch' };
  const pixels =
    tok.kind === 'conv'
      ? receptiveFieldMap(raw, grid, tok.layers, o.imageSize)
      : upsample(raw, grid, grid, o.imageSize, o.imageSize, o.upsample);
  return { raw, mask: minMaxScale(pixels), grid };
}
