// Running the ViT: forward passes, predictions and gradients on the kernels the caller chose
// (choose-kernels.ts turns runtime.kernels into that choice). The model itself is in vit.ts.
import * as tf from '@tensorflow/tfjs';
import type { FullVitConfig, VitConfig } from './config.js';
import { Dropout } from './dropout.js';
import { gpuCopy, type Precision } from './gpu.js';
import type { Vit } from './model.js';
import { nativeRun, type NativeRunResult } from './native.js';
import { referenceOps, tfjsOps, type VitOps } from './ops.js';
import { block, embed, head, vit, type BlockWeights, type Ctx, type HeadWeights, type StemWeights } from './vit.js';

/**
 * Which implementation runs the model: `native` the C++ kernels (one call per batch; `isa` names
 * the variant), `cuda` the CUDA kernels on the GPU (gpu.ts; `precision` of the matrix products;
 * `host`: the same model code on the host executor instead, slow, for tests without a GPU),
 * `tfjs` the fast tfjs ops on the current backend, `reference` plain tfjs ops with autodiff (tests
 * and the bench's baseline).
 */
export type Kernels =
  | { path: 'native'; isa: string }
  | { path: 'cuda'; precision: Precision; host?: boolean }
  | { path: 'tfjs' }
  | { path: 'reference' };
export const tfjsKernels: Kernels = { path: 'tfjs' };
export const referenceKernels: Kernels = { path: 'reference' };

/** "native/avx2", "cuda/bf16", "tfjs", "reference" ("cuda-host/fp32": the GPU model on the host executor). */
export function describeKernels(k: Kernels): string {
  if (k.path === 'cuda') return `${k.host ? 'cuda-host' : 'cuda'}/${k.precision}`;
  return k.path === 'native' ? `native/${k.isa}` : k.path;
}

// Images per GPU call when inference makes its own copy of a model (gpu.ts runs larger n in pieces).
const GPU_INFER_BATCH = 512;

function opsOf(k: Kernels): VitOps {
  return k.path === 'reference' ? referenceOps : tfjsOps;
}

export interface ForwardOptions {
  training: boolean;
  /** Seeds dropout; without it training runs without dropout. */
  seed?: number;
  returnAttention?: boolean;
}

function logitsOf(
  model: Vit,
  img: tf.Tensor4D,
  ops: VitOps,
  opts: ForwardOptions,
  attention?: tf.Tensor4D[],
  pool?: tf.Tensor2D[],
): tf.Tensor2D {
  const cfg = model.config;
  const ctx: Ctx = {
    ops,
    cfg,
    batch: img.shape[0],
    drop: new Dropout(opts.training ? cfg.dropout : 0, opts.seed),
    attention,
    pool,
  };
  return vit(ctx, img, model.params);
}

/** What a forward pass returns; with returnAttention, the attention maps and the head's pooling weights. */
export interface ForwardResult {
  logits: tf.Tensor2D;
  /** Per block, the post-softmax weights [B, heads, T, T] (T = N + 1 with a class token, else N). */
  attention?: tf.Tensor4D[];
  /** The weight [B, T] each token has in the vector the head classifies (vit.ts pool). */
  pool?: tf.Tensor2D;
}

/**
 * Forward pass. Dropout runs only when training and a seed is given; the same seed gives the same
 * masks.
 */
export function forward(model: Vit, x: tf.Tensor4D, opts: ForwardOptions, kernels: Kernels): ForwardResult {
  if (kernels.path === 'native') {
    if (opts.training)
      throw new Error('forward: training-mode forward passes run through computeGradients on the native kernels');
    const r = nativeRun(kernels.isa, model.config, weightsOf(model), float32(x), x.shape[0], null, undefined, {
      attention: !!opts.returnAttention,
    });
    const logits = tf.tensor2d(r.logits, [x.shape[0], model.config.classes]);
    if (!opts.returnAttention) return { logits };
    const attention = splitAttention(model.config, x.shape[0], r);
    if (!r.pool) throw new Error('internal: the native kernels returned attention maps without pooling weights');
    return { logits, attention, pool: tf.tensor2d(r.pool, [x.shape[0], r.pool.length / x.shape[0]]) };
  }
  if (kernels.path === 'cuda') {
    if (opts.training) throw new Error('forward: training steps on the GPU run through its trainer (createTrainer)');
    const n = x.shape[0];
    const gpu = gpuCopy(model, Math.min(n, GPU_INFER_BATCH), kernels);
    const r = gpu.forward(float32(x), n, !!opts.returnAttention);
    const logits = tf.tensor2d(r.logits, [n, model.config.classes]);
    if (!opts.returnAttention) return { logits };
    // The CUDA kernels run only the class-token head (gpu.ts refuses other pools).
    const attention = splitAttention(model.config, n, r);
    return {
      logits,
      attention,
      pool: tf.oneHot(tf.zeros([n], 'int32'), attention[0].shape[2]).toFloat() as tf.Tensor2D,
    };
  }
  const attention: tf.Tensor4D[] | undefined = opts.returnAttention ? [] : undefined;
  const pool: tf.Tensor2D[] | undefined = opts.returnAttention ? [] : undefined;
  const logits = tf.tidy(() => logitsOf(model, x, opsOf(kernels), opts, attention, pool));
  return attention && pool ? { logits, attention, pool: pool[0] } : { logits };
}

