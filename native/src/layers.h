// Element- and row-wise pieces of the model for one ISA variant: dropout masks, layer norm rows,
// GELU. Included by model.cc inside its variant's namespace. They work on one row or one vector
// at a time so that the GEMM epilogues and the per-sample loops of model.cc can fuse them.
#pragma once
#include <math.h>

#include "isa.h"

namespace tfpipe {
namespace TFPIPE_ISA {

// ---------------------------------------------------------------------------------------------
// Dropout masks: the same counter-based hash as src/ml/vit/dropout.ts (element e of a site is kept
// when the top 24 bits of fmix32(base(site) ^ (e + 1) * 0xcc9e2d51) reach the threshold).

// One body for scalars and vectors (GCC vector types take the same operators).
template <typename T>
inline T fmix32(T h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

struct Dropout {
  const DropoutSpec& spec;
  vu lane1 = lane_index_plus_one();
  bool active() const { return spec.active; }
  uint32_t base(int site) const { return fmix32<uint32_t>(spec.seed * 0x9e3779b1u ^ (uint32_t)(site + 1) * 0x85ebca77u); }
  // 0 or 1 / (1 - rate) for elements [e, e + kLanes) of the site with base b.
  vf mask(uint32_t b, size_t e) const {
    const vu h = fmix32<vu>(b ^ (((uint32_t)e + lane1) * 0xcc9e2d51u));
    const vi kept = (vi)((h >> 8) >= spec.threshold);
    return as_float(kept & as_int(splat(spec.keep)));
  }
  // y[i] = x[i] * mask(e0 + i), i in [0, n); y may be x. Plain copy when inactive.
  void mul(uint32_t b, size_t e0, size_t n, const float* x, float* y) const {
    size_t i = 0;
    if (!spec.active) {
      if (x != y) std::memcpy(y, x, n * sizeof(float));
      return;
    }
    for (; i + kLanes <= n; i += kLanes) store(y + i, load(x + i) * mask(b, e0 + i));
    if (i < n) store_n(y + i, load_n(x + i, (int)(n - i)) * mask(b, e0 + i), (int)(n - i));
  }
};

inline int site_of(int block, BlockSite s) { return 1 + kSitesPerBlock * block + s; }

// ---------------------------------------------------------------------------------------------
// Layer norm of one row of D: y = xhat * g + b; returns 1 / std.

inline float ln_fwd_row(int D, const float* x, const float* g, const float* b, float* xhat, float* y) {
  const float mu = rowsum(D, x) / D;
  const float rs = 1.f / sqrtf(rowsqdev(D, x, mu) / D + 1e-5f);
  int d = 0;
  for (; d + kLanes <= D; d += kLanes) {
    const vf h = (load(x + d) - mu) * rs;
    store(xhat + d, h);
    store(y + d, h * load(g + d) + load(b + d));
  }
  for (; d < D; d++) {
    const float h = (x[d] - mu) * rs;
    xhat[d] = h;
    y[d] = h * g[d] + b[d];
  }
  return rs;
}

// dx += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * g.
inline void ln_bwd_row(int D, const float* xhat, float rstd, const float* g, const float* dy, float* dx) {
  vf s1{}, s2{};
  int d = 0;
  for (; d + kLanes <= D; d += kLanes) {
    const vf h = load(dy + d) * load(g + d);
    s1 += h;
    s2 += h * load(xhat + d);
  }
  float m1 = hsum(s1), m2 = hsum(s2);
  for (int e = d; e < D; e++) {
    const float h = dy[e] * g[e];
    m1 += h;
    m2 += h * xhat[e];
  }
  m1 /= D;
  m2 /= D;
  for (d = 0; d + kLanes <= D; d += kLanes)
    store(dx + d, load(dx + d) + rstd * (load(dy + d) * load(g + d) - m1 - load(xhat + d) * m2));
  for (; d < D; d++) dx[d] += rstd * (dy[d] * g[d] - m1 - xhat[d] * m2);
}

// ---------------------------------------------------------------------------------------------
// GELU: exact (x Phi(x), as PyTorch's nn.GELU()) or the tanh approximation.

const float GELU_C = 0.7978845608028654f;  // sqrt(2 / pi)
const float GELU_A = 0.044715f;

// tanh form: 0.5 x (1 + tanh z) = x sigmoid(2z), z = c (x + a x^3).
inline vf sigmoid2z(vf v) { return 1.f / (1.f + vexp(v * (v * v * (-2.f * GELU_C * GELU_A) - 2.f * GELU_C))); }

// Phi(x), the standard normal CDF, and its density phi(x). With z = |x| / sqrt 2, erfc(z) =
// poly(t) exp(-z^2), t = 1 / (1 + p z) (Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7); then
// Phi = erfc(z) / 2 for x < 0 and 1 - erfc(z) / 2 otherwise, which keeps the left tail precise.
inline vf vphi(vf x, vf* pdf) {
  const vf ax = x < 0 ? -x : x;
  const vf z = ax * 0.7071067811865476f;
  const vf t = 1.f / (1.f + 0.3275911f * z);
  vf poly = splat(1.061405429f);
  poly = poly * t - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  poly = poly * t;
  const vf e = vexp(-(z * z));  // = exp(-x^2 / 2)
  *pdf = e * 0.3989422804014327f;
  const vf half_erfc = 0.5f * poly * e;
  return x < 0 ? half_erfc : 1.f - half_erfc;
}

// gelu(x), and gelu'(x) into *grad. tanh form: x s with s = sigmoid(2z), gelu' = s + x s (1 - s)
// 2 c (1 + 3 a x^2); exact: x Phi(x), gelu' = Phi(x) + x phi(x). One evaluation gives both: the
// forward keeps gelu' for the backward instead of evaluating Phi (or s) a second time.
inline vf gelu_and_grad(int activation, vf v, vf* grad) {
  if (activation == kGeluErf) {
    vf pdf;
    const vf cdf = vphi(v, &pdf);
    *grad = cdf + v * pdf;
    return v * cdf;
  }
  const vf s = sigmoid2z(v);
  *grad = s + v * s * (1.f - s) * (2.f * GELU_C) * (1.f + (3.f * GELU_A) * v * v);
  return v * s;
}

}  // namespace TFPIPE_ISA
}  // namespace tfpipe
