// The ViT forward pass, loss and gradients. Activations are kept 2-D, [B*T, dim], between
// blocks so every linear layer is one plain matMul.
import * as tf from '@tensorflow/tfjs';
import { tokenCount, type VitConfig } from './config.js';
import { DropoutSites } from './dropout.js';
import * as fast from './fastops.js';
import type { BlockParams, Vit, VitParams } from './model.js';
import { nativeRun, nativeStatus } from './native.js';

/** The primitive ops the model is built from; `fastOps` for speed, `plainOps` as a reference. */
export interface VitOps {
  linear: (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D) => tf.Tensor2D;
  linearNoBias: (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;
  layerNorm: (x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D) => tf.Tensor2D;
  gelu: <R extends tf.Rank>(x: tf.Tensor<R>) => tf.Tensor<R>;
  bmm: (a: tf.Tensor3D, b: tf.Tensor3D) => tf.Tensor3D;
  softmax: <R extends tf.Rank>(x: tf.Tensor<R>) => tf.Tensor<R>;
}

export const fastOps: VitOps = fast;
export const plainOps: VitOps = fast.plain;

export interface ForwardOptions {
  training: boolean;
  /** Seeds dropout; without it training runs without dropout. */
  seed?: number;
  returnAttention?: boolean;
}

/**
 * Cut NHWC images into flattened patches in (channel, row, col) order, as the reference does
 * on NCHW input: [B, H, W, C] -> [B*N, C*p*p], patches in row-major grid order.
 */
export function patchify(x: tf.Tensor4D, p: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [b, h, w, c] = x.shape;
    const gh = h / p;
    const gw = w / p;
    const grid = tf.reshape(x, [b, gh, p, gw, p, c]); // [B, gh, p, gw, p, C]
    const ordered = tf.transpose(grid, [0, 1, 3, 5, 2, 4]); // [B, gh, gw, C, p, p]
    return tf.reshape(ordered, [b * gh * gw, c * p * p]);
  });
}

/** Weights of one block as plain tensors (tf.Variables or a Layers model's weights). */
export type BlockWeights = { [K in keyof BlockParams]: tf.Tensor };
/** Weights outside the blocks. */
export type StemWeights = { [K in Exclude<keyof VitParams, 'blocks'>]: tf.Tensor };

interface Ctx {
  ops: VitOps;
  cfg: VitConfig;
  batch: number;
  drop: DropoutSites;
  attention?: tf.Tensor4D[];
}

/** Multi-head self-attention.  x: [B*T, dim] -> [B*T, dim] */
function attention(ctx: Ctx, x: tf.Tensor2D, p: BlockWeights): tf.Tensor2D {
  const { ops, cfg, batch: b } = ctx;
  const t = x.shape[0] / b;
  const { heads: h, dimHead: d } = cfg;
  const scale = 1 / Math.sqrt(d);
  // [B*T, h*d] -> [B*h, T, d]
  const splitHeads = (y: tf.Tensor2D): tf.Tensor3D => tf.reshape(tf.transpose(tf.reshape(y, [b, t, h, d]), [0, 2, 1, 3]), [b * h, t, d]);
  const q = splitHeads(tf.mul(ops.linearNoBias(x, p.toQ as tf.Tensor2D), scale));
  const kT = tf.transpose(splitHeads(ops.linearNoBias(x, p.toK as tf.Tensor2D)), [0, 2, 1]); // [B*h, d, T]
  const v = splitHeads(ops.linearNoBias(x, p.toV as tf.Tensor2D));
  const dots = ops.bmm(q, kT); // [B*h, T, T]
  const attn = ops.softmax(dots);
  if (ctx.attention) ctx.attention.push(tf.keep(tf.reshape(attn, [b, h, t, t])));
  const out = ops.bmm(ctx.drop.apply(attn), v); // [B*h, T, d]
  const merged = tf.reshape(tf.transpose(tf.reshape(out, [b, h, t, d]), [0, 2, 1, 3]), [b * t, h * d]) as tf.Tensor2D;
  return ctx.drop.apply(ops.linear(merged, p.toOutW as tf.Tensor2D, p.toOutB as tf.Tensor1D));
}

/** Position-wise MLP.  x: [B*T, dim] -> [B*T, dim] */
function feedForward(ctx: Ctx, x: tf.Tensor2D, p: BlockWeights): tf.Tensor2D {
  const { ops, drop } = ctx;
  const hidden = drop.apply(ops.gelu(ops.linear(x, p.fc1W as tf.Tensor2D, p.fc1B as tf.Tensor1D))); // [B*T, mlpDim]
  return drop.apply(ops.linear(hidden, p.fc2W as tf.Tensor2D, p.fc2B as tf.Tensor1D)); // [B*T, dim]
}

