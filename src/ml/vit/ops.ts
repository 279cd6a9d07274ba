// The primitive ops the ViT is built from, in two sets: `tfjsOps`, each a tf.customGrad with a
// hand-written backward, fast on the wasm backend; and `referenceOps`, the same maths in stock
// tfjs ops with autodiff, which tests compare them with. Why the fast ones look as they do
// (measured; see the README's notes on CPU backends): on wasm only plain 2-D matMul without
// transpose flags reaches XNNPACK, batched matMul is a scalar loop, Tanh/Pow are slow, and wasm
// lacks the depthwise-conv backprop kernels. Temporaries in backward passes are freed at once with
// tf.tidy because the wasm heap is capped at 4 GB.
import * as tf from '@tensorflow/tfjs';

type T2 = tf.Tensor2D;
type T3 = tf.Tensor3D;

type GradFn = (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[];
type OpBody = (inputs: tf.Tensor[], save: tf.GradSaveFunc) => { value: tf.Tensor; gradFunc: GradFn };

/** tf.customGrad with the inputs as one array (its own typing cannot express a trailing save). */
function custom(body: OpBody): (...inputs: tf.Tensor[]) => tf.Tensor {
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    return body(args.slice(0, -1) as tf.Tensor[], save);
  });
  return (...inputs: tf.Tensor[]) => op(...inputs);
}

/** y = x @ w + b   x: [R, I], w: [I, O], b: [O]  ->  [R, O] */
const linearOp = custom(([x, w, b], save) => {
  save([x, w]);
  const value = tf.add(tf.matMul(x as T2, w as T2), b) as T2;
  return {
    value,
    gradFunc: (dy: tf.Tensor, [xs, ws]: tf.Tensor[]) =>
      tf.tidy(() => [
        tf.matMul(dy as T2, tf.transpose(ws as T2)), // dx = dy @ w^T  [R, I]
        tf.matMul(tf.transpose(xs as T2), dy as T2), // dw = x^T @ dy  [I, O]
        tf.sum(dy, 0), // db [O]
      ]),
  };
});
export const linear = (x: T2, w: T2, b: tf.Tensor1D): T2 => linearOp(x, w, b) as T2;

/** y = x @ w (no bias)   x: [R, I], w: [I, O] -> [R, O] */
const linearNoBiasOp = custom(([x, w], save) => {
  save([x, w]);
  return {
    value: tf.matMul(x as T2, w as T2),
    gradFunc: (dy: tf.Tensor, [xs, ws]: tf.Tensor[]) =>
      tf.tidy(() => [tf.matMul(dy as T2, tf.transpose(ws as T2)), tf.matMul(tf.transpose(xs as T2), dy as T2)]),
  };
});
export const linearNoBias = (x: T2, w: T2): T2 => linearNoBiasOp(x, w) as T2;

/** Layer norm over the last axis.   x: [R, D], gamma/beta: [D] -> [R, D] */
const layerNormOp = custom(([x, gamma, beta, eps], save) => {
  const mu = tf.mean(x, -1, true);
  const xc = tf.sub(x, mu);
  const rstd = tf.rsqrt(tf.add(tf.mean(tf.mul(xc, xc), -1, true), eps)); // [R, 1]
  const xhat = tf.mul(xc, rstd);
  save([xhat, rstd, gamma]);
  return {
    value: tf.add(tf.mul(xhat, gamma), beta),
    gradFunc: (dy: tf.Tensor, [xh, rs, g]: tf.Tensor[]) =>
      tf.tidy(() => {
        // dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), per row
        const dxhat = tf.mul(dy, g);
        const m1 = tf.mean(dxhat, -1, true);
        const m2 = tf.mean(tf.mul(dxhat, xh), -1, true);
        const dx = tf.mul(tf.sub(tf.sub(dxhat, m1), tf.mul(xh, m2)), rs);
        return [dx, tf.sum(tf.mul(dy, xh), 0), tf.sum(dy, 0), tf.zerosLike(eps)];
      }),
  };
});
export const layerNorm = (x: T2, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-5): T2 =>
  tf.tidy(() => layerNormOp(x, gamma, beta, tf.scalar(eps)) as T2);

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

/**
 * GELU, tanh approximation: 0.5 x (1 + tanh z) with z = c (x + a x^3), rewritten exactly as
 * x * sigmoid(2z) to avoid wasm's slow Tanh and Pow.
 */
const geluTanhOp = custom(([x], save) => {
  const x2 = tf.mul(x, x);
  const s = tf.sigmoid(tf.mul(x, tf.add(tf.mul(x2, 2 * GELU_C * GELU_A), 2 * GELU_C))); // sigmoid(2z)
  save([x, s]);
  return {
    value: tf.mul(x, s),
    gradFunc: (dy: tf.Tensor, [xs, ss]: tf.Tensor[]) =>
      tf.tidy(() => {
        // d/dx [x s(2z)] = s + x s (1 - s) 2 z',  z' = c (1 + 3 a x^2)
        const dz2 = tf.add(tf.mul(tf.mul(xs, xs), 2 * GELU_C * 3 * GELU_A), 2 * GELU_C);
        const ds = tf.mul(tf.mul(ss, tf.sub(1, ss)), tf.mul(xs, dz2));
        return [tf.mul(dy, tf.add(ss, ds))];
      }),
  };
});
export const geluTanh = <R extends tf.Rank>(x: tf.Tensor<R>): tf.Tensor<R> => geluTanhOp(x) as tf.Tensor<R>;

