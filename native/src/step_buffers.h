// What a step of the model (model.cc) keeps and how it walks the batch: the workspace slots of
// every activation the backward needs and of the scratch, a model's sizes (Shape), a block's
// buffers and packed weights (Block), and the parallel regions over micro-batches of samples.
// Included by model.cc inside its variant's namespace; compiled once per variant.
#pragma once
#include "attention.h"
#include "gemm.h"

namespace tfpipe {
namespace TFPIPE_ISA {

// Samples per micro-batch of the per-sample regions: 4 x 65 rows keep a micro-batch's widest
// activation (65 x 4 x 384 floats) within L2.
constexpr int kMicro = 4;

// Workspace slots: one buffer per activation kept for the backward, per scratch use.

enum Slot {
  W_PATCHES, W_X, W_HEAD_XHAT, W_HEAD_RSTD, W_HEAD_Y, W_COLSCALE, W_SCRATCH, W_PACK_PATCH, W_PACK_HEAD, W_DW_PACK,
  W_DX, W_DRES2, W_DHID, W_DY2, W_DRES1, W_DQKV, W_DY1, W_DQKV_W, W_DEMB, W_DYH, W_DCLS, W_BLOCKS
};
enum BlockSlot {
  K_XHAT1, K_RSTD1, K_Y1, K_QKV, K_P, K_O, K_XHAT2, K_RSTD2, K_Y2, K_H, K_G,
  K_PACK_QKV, K_PACK_OUT, K_PACK_FC1, K_PACK_FC2, K_PACKT_QKV, K_PACKT_OUT, K_PACKT_FC1, K_PACKT_FC2, K_COUNT
};

struct Shape {
  int B, N, T, Tp, D, PD, R, IN, M, H, dh, grid;
  explicit Shape(const Config& c)
      : B(c.batch), N((c.image / c.patch) * (c.image / c.patch)), T(N + 1), Tp(padded(T)), D(c.dim), PD(c.channels * c.patch * c.patch),
        R(c.batch * T), IN(c.heads * c.dimHead), M(c.mlp), H(c.heads), dh(c.dimHead), grid(c.image / c.patch) {}
};

// What a block keeps for its backward, and its packed weights.
struct Block {
  float *xhat1, *rstd1, *y1, *qkv, *P, *o, *xhat2, *rstd2, *y2, *h, *g;  // h: fc1's output, then gelu'(it)
  float *wqkv, *wout, *w1, *w2;      // packed W (forward)
  float *wqkvT, *woutT, *w1T, *w2T;  // packed W^T (backward)
};

inline Block block(Workspace* ws, const Shape& s, int l) {
  const int base = W_BLOCKS + K_COUNT * l;
  const size_t R = s.R, D = s.D, IN = s.IN, M = s.M;
  auto t = [&](int slot, size_t n) { return workspace_take(ws, base + slot, n); };
  return {t(K_XHAT1, R * D), t(K_RSTD1, R), t(K_Y1, R * D), t(K_QKV, R * 3 * IN), t(K_P, (size_t)s.B * s.H * s.T * s.Tp), t(K_O, R * IN),
          t(K_XHAT2, R * D), t(K_RSTD2, R), t(K_Y2, R * D), t(K_H, R * M), t(K_G, R * M),
          t(K_PACK_QKV, packed_floats(s.D, 3 * s.IN)), t(K_PACK_OUT, packed_floats(s.IN, s.D)), t(K_PACK_FC1, packed_floats(s.D, s.M)),
          t(K_PACK_FC2, packed_floats(s.M, s.D)), t(K_PACKT_QKV, packed_floats(3 * s.IN, s.D)), t(K_PACKT_OUT, packed_floats(s.D, s.IN)),
          t(K_PACKT_FC1, packed_floats(s.M, s.D)), t(K_PACKT_FC2, packed_floats(s.D, s.M))};
}

// Per-thread scratch of the per-sample regions: one head's attention scratch and the attention
// output gradient of a micro-batch.
inline size_t thread_scratch_floats(const Shape& s) { return head_scratch_floats(s.T, s.dh) + (size_t)kMicro * s.T * s.IN + 64; }

// Runs f(b0, b1, scratch) over every micro-batch [b0, b1) of the batch, the samples shared out
// among the threads.
template <class F>
void for_each_micro_batch(const Shape& s, Workspace* ws, F f) {
  const size_t per = thread_scratch_floats(s);
  float* scratch = workspace_take(ws, W_SCRATCH, per * parallel_chunk_count(s.B, 1));
  parallel_for_chunk(s.B, [&](int chunk, int b0, int b1) {
    for (int b = b0; b < b1; b += kMicro) f(b, imin(b1, b + kMicro), scratch + per * chunk);
  });
}

// Runs f(i) for i in [0, n) across the threads (a few large independent items, e.g. packing).
template <class F>
void for_each_item(int n, F f) {
  parallel_for(n, [&](int b, int e) {
    for (int i = b; i < e; i++) f(i);
  });
}

}  // namespace TFPIPE_ISA
}  // namespace tfpipe