/** Pre-LN transformer block: x + MHSA(LN(x)), then x + MLP(LN(x)). */
function block(ctx: Ctx, x: tf.Tensor2D, p: BlockWeights): tf.Tensor2D {
  const { ops } = ctx;
  const x1 = tf.add(x, attention(ctx, ops.layerNorm(x, p.attnNormGamma as tf.Tensor1D, p.attnNormBeta as tf.Tensor1D), p)) as tf.Tensor2D;
  return tf.add(x1, feedForward(ctx, ops.layerNorm(x1, p.mlpNormGamma as tf.Tensor1D, p.mlpNormBeta as tf.Tensor1D), p)) as tf.Tensor2D;
}

/** Images [B, H, W, C] -> tokens [B*T, dim]: patch embedding, class token, positions. */
function embed(ctx: Ctx, img: tf.Tensor4D, P: StemWeights): tf.Tensor2D {
  const { cfg, ops, batch: b } = ctx;
  if (img.shape[1] !== cfg.imageSize || img.shape[2] !== cfg.imageSize || img.shape[3] !== cfg.channels) {
    throw new Error(`ViT expects images [B, ${cfg.imageSize}, ${cfg.imageSize}, ${cfg.channels}], got [${img.shape}]`);
  }
  const { patches: n, tokens: t } = tokenCount(cfg);
  const patches = patchify(img, cfg.patchSize); // [B*N, C*p*p]
  const embedded = tf.reshape(ops.linear(patches, P.patchW as tf.Tensor2D, P.patchB as tf.Tensor1D), [b, n, cfg.dim]);
  const cls = tf.broadcastTo(tf.reshape(P.clsToken, [1, 1, cfg.dim]), [b, 1, cfg.dim]);
  const tokens = tf.add(tf.concat([cls, embedded], 1), P.posEmbedding); // [B, T, dim]
  return ctx.drop.apply(tf.reshape(tokens, [b * t, cfg.dim])) as tf.Tensor2D;
}

/** Tokens [B*T, dim] -> logits [B, classes] from the class token. */
function head(ctx: Ctx, x: tf.Tensor2D, P: StemWeights): tf.Tensor2D {
  const { cfg, ops, batch: b } = ctx;
  const t = x.shape[0] / b;
  const clsOut = tf.reshape(tf.slice(tf.reshape(x, [b, t, cfg.dim]), [0, 0, 0], [b, 1, cfg.dim]), [b, cfg.dim]) as tf.Tensor2D; // class token
  const normed = ops.layerNorm(clsOut, P.headNormGamma as tf.Tensor1D, P.headNormBeta as tf.Tensor1D);
  return ops.linear(normed, P.headW as tf.Tensor2D, P.headB as tf.Tensor1D); // [B, classes]
}

/** Images [B, H, W, C] -> logits [B, classes]. Call inside tf.tidy or variableGrads. */
function logitsOf(model: Vit, img: tf.Tensor4D, ops: VitOps, opts: ForwardOptions, attention?: tf.Tensor4D[]): tf.Tensor2D {
  const cfg = model.config;
  const ctx: Ctx = { ops, cfg, batch: img.shape[0], drop: new DropoutSites(opts.training ? cfg.dropout : 0, opts.seed), attention };
  let x = embed(ctx, img, model.params);
  for (const p of model.params.blocks) x = block(ctx, x, p);
  return head(ctx, x, model.params);
}

/** Eval-mode pieces of the model, for the Layers-model wrapper in layers.ts. */
export const evalPieces = {
  embed: (cfg: VitConfig, img: tf.Tensor4D, w: StemWeights): tf.Tensor3D =>
    tf.tidy(() => tf.reshape(embed(evalCtx(cfg, img.shape[0]), img, w), [img.shape[0], -1, cfg.dim]) as tf.Tensor3D),
  block: (cfg: VitConfig, x: tf.Tensor3D, w: BlockWeights): tf.Tensor3D =>
    tf.tidy(() => {
      const [b, t, d] = x.shape;
      return tf.reshape(block(evalCtx(cfg, b), tf.reshape(x, [b * t, d]), w), [b, t, d]) as tf.Tensor3D;
    }),
  head: (cfg: VitConfig, x: tf.Tensor3D, w: StemWeights): tf.Tensor2D =>
    tf.tidy(() => head(evalCtx(cfg, x.shape[0]), tf.reshape(x, [-1, cfg.dim]) as tf.Tensor2D, w)),
};

function evalCtx(cfg: VitConfig, batch: number): Ctx {
  return { ops: fastOps, cfg, batch, drop: new DropoutSites(0, undefined) };
}

/**
 * Forward pass. `attention` holds, per block, the post-softmax weights [B, heads, T, T] (T = 1 + N).
 * Dropout runs only when training and a seed is given; the same seed gives the same masks.
 */