/** Exact GELU, x Φ(x) with Φ(x) = (1 + erf(x / √2)) / 2, as PyTorch's nn.GELU(). */
const geluOp = custom(([x], save) => {
  const cdf = tf.mul(tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1), 0.5);
  save([x, cdf]);
  return {
    value: tf.mul(x, cdf),
    // d/dx [x Φ(x)] = Φ(x) + x φ(x),  φ(x) = exp(-x^2 / 2) / √(2π)
    gradFunc: (dy: tf.Tensor, [xs, cs]: tf.Tensor[]) =>
      tf.tidy(() => {
        const pdf = tf.mul(tf.exp(tf.mul(tf.mul(xs, xs), -0.5)), 1 / Math.sqrt(2 * Math.PI));
        return [tf.mul(dy, tf.add(cs, tf.mul(xs, pdf)))];
      }),
  };
});
export const gelu = <R extends tf.Rank>(x: tf.Tensor<R>): tf.Tensor<R> => geluOp(x) as tf.Tensor<R>;

/**
 * Batched matmul c[g] = a[g] @ b[g] written as one depthwiseConv2d: the batch g becomes the
 * channel axis, a's rows the image height, the shared dimension K the filter width.
 *   a: [G, M, K], b: [G, K, N] -> [G, M, N]
 */
function bmmForward(a: T3, b: T3): T3 {
  return tf.tidy(() => {
    const [g, m, k] = a.shape;
    const n = b.shape[2];
    const x = tf.reshape(tf.transpose(a, [1, 2, 0]), [1, m, k, g]); // [1, M, K, G]
    const f = tf.reshape(tf.transpose(b, [1, 0, 2]), [1, k, g, n]); // [1, K, G, N]
    const y = tf.depthwiseConv2d(x as tf.Tensor4D, f as tf.Tensor4D, 1, 'valid'); // [1, M, 1, G*N]
    return tf.transpose(tf.reshape(y, [m, g, n]), [1, 0, 2]) as T3;
  });
}

/** a: [G, M, K], b: [G, K, N] -> [G, M, N]; gradients by the same kernel. */
const bmmOp = custom(([a, b], save) => {
  save([a, b]);
  return {
    value: bmmForward(a as T3, b as T3),
    gradFunc: (dy: tf.Tensor, [as, bs]: tf.Tensor[]) =>
      tf.tidy(() => [
        bmmForward(dy as T3, tf.transpose(bs as T3, [0, 2, 1])), // da = dy @ b^T
        bmmForward(tf.transpose(as as T3, [0, 2, 1]), dy as T3), // db = a^T @ dy
      ]),
  };
});
export const bmm = (a: T3, b: T3): T3 => bmmOp(a, b) as T3;

/** Softmax over the last axis with the compact backward dx = y * (dy - sum(dy * y)). */
const softmaxOp = custom(([x], save) => {
  const y = tf.softmax(x);
  save([y]);
  return {
    value: y,
    gradFunc: (dy: tf.Tensor, [ys]: tf.Tensor[]) =>
      tf.tidy(() => [tf.mul(ys, tf.sub(dy, tf.sum(tf.mul(dy, ys), -1, true)))]),
  };
});
export const softmax = <R extends tf.Rank>(x: tf.Tensor<R>): tf.Tensor<R> => softmaxOp(x) as tf.Tensor<R>;

/** The primitive ops the model is built from. */
export interface VitOps {
  linear: (x: T2, w: T2, b: tf.Tensor1D) => T2;
  linearNoBias: (x: T2, w: T2) => T2;
  layerNorm: (x: T2, gamma: tf.Tensor1D, beta: tf.Tensor1D) => T2;
  /** Exact GELU. */
  gelu: <R extends tf.Rank>(x: tf.Tensor<R>) => tf.Tensor<R>;
  /** GELU, tanh approximation. */
  geluTanh: <R extends tf.Rank>(x: tf.Tensor<R>) => tf.Tensor<R>;
  bmm: (a: T3, b: T3) => T3;
  softmax: <R extends tf.Rank>(x: tf.Tensor<R>) => tf.Tensor<R>;
}

/** The fast ops above. */
export const tfjsOps: VitOps = { linear, linearNoBias, layerNorm, gelu, geluTanh, bmm, softmax };

/** The same ops written plainly with stock tfjs ops and autodiff: the reference for tests. */
export const referenceOps: VitOps = {
  linear: (x: T2, w: T2, b: tf.Tensor1D): T2 => tf.add(tf.matMul(x, w), b) as T2,
  linearNoBias: (x: T2, w: T2): T2 => tf.matMul(x, w),
  layerNorm: (x: T2, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-5): T2 => {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps))), gamma), beta) as T2;
  },
  gelu: <R extends tf.Rank>(x: tf.Tensor<R>): tf.Tensor<R> =>
    tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))),
  geluTanh: <R extends tf.Rank>(x: tf.Tensor<R>): tf.Tensor<R> =>
    tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(GELU_C, tf.add(x, tf.mul(GELU_A, tf.pow(x, 3))))))),
  bmm: (a: T3, b: T3): T3 => tf.matMul(a, b),
  softmax: <R extends tf.Rank>(x: tf.Tensor<R>): tf.Tensor<R> => tf.softmax(x),
};
