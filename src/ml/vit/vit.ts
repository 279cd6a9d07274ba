// The Vision Transformer, as lucidrains/vit-pytorch's vit.py describes it: patch embedding with a
// class token and learned positions, pre-LN blocks of multi-head self-attention and a GELU MLP,
// and a LayerNorm + Linear head on the class token. Options from Compact Transformers (Hassani et
// al., 2021) replace the ends: a conv tokenizer, mean or sequence pooling, sin-cos or no positions. Activations stay 2-D, [B*T, dim], between
// blocks so that every linear layer is one plain matMul. Which kernels run it is decided in
// kernels.ts; native/src/model.cc is the same model in C++.
import * as tf from '@tensorflow/tfjs';
import { convLayerChannels, type FullVitConfig, sincosPositions, tokenCount } from './config.js';
import type { Dropout } from './dropout.js';
import { dropoutSite, EMBEDDING_DROPOUT_SITE, type BlockParams, type HeadParams, type StemParams } from './layout.js';
import type { VitOps } from './ops.js';

/** Weights of one block / outside the blocks as plain tensors (tf.Variables or a Layers model's). */
export type BlockWeights = BlockParams<tf.Tensor>;
export type StemWeights = StemParams<tf.Tensor>;
export type HeadWeights = HeadParams<tf.Tensor>;

