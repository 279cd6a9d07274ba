// Attention of one (sample, head) for one ISA variant: T tokens (65 for CIFAR at patch 4), d = 16
// or 32 channels per head. Included by model.cc inside its variant's namespace.
//
// The head works in strips of kMR query rows: scores, softmax, dropout and the product with V for
// a strip follow each other while the strip is in L1. Rows of the T x T matrices are padded to Tp
// (a whole number of vectors, zeros past T) so that every row is whole vectors. K (forward) and V
// (backward) are transposed once per head into [d][Tp], the layout the register tiles read.
#pragma once
#include "gemm.h"
#include "layers.h"

namespace tfpipe {
namespace TFPIPE_ISA {

inline int padded(int n) { return (n + kLanes - 1) / kLanes * kLanes; }

// Per-thread scratch floats of attention_fwd_head / attention_bwd_head.
inline size_t head_scratch_floats(int T, int d) {
  const size_t Tp = padded(T);
  return (size_t)d * Tp + 2 * (size_t)T * Tp + kLanes;
}

// out[c][j] = in[j][c] (in: T rows of stride ld), c < d; zero for j in [T, Tp).
inline void transpose_head(int T, int d, int ld, const float* in, float* out, int Tp) {
  for (int c = 0; c < d; c++)
    for (int j = T; j < Tp; j++) out[(size_t)c * Tp + j] = 0.f;
  for (int j = 0; j < T; j++)
    for (int c = 0; c < d; c++) out[(size_t)c * Tp + j] = in[(size_t)j * ld + c];
}

// s[0, T) = softmax(s[0, T)) in place; s[T, Tp) = 0.
inline void softmax_row(int T, float* s) {
  const int nv = (T + kLanes - 1) / kLanes, last = nv - 1;
  const vi tail = lanes_below(T - last * kLanes);
  const vf lowest = splat(-3.0e38f);
  vf m = lowest;
  for (int v = 0; v < nv; v++) {
    vf x = load(s + v * kLanes);
    if (v == last) x = tail != 0 ? x : lowest;
    m = x > m ? x : m;
  }
  const float mx = hmax(m);
  vf sum{};
  for (int v = 0; v < nv; v++) {
    vf e = vexp(load(s + v * kLanes) - mx);
    if (v == last) e = as_float(tail & as_int(e));
    store(s + v * kLanes, e);
    sum += e;
  }
  const float inv = 1.f / hsum(sum);
  for (int v = 0; v < nv; v++) store(s + v * kLanes, load(s + v * kLanes) * inv);
}

// Forward of one head. q, k, v: the head's columns of its sample's rows (stride ld; q already
// scaled); P: [T][Tp] softmax(q k^T) (kept for the backward and the attention maps); out: the
// head's columns of the sample's attention output (stride ldo) = dropout(P) v. Element (i, j) of
// the head's dropout mask is element maskBase + i * T + j of the site (the TS numbering).
inline void attention_fwd_head(int T, int d, int ld, const float* q, const float* k, const float* v, float* P, float* out, int ldo,
                               const Dropout& drop, uint32_t dbase, size_t maskBase, float* scratch) {
  const int Tp = padded(T);
  float* kt = scratch;                // [d][Tp]
  float* pd = kt + (size_t)d * Tp;    // [kMR][Tp]: the strip's probabilities after dropout
  transpose_head(T, d, ld, k, kt, Tp);
  for (int i0 = 0; i0 < T; i0 += kMR) {
    const int mr = imin(kMR, T - i0);
    float* S = P + (size_t)i0 * Tp;
    // P is written once here and read back in the backward: ~10 MB a block, far past the caches,
    // so every line of it would cost a read for ownership from DRAM while the tile waits. Ask for
    // the lines two strips ahead (past the last strip: the next head's P, which follows).
    for (size_t e = 2 * kMR * (size_t)Tp; e < 3 * kMR * (size_t)Tp; e += 64 / sizeof(float)) __builtin_prefetch(S + e, 1);
    StoreTo scores{S, Tp};
    gemm_rows<false>(mr, Tp, d, q + (size_t)i0 * ld, ld, kt, Tp, scores);
    for (int r = 0; r < mr; r++) softmax_row(T, S + (size_t)r * Tp);
    const float* A = S;
    if (drop.active()) {
      for (int r = 0; r < mr; r++)
        for (int j = 0; j < Tp; j += kLanes)
          store(pd + (size_t)r * Tp + j, load(S + (size_t)r * Tp + j) * drop.mask(dbase, maskBase + (size_t)(i0 + r) * T + j));
      A = pd;
    }
    StoreTo o{out + (size_t)i0 * ldo, ldo};
    gemm_rows<false>(mr, d, T, A, Tp, v, ld, o);
  }
}

// Backward of one head given dout (stride ldo): dq (times `scale`, the factor q was scaled by),
// dk, dv at the head's columns (stride ld). ahead(i0, rows) is called once per strip of query
// rows: the caller prefetches the next head's rows there (see the backward in model.cc).
template <class Ahead>
inline void attention_bwd_head(int T, int d, int ld, const float* P, const float* q, const float* k, const float* v, const float* dout,
                               int ldo, float* dq, float* dk, float* dv, float scale, const Dropout& drop, uint32_t dbase,
                               size_t maskBase, float* scratch, Ahead ahead) {
  const int Tp = padded(T);
  float* vt = scratch;                // [d][Tp]
  float* pd = vt + (size_t)d * Tp;    // [T][Tp]: P after dropout
  float* ds = pd + (size_t)T * Tp;    // [T][Tp]: gradient of the scores
  transpose_head(T, d, ld, v, vt, Tp);
  const bool dropping = drop.active();
  for (int i0 = 0; i0 < T; i0 += kMR) {
    const int mr = imin(kMR, T - i0);
    ahead(i0, mr);
    // P was written in the forward, long out of cache: its rows two strips ahead (past the last
    // strip: the next head's, which follow).
    for (size_t e = 2 * kMR * (size_t)Tp; e < 3 * kMR * (size_t)Tp; e += 64 / sizeof(float)) __builtin_prefetch(P + (size_t)i0 * Tp + e);
    float* D = ds + (size_t)i0 * Tp;
    StoreTo st{D, Tp};
    gemm_rows<false>(mr, Tp, d, dout + (size_t)i0 * ldo, ldo, vt, Tp, st);  // d(dropped P) = dout v^T
    // Through the mask and the softmax: dp = dpd * m, ds = P (dp - sum(dp P)).
    for (int r = 0; r < mr; r++) {
      const int i = i0 + r;
      const float* pr = P + (size_t)i * Tp;
      float* dr = D + (size_t)r * Tp;
      vf dot{};
      for (int j = 0; j < Tp; j += kLanes) {
        vf g = load(dr + j);
        const vf p = load(pr + j);
        if (dropping) {
          const vf m = drop.mask(dbase, maskBase + (size_t)i * T + j);
          g *= m;
          store(dr + j, g);
          store(pd + (size_t)i * Tp + j, p * m);
        }
        dot += g * p;
      }
      const float dt = hsum(dot);
      for (int j = 0; j < Tp; j += kLanes) store(dr + j, load(pr + j) * (load(dr + j) - dt));
    }
    StoreTo gq{dq + (size_t)i0 * ld, ld, scale};
    gemm_rows<false>(mr, d, T, D, Tp, k, ld, gq);  // dq = ds k
  }
  StoreTo gv{dv, ld};
  gemm_rows<true>(T, d, T, dropping ? pd : P, Tp, dout, ldo, gv);  // dv = pd^T dout
  StoreTo gk{dk, ld};
  gemm_rows<true>(T, d, T, ds, Tp, q, ld, gk);  // dk = ds^T q
}

}  // namespace TFPIPE_ISA
}  // namespace tfpipe