/** The addon's [depth, B, heads, T, T] attention as one [B, heads, T, T] tensor per block. */
function splitAttention(cfg: VitConfig, batch: number, r: Pick<NativeRunResult, 'attention'>): tf.Tensor4D[] {
  const all = r.attention as Float32Array;
  const per = all.length / cfg.depth;
  const t = Math.round(Math.sqrt(per / (batch * cfg.heads)));
  return Array.from({ length: cfg.depth }, (_, l) =>
    tf.tensor4d(all.subarray(l * per, (l + 1) * per), [batch, cfg.heads, t, t]),
  );
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

export interface GradientOptions {
  seed: number;
  gradClipNorm?: number;
}

/** Loss, number of correct argmax predictions and (optionally clipped) gradients for one batch. */
export function computeGradients(
  model: Vit,
  x: tf.Tensor4D,
  targets: tf.Tensor2D,
  opts: GradientOptions,
  kernels: Kernels,
): GradientResult {
  if (kernels.path === 'cuda')
    throw new Error('computeGradients: training steps on the GPU run through its trainer (createTrainer)');
  if (kernels.path === 'native') {
    // The addon clips (the same rule as clipByGlobalNorm) before it hands the gradients over.
    const clipNorm = opts.gradClipNorm ?? 0;
    return nativeGradients(
      model,
      nativeRun(kernels.isa, model.config, weightsOf(model), float32(x), x.shape[0], float32(targets), opts.seed, {
        clipNorm,
      }),
    );
  }
  const result = tfjsGradients(model, x, targets, opts.seed, opsOf(kernels));
  if (opts.gradClipNorm && opts.gradClipNorm > 0) clipByGlobalNorm(result.grads, opts.gradClipNorm);
  return result;
}

function nativeGradients(model: Vit, r: NativeRunResult): GradientResult {
  const grads: tf.NamedTensorMap = {};
  model.variables.forEach((v, i) => {
    grads[v.name] = tf.tensor((r.grads as Float32Array[])[i], v.shape, 'float32');
  });
  return { loss: r.loss as number, correct: r.correct as number, grads };
}

function tfjsGradients(model: Vit, x: tf.Tensor4D, targets: tf.Tensor2D, seed: number, ops: VitOps): GradientResult {
  let correctT: tf.Scalar | undefined;
  const { value, grads } = tf.variableGrads(() => {
    const logits = logitsOf(model, x, ops, { training: true, seed });
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
export function predict(model: Vit, x: tf.Tensor4D, batchSize: number, kernels: Kernels): tf.Tensor2D {
  if (kernels.path === 'native') return nativePredict(model, x, batchSize, kernels.isa);
  if (kernels.path === 'cuda') {
    const n = x.shape[0];
    const gpu = gpuCopy(model, Math.min(n, batchSize, GPU_INFER_BATCH), kernels);
    return tf.tensor2d(gpu.forward(float32(x), n).logits, [n, model.config.classes]);
  }
  const n = x.shape[0];
  const parts: tf.Tensor2D[] = [];
  for (let i = 0; i < n; i += batchSize) {
    const size = Math.min(batchSize, n - i);
    parts.push(
      tf.tidy(() =>
        logitsOf(model, tf.slice(x, [i, 0, 0, 0], [size, -1, -1, -1]), opsOf(kernels), { training: false }),
      ),
    );
  }
  if (parts.length === 1) return parts[0];
  const all = tf.concat(parts, 0);
  for (const p of parts) p.dispose();
  return all;
}

function nativePredict(model: Vit, x: tf.Tensor4D, batchSize: number, isa: string): tf.Tensor2D {
  const [n, h, w, c] = x.shape;
  const weights = weightsOf(model);
  const images = float32(x);
  const classes = model.config.classes;
  const logits = new Float32Array(n * classes);
  for (let i = 0; i < n; i += batchSize) {
    const size = Math.min(batchSize, n - i);
    const part = images.subarray(i * h * w * c, (i + size) * h * w * c);
    logits.set(nativeRun(isa, model.config, weights, part, size, null, undefined).logits, i * classes);
  }
  return tf.tensor2d(logits, [n, classes]);
}

function weightsOf(model: Vit): Float32Array[] {
  return model.variables.map((v) => v.dataSync() as Float32Array);
}

/** A tensor's values as a Float32Array (a copy on the wasm backend). */
export function float32(t: tf.Tensor): Float32Array {
  const data = t.dataSync();
  return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
}

/** Eval-mode pieces of the model on the tfjs ops, for the Layers-model wrapper in layers.ts. */
export const evalPieces = {
  embed: (cfg: FullVitConfig, img: tf.Tensor4D, w: StemWeights): tf.Tensor3D =>
    tf.tidy(() => tf.reshape(embed(evalCtx(cfg, img.shape[0]), img, w), [img.shape[0], -1, cfg.dim]) as tf.Tensor3D),
  block: (cfg: FullVitConfig, x: tf.Tensor3D, w: BlockWeights): tf.Tensor3D =>
    tf.tidy(() => {
      const [b, t, d] = x.shape;
      // The block index only numbers dropout sites, and eval mode has no dropout.
      return tf.reshape(block(evalCtx(cfg, b), 0, tf.reshape(x, [b * t, d]), w), [b, t, d]) as tf.Tensor3D;
    }),
  head: (cfg: FullVitConfig, x: tf.Tensor3D, w: HeadWeights): tf.Tensor2D =>
    tf.tidy(() => head(evalCtx(cfg, x.shape[0]), tf.reshape(x, [-1, cfg.dim]) as tf.Tensor2D, w)),
};

function evalCtx(cfg: FullVitConfig, batch: number): Ctx {
  return { ops: tfjsOps, cfg, batch, drop: new Dropout(0, undefined) };
}