/** What every piece needs besides its input and weights. */
export interface Ctx {
  ops: VitOps;
  cfg: FullVitConfig;
  batch: number;
  drop: Dropout;
  /** When given, each block pushes its post-softmax attention [B, heads, T, T]. */
  attention?: tf.Tensor4D[];
  /** When given, the head pushes the weights [B, T] its pooled vector gives each token (one-hot on the class token, 1/T for mean). */
  pool?: tf.Tensor2D[];
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

/**
 * A 3x3 convolution, stride 1, zero 'same' padding, no bias, as im2col + one plain 2-D matMul
 * (wasm has no Conv2DBackpropFilter kernel, and 2-D matMul is its fast op).
 * x: [B, S, S, Cin], w: [3, 3, Cin, Cout] (HWIO) -> [B, S, S, Cout]
 */
export function conv3x3(ops: VitOps, x: tf.Tensor4D, w: tf.Tensor): tf.Tensor4D {
  const [b, s, , cin] = x.shape;
  const cout = w.shape[3] as number;
  const padded = tf.pad(x, [
    [0, 0],
    [1, 1],
    [1, 1],
    [0, 0],
  ]);
  const taps: tf.Tensor4D[] = [];
  for (let ky = 0; ky < 3; ky++)
    for (let kx = 0; kx < 3; kx++) taps.push(tf.slice(padded, [0, ky, kx, 0], [b, s, s, cin]));
  const cols = tf.reshape(tf.concat(taps, 3), [b * s * s, 9 * cin]) as tf.Tensor2D; // (ky, kx, ci) = HWIO order
  return tf.reshape(ops.linearNoBias(cols, tf.reshape(w, [9 * cin, cout]) as tf.Tensor2D), [b, s, s, cout]);
}

/** CCT's tokenizer: per layer conv 3x3 + ReLU + max-pool 3x3 stride 2 ('same': windows 2i..2i+2). [B, H, W, C] -> [B, N, dim] */
export function convTokens(ctx: Ctx, img: tf.Tensor4D, P: StemWeights): tf.Tensor3D {
  const { cfg, ops, batch: b } = ctx;
  let x = img;
  for (let l = 0; l < cfg.convLayers; l++) {
    const w = P[`conv${l}` as keyof StemWeights];
    if (!w) throw new Error(`internal: conv tokenizer layer ${l} has no kernel`);
    const { cout } = convLayerChannels(cfg, l);
    if (w.shape[3] !== cout) throw new Error(`internal: conv_${l} kernel has ${w.shape[3]} outputs, expected ${cout}`);
    x = tf.maxPool(tf.relu(conv3x3(ops, x, w)), 3, 2, 'same');
  }
  return tf.reshape(x, [b, -1, cfg.dim]);
}

/** Images [B, H, W, C] -> tokens [B*T, dim]: tokenizer, class token (pool cls), positions. */
export function embed(ctx: Ctx, img: tf.Tensor4D, P: StemWeights): tf.Tensor2D {
  const { cfg, ops, batch: b } = ctx;
  if (img.shape[1] !== cfg.imageSize || img.shape[2] !== cfg.imageSize || img.shape[3] !== cfg.channels) {
    throw new Error(`ViT expects images [B, ${cfg.imageSize}, ${cfg.imageSize}, ${cfg.channels}], got [${img.shape}]`);
  }
  const { grid, patches: n, tokens: t } = tokenCount(cfg);
  const embedded =
    cfg.tokenizer === 'conv'
      ? convTokens(ctx, img, P)
      : tf.reshape(ops.linear(patchify(img, cfg.patchSize), P.patchW as tf.Tensor2D, P.patchB as tf.Tensor1D), [
          b,
          n,
          cfg.dim,
        ]);
  let tokens: tf.Tensor = embedded;
  if (cfg.pool === 'cls') {
    const cls = tf.broadcastTo(tf.reshape(P.clsToken as tf.Tensor, [1, 1, cfg.dim]), [b, 1, cfg.dim]);
    tokens = tf.concat([cls, embedded], 1);
  }
  if (cfg.posEmbedding === 'learned') tokens = tf.add(tokens, P.posEmbedding as tf.Tensor);
  if (cfg.posEmbedding === 'sincos') {
    const table = tf.tensor2d(sincosPositions(grid, cfg.dim), [n, cfg.dim]);
    tokens = tf.add(tokens, t > n ? tf.concat([tf.zeros([t - n, cfg.dim]), table], 0) : table); // the class token: none
  }
  return ctx.drop.apply(tf.reshape(tokens, [b * t, cfg.dim]) as tf.Tensor2D, EMBEDDING_DROPOUT_SITE);
}

/** Multi-head self-attention of block l.  x: [B*T, dim] -> [B*T, dim] */
export function attention(ctx: Ctx, l: number, x: tf.Tensor2D, p: BlockWeights): tf.Tensor2D {
  const { ops, cfg, batch: b, drop } = ctx;
  const t = x.shape[0] / b;
  const { heads: h, dimHead: d } = cfg;
  // [B*T, h*d] -> [B*h, T, d]
  const splitHeads = (y: tf.Tensor2D): tf.Tensor3D =>
    tf.reshape(tf.transpose(tf.reshape(y, [b, t, h, d]), [0, 2, 1, 3]), [b * h, t, d]);
  const q = splitHeads(tf.mul(ops.linearNoBias(x, p.toQ as tf.Tensor2D), 1 / Math.sqrt(d)));
  const kT = tf.transpose(splitHeads(ops.linearNoBias(x, p.toK as tf.Tensor2D)), [0, 2, 1]); // [B*h, d, T]
  const v = splitHeads(ops.linearNoBias(x, p.toV as tf.Tensor2D));
  const attn = ops.softmax(ops.bmm(q, kT)); // [B*h, T, T]
  if (ctx.attention) ctx.attention.push(tf.keep(tf.reshape(attn, [b, h, t, t])));
  const out = ops.bmm(drop.apply(attn, dropoutSite(l, 'attn/weights')), v); // [B*h, T, d]
  const merged = tf.reshape(tf.transpose(tf.reshape(out, [b, h, t, d]), [0, 2, 1, 3]), [b * t, h * d]) as tf.Tensor2D;
  return drop.apply(ops.linear(merged, p.toOutW as tf.Tensor2D, p.toOutB as tf.Tensor1D), dropoutSite(l, 'attn/out'));
}

/** Position-wise MLP of block l.  x: [B*T, dim] -> [B*T, dim] */
export function feedForward(ctx: Ctx, l: number, x: tf.Tensor2D, p: BlockWeights): tf.Tensor2D {
  const { ops, drop } = ctx;
  const act = ctx.cfg.activation === 'gelu' ? ops.gelu : ops.geluTanh;
  const hidden = act(ops.linear(x, p.fc1W as tf.Tensor2D, p.fc1B as tf.Tensor1D)); // [B*T, mlpDim]
  const out = ops.linear(
    drop.apply(hidden, dropoutSite(l, 'mlp/hidden')),
    p.fc2W as tf.Tensor2D,
    p.fc2B as tf.Tensor1D,
  ); // [B*T, dim]
  return drop.apply(out, dropoutSite(l, 'mlp/out'));
}

/** Pre-LN transformer block l: x + MHSA(LN(x)), then x + MLP(LN(x)). */
export function block(ctx: Ctx, l: number, x: tf.Tensor2D, p: BlockWeights): tf.Tensor2D {
  const { ops } = ctx;
  const x1 = tf.add(
    x,
    attention(ctx, l, ops.layerNorm(x, p.attnNormGamma as tf.Tensor1D, p.attnNormBeta as tf.Tensor1D), p),
  ) as tf.Tensor2D;
  return tf.add(
    x1,
    feedForward(ctx, l, ops.layerNorm(x1, p.mlpNormGamma as tf.Tensor1D, p.mlpNormBeta as tf.Tensor1D), p),
  ) as tf.Tensor2D;
}

/**
 * Tokens [B*T, dim] -> the vector the head classifies, [B, dim], and the weight each token has in
 * it [B, T]: the class token; the mean; or sequence pooling, softmax over tokens of a linear score
 * x·w + b, then the weighted mean.
 */
export function pool(ctx: Ctx, x: tf.Tensor2D, P: HeadWeights): { pooled: tf.Tensor2D; weights: tf.Tensor2D } {
  const { cfg, ops, batch: b } = ctx;
  const t = x.shape[0] / b;
  const x3 = tf.reshape(x, [b, t, cfg.dim]);
  if (cfg.pool === 'cls') {
    const pooled = tf.reshape(tf.slice(x3, [0, 0, 0], [b, 1, cfg.dim]), [b, cfg.dim]) as tf.Tensor2D;
    return { pooled, weights: tf.oneHot(tf.zeros([b], 'int32'), t).toFloat() as tf.Tensor2D };
  }
  if (cfg.pool === 'mean')
    return { pooled: tf.mean(x3, 1) as tf.Tensor2D, weights: tf.fill([b, t], 1 / t) as tf.Tensor2D };
  const scores = tf.reshape(ops.linear(x, P.poolW as tf.Tensor2D, P.poolB as tf.Tensor1D), [b, t]);
  const weights = tf.softmax(scores) as tf.Tensor2D;
  return { pooled: tf.sum(tf.mul(tf.expandDims(weights, 2), x3), 1) as tf.Tensor2D, weights };
}

/** Tokens [B*T, dim] -> logits [B, classes]: pooling, LayerNorm, Linear. */
export function head(ctx: Ctx, x: tf.Tensor2D, P: HeadWeights): tf.Tensor2D {
  const { ops } = ctx;
  const { pooled, weights } = pool(ctx, x, P);
  if (ctx.pool) ctx.pool.push(tf.keep(weights));
  const normed = ops.layerNorm(pooled, P.headNormGamma as tf.Tensor1D, P.headNormBeta as tf.Tensor1D);
  return ops.linear(normed, P.headW as tf.Tensor2D, P.headB as tf.Tensor1D); // [B, classes]
}

/** Images [B, H, W, C] -> logits [B, classes]. Call inside tf.tidy or variableGrads. */
export function vit(
  ctx: Ctx,
  img: tf.Tensor4D,
  P: StemWeights & HeadWeights & { blocks: BlockWeights[] },
): tf.Tensor2D {
  let x = embed(ctx, img, P);
  P.blocks.forEach((p, l) => {
    x = block(ctx, l, x, p);
  });
  return head(ctx, x, P);
}
