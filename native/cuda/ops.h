// The per-element and per-row arithmetic of the GPU model, as functors that run on the GPU and on
// the host (hd.h). They mirror the CPU kernels (native/src/layers.h, attention.h, loss.cc,
// optimizer.cc) formula for formula, with the same dropout hash and element numbering, so both
// paths give the same numbers within float tolerance.
//
// Element functors are called as f(i); row functors as f(row, lane, width). Per-step scalars
// (dropout seed, learning rate, ...) are read from a Scalars struct in the executor's memory, so
// the same launches serve every step.
#pragma once
#include "hd.h"

namespace tfpipe {
namespace gpu {

// Written by the host before a step or an update; the last three fields by the GPU.
struct Scalars {
  uint32_t seed;       // dropout seed
  uint32_t threshold;  // drop when the hash's top 24 bits < threshold
  float keep;          // 1 / (1 - rate)
  int32_t dropout;     // masks on (training with dropout) or off
  double clipNorm;     // 0: no clipping
  float lr, bc1, bc2;  // learning rate, Adam's bias corrections 1 - beta^step
  float shrink;        // AdamW's 1 - lr * weight_decay (1 otherwise), for weights that decay
  int32_t step;        // optimizer step, 1 for the first
  int32_t correct;     // GPU: correct predictions of the batch
  double loss;         // GPU: mean loss of the batch
  double gradSq;       // GPU: squared global L2 norm of the gradients (before clipping)
};

// ---------------------------------------------------------------------------------------------
// Dropout masks: the hash of src/ml/vit/dropout.ts and native/src/layers.h. Element e of a site
// is kept when the top 24 bits of fmix32(base(site) ^ (e + 1) * 0xcc9e2d51) reach the threshold.

TFP_HD uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

struct Drop {
  const Scalars* s;
  int site;
  // 1 when dropout is off, else 0 or 1 / (1 - rate).
  TFP_HD float operator()(size_t e) const {
    if (!s->dropout) return 1.f;
    const uint32_t base = fmix32(s->seed * 0x9e3779b1u ^ (uint32_t)(site + 1) * 0x85ebca77u);
    const uint32_t h = fmix32(base ^ (((uint32_t)e + 1u) * 0xcc9e2d51u));
    return (h >> 8) >= s->threshold ? s->keep : 0.f;
  }
};

// ---------------------------------------------------------------------------------------------
// Embedding.

// Patches of NHWC images in (channel, row, col) order: out[b * N + p][k], k < PD.
struct Patchify {
  const float* img;
  Out out;
  int N, PD, grid, patch, image, channels;
  TFP_HD void operator()(size_t i) const {
    const size_t bp = i / PD;
    const int k = (int)(i % PD);
    const int b = (int)(bp / N), p = (int)(bp % N);
    const int gy = p / grid, gx = p % grid, pp = patch * patch;
    const int ch = k / pp, r = (k / patch) % patch, col = k % patch;
    out.put(i, img[(((size_t)b * image + gy * patch + r) * image + gx * patch + col) * channels + ch]);
  }
};

// x[b, t] = dropout(t == 0 ? cls + pos[0] : patches W + bias + pos[t]), emb = patches W.
struct Embed {
  const float *emb, *bias, *cls, *pos;
  float* x;
  Drop drop;
  int T, N, D;
  TFP_HD void operator()(size_t e) const {
    const int d = (int)(e % D), t = (int)((e / D) % T);
    const size_t b = e / ((size_t)T * D);
    const float v = t == 0 ? cls[d] + pos[d] : emb[(b * N + t - 1) * D + d] + bias[d] + pos[(size_t)t * D + d];
    x[e] = v * drop(e);
  }
};

// ---------------------------------------------------------------------------------------------
// Layer norm (eps 1e-5) of rows of D; the input row r is at x + r * rowMul * D (rowMul = T picks
// the class tokens for the head).

struct LnFwd {
  const float *x, *g, *b;
  float* xhat;
  Out y;
  float* rstd;
  int D, rowMul;
  TFP_HD void operator()(size_t r, int lane, int width) const {
    const float* xr = x + r * rowMul * D;
    float s = 0.f;
    for (int d = lane; d < D; d += width) s += xr[d];
    const float mu = lane_sum(s) / D;
    float q = 0.f;
    for (int d = lane; d < D; d += width) {
      const float c = xr[d] - mu;
      q += c * c;
    }
    const float rs = 1.f / sqrtf(lane_sum(q) / D + 1e-5f);
    for (int d = lane; d < D; d += width) {
      const float h = (xr[d] - mu) * rs;
      xhat[r * D + d] = h;
      y.put(r * D + d, h * g[d] + b[d]);
    }
    if (lane == 0) rstd[r] = rs;
  }
};

// dx += rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dy g; dx's row r is at
// dx + r * rowMul * D.
struct LnBwd {
  const float *xhat, *rstd, *g, *dy;
  float* dx;
  int D, rowMul;
  TFP_HD void operator()(size_t r, int lane, int width) const {
    const float *h = xhat + r * D, *d = dy + r * D;
    float s1 = 0.f, s2 = 0.f;
    for (int i = lane; i < D; i += width) {
      const float t = d[i] * g[i];
      s1 += t;
      s2 += t * h[i];
    }
    const float m1 = lane_sum(s1) / D, m2 = lane_sum(s2) / D, rs = rstd[r];
    float* o = dx + r * rowMul * D;
    for (int i = lane; i < D; i += width) o[i] += rs * (d[i] * g[i] - m1 - h[i] * m2);
  }
};

// ---------------------------------------------------------------------------------------------
// Bias, residual, GELU, dropout.

// x += dropout(y + bias): an output projection onto the residual stream; y is [rows, D].
struct BiasDropAdd {
  const float *y, *bias;
  float* x;
  Drop drop;
  int D;
  TFP_HD void operator()(size_t e) const { x[e] = x[e] + (y[e] + bias[e % D]) * drop(e); }
};

// y[e] += bias[e % n].
struct AddBias {
  float* y;
  const float* bias;
  int n;
  TFP_HD void operator()(size_t e) const { y[e] += bias[e % n]; }
};

// out = in x mask (in place allowed).
struct DropMul {
  const float* in;
  float* out;
  Drop drop;
  TFP_HD void operator()(size_t e) const { out[e] = in[e] * drop(e); }
};

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluA = 0.044715f;

// gelu(x) and gelu'(x) (activation as api.h: 1 exact, x Phi(x); 0 the tanh form).
TFP_HD float gelu_and_grad(int activation, float x, float* grad) {
  if (activation == 1) {
    const float cdf = 0.5f * erfcf(-x * 0.7071067811865476f);
    const float pdf = expf(-0.5f * x * x) * 0.3989422804014327f;
    *grad = cdf + x * pdf;
    return x * cdf;
  }
  // 0.5 x (1 + tanh z) = x sigmoid(2z), z = c (x + a x^3).
  const float s = 1.f / (1.f + expf(-2.f * kGeluC * (x + kGeluA * x * x * x)));
  *grad = s + x * s * (1.f - s) * (2.f * kGeluC) * (1.f + (3.f * kGeluA) * x * x);
  return x * s;
}

// h = y + bias; g = dropout(gelu(h)); hgrad = gelu'(h), all the backward needs of h.
struct BiasGelu {
  const float *y, *bias;
  Out g;
  float* hgrad;
  Drop drop;
  int M, activation;
  TFP_HD void operator()(size_t e) const {
    float d;
    const float v = gelu_and_grad(activation, y[e] + bias[e % M], &d);
    g.put(e, v * drop(e));
    hgrad[e] = d;
  }
};

// The bfloat16 copy of an fp32 array (the weights, for the bf16 products).
struct ToBf16 {
  const float* in;
  bf16* out;
  TFP_HD void operator()(size_t i) const { out[i] = to_bf16(in[i]); }
};

}  // namespace gpu
}  // namespace tfpipe