export function forward(
  model: Vit,
  x: tf.Tensor4D,
  opts: ForwardOptions,
  ops: VitOps = fastOps,
): { logits: tf.Tensor2D; attention?: tf.Tensor4D[] } {
  const attention: tf.Tensor4D[] | undefined = opts.returnAttention ? [] : undefined;
  const logits = tf.tidy(() => logitsOf(model, x, ops, opts, attention));
  return attention ? { logits, attention } : { logits };
}

/** Mean softmax cross-entropy against soft targets [B, classes] whose rows sum to 1. */
export function softCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.neg(tf.sum(tf.mul(targets, tf.logSoftmax(logits)), 1))) as tf.Scalar);
}

export interface GradientResult {
  loss: number;
  correct: number;
  /** Keyed by tf variable name, as optimizer.applyGradients expects. Caller disposes. */
  grads: tf.NamedTensorMap;
}

/** Loss, number of correct argmax predictions and (optionally clipped) gradients for one batch. */
export function computeGradients(
  model: Vit,
  x: tf.Tensor4D,
  targets: tf.Tensor2D,
  opts: { seed: number; gradClipNorm?: number },
  ops: VitOps = fastOps,
): GradientResult {
  const result = ops === fastOps && nativeStatus().active ? nativeGradients(model, x, targets, opts.seed) : tfjsGradients(model, x, targets, opts.seed, ops);
  if (opts.gradClipNorm && opts.gradClipNorm > 0) clipByGlobalNorm(result.grads, opts.gradClipNorm);
  return result;
}

function nativeGradients(model: Vit, x: tf.Tensor4D, targets: tf.Tensor2D, seed: number): GradientResult {
  const weights = model.variables.map((v) => v.dataSync() as Float32Array);
  const r = nativeRun(model.config, weights, float32(x), x.shape[0], float32(targets), seed);
  const grads: tf.NamedTensorMap = {};
  model.variables.forEach((v, i) => {
    grads[v.name] = tf.tensor((r.grads as Float32Array[])[i], v.shape, 'float32');
  });
  return { loss: r.loss as number, correct: r.correct as number, grads };
}

function tfjsGradients(model: Vit, x: tf.Tensor4D, targets: tf.Tensor2D, seed: number, ops: VitOps): GradientResult {
  const opts = { seed };
  let correctT: tf.Scalar | undefined;
  const { value, grads } = tf.variableGrads(() => {
    const logits = logitsOf(model, x, ops, { training: true, seed: opts.seed });
    correctT = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), tf.argMax(targets, 1)), 'int32')) as tf.Scalar);
    return softCrossEntropy(logits, targets) as tf.Scalar;
  }, model.variables);
  const loss = value.dataSync()[0];
  value.dispose();
  const correct = (correctT as tf.Scalar).dataSync()[0];
  (correctT as tf.Scalar).dispose();
  return { loss, correct, grads };
}

/** Scales all gradients in place (replacing the map's tensors) so their global L2 norm <= maxNorm. */
export function clipByGlobalNorm(grads: tf.NamedTensorMap, maxNorm: number): number {
  const names = Object.keys(grads);
  const normT = tf.tidy(() => tf.sqrt(tf.addN(names.map((n) => tf.sum(tf.square(grads[n]))))));
  const norm = normT.dataSync()[0];
  normT.dispose();
  if (norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (const n of names) {
      const scaled = tf.mul(grads[n], scale);
      grads[n].dispose();
      grads[n] = scaled;
    }
  }
  return norm;
}

/** Logits in eval mode, computed in batches to keep the wasm heap small. */
export function predict(model: Vit, x: tf.Tensor4D, batchSize: number): tf.Tensor2D {
  const n = x.shape[0];
  if (nativeStatus().active) return nativePredict(model, x, batchSize);
  const parts: tf.Tensor2D[] = [];
  for (let i = 0; i < n; i += batchSize) {
    const size = Math.min(batchSize, n - i);
    parts.push(
      tf.tidy(() => logitsOf(model, tf.slice(x, [i, 0, 0, 0], [size, -1, -1, -1]), fastOps, { training: false })),
    );
  }
  if (parts.length === 1) return parts[0];
  const all = tf.concat(parts, 0);
  for (const p of parts) p.dispose();
  return all;
}

function nativePredict(model: Vit, x: tf.Tensor4D, batchSize: number): tf.Tensor2D {
  const [n, h, w, c] = x.shape;
  const weights = model.variables.map((v) => v.dataSync() as Float32Array);
  const images = float32(x);
  const classes = model.config.classes;
  const logits = new Float32Array(n * classes);
  for (let i = 0; i < n; i += batchSize) {
    const size = Math.min(batchSize, n - i);
    const part = images.subarray(i * h * w * c, (i + size) * h * w * c);
    logits.set(nativeRun(model.config, weights, part, size, null, undefined).logits, i * classes);
  }
  return tf.tensor2d(logits, [n, classes]);
}

function float32(t: tf.Tensor): Float32Array {
  const data = t.dataSync();
  return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
}
