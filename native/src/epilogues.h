// What the per-sample chains of the model (model.cc) do with a GEMM's tile while it is in
// registers (epilogue functors e(row, col, lanes, value), rows counted from the micro-batch's first
// row r0), and the passes over a micro-batch's rows that are not fused into a GEMM (layer norm,
// GELU). Included by model.cc inside its variant's namespace; compiled once per variant.
#pragma once
#include "gemm.h"
#include "layers.h"

namespace tfpipe {
namespace TFPIPE_ISA {

// Activations kept for the backward (layer norm outputs, GELU outputs) are written once per step
// into buffers of several MB a block: without a hint, each line is first read from DRAM (for
// ownership) while the loop waits. Row loops ask for the lines this many floats ahead.
constexpr size_t kWriteAhead = 1024;
inline void prefetch_for_write(const float* p, size_t n) {
  for (size_t e = 0; e < n; e += 64 / sizeof(float)) __builtin_prefetch(p + e, 1);
}

// Layer norm of rows [r0, r1) of x into xhat, y, rstd.
inline void ln_fwd_rows(int D, size_t r0, size_t r1, const float* x, const float* g, const float* b, float* xhat, float* y, float* rstd) {
  const size_t ahead = kWriteAhead / D + 1;
  for (size_t r = r0; r < r1; r++) {
    if (r + ahead < r1) {
      prefetch_for_write(xhat + (r + ahead) * D, D);
      prefetch_for_write(y + (r + ahead) * D, D);
    }
    rstd[r] = ln_fwd_row(D, x + r * D, g, b, xhat + r * D, y + r * D);
  }
}

// x += dropout(acc + bias): the attention output and MLP output projections onto the residual.
struct ResidualAdd {
  float* x;
  int ld;
  size_t r0;
  const float* bias;
  const Dropout& drop;
  uint32_t dbase;
  void operator()(int r, int c, int n, vf acc) const {
    const size_t e = (r0 + r) * ld + c;
    vf y = acc + load_n(bias + c, n);
    if (drop.active()) y *= drop.mask(dbase, e);
    store_n(x + e, load_n(x + e, n) + y, n);
  }
  void prefetch(int r, int c) const { __builtin_prefetch(x + (r0 + r) * ld + c, 1); }
};

// y = acc + bias.
struct BiasStore {
  float* y;
  int ld;
  size_t r0;
  const float* bias;
  void operator()(int r, int c, int n, vf acc) const { store_n(y + (r0 + r) * ld + c, acc + load_n(bias + c, n), n); }
  void prefetch(int r, int c) const { __builtin_prefetch(y + (r0 + r) * ld + c, 1); }
};

// GELU runs as a pass over a micro-batch's rows after the GEMM, not in its epilogue: its ~40
// operations per vector on top of 12 live accumulators made the fused tile spill (measured 1.7x
// slower than GEMM + pass, avx2 on Zen 4), and the rows are still in L2 for the pass.
// g = dropout(gelu(h)) over elements [e0, e0 + n); h is overwritten with gelu'(h), the only use
// the backward has for it (one evaluation of the CDF instead of two: ~10% of the avx2 step).
void gelu_fwd(int activation, const Dropout& drop, uint32_t dbase, size_t e0, size_t n, float* h, float* g) {
  for (size_t i = 0; i < n; i += kLanes) {
    const int m = (int)imin(kLanes, (int)(n - i));
    if (i % (64 / sizeof(float)) == 0) __builtin_prefetch(g + e0 + i + kWriteAhead, 1);
    vf grad;
    vf y = gelu_and_grad(activation, load_n(h + e0 + i, m), &grad);
    if (drop.active()) y *= drop.mask(dbase, e0 + i);
    store_n(g + e0 + i, y, m);
    store_n(h + e0 + i, grad, m);
  }
}

// dh = dh * mask * gelu'(h) over elements [e0, e0 + n): back through the hidden layer's dropout
// and GELU, with gelu'(h) as the forward left it (gelu_fwd).
void gelu_bwd(const Dropout& drop, uint32_t dbase, size_t e0, size_t n, const float* grad, float* dh) {
  for (size_t i = 0; i < n; i += kLanes) {
    const int m = (int)imin(kLanes, (int)(n - i));
    vf d = load_n(dh + e0 + i, m);
    if (drop.active()) d *= drop.mask(dbase, e0 + i);
    store_n(dh + e0 + i, d * load_n(grad + e0 + i, m), m);
  }
}

// qkv = acc * colscale (1 / sqrt(dimHead) on q's columns, 1 on k's and v's).
struct ScaledStore {
  float* y;
  int ld;
  const float* colscale;
  void operator()(int r, int c, int n, vf acc) const { store_n(y + (size_t)r * ld + c, acc * load_n(colscale + c, n), n); }
  void prefetch(int r, int c) const { __builtin_prefetch(y + (size_t)r * ld + c, 1); }
};

// The patch embedding: x[b, first + p] = dropout(patches W + b + pos[p]), first = 1 after a class
// token; pos: the image tokens' positions [N, D], or none.
struct Embed {
  float* x;
  int D, N, T, first;
  int firstSample;
  const float *bias, *pos;
  const Dropout& drop;
  uint32_t dbase;
  void operator()(int r, int c, int n, vf acc) const {
    const int b = firstSample + r / N, p = r % N;
    const size_t e = ((size_t)b * T + first + p) * D + c;
    vf y = acc + load_n(bias + c, n);
    if (pos) y += load_n(pos + (size_t)p * D + c, n);
    if (drop.active()) y *= drop.mask(dbase, e);
    store_n(x + e, y, n);
  }
  void prefetch(int r, int c) const { __builtin_prefetch(x + ((size_t)(firstSample + r / N) * T + first + r % N) * D + c, 1); }
};

// y = max(acc, 0): a conv tokenizer layer's ReLU.
struct ReluStore {
  float* y;
  int ld;
  void operator()(int r, int c, int n, vf acc) const { store_n(y + (size_t)r * ld + c, vmax(acc, vf{}), n); }
  void prefetch(int r, int c) const { __builtin_prefetch(y + (size_t)r * ld + c, 1); }
};

}  // namespace TFPIPE_ISA
}  // namespace tfpipe
