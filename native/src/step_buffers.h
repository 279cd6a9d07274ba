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
  W_DX, W_DRES2, W_DHID, W_DY2, W_DRES1, W_DQKV, W_DY1, W_DQKV_W, W_DEMB, W_DYH, W_DPOOLED, W_POOLED, W_POOL_WEIGHTS,
  W_DSCORES, W_SINCOS, W_BLOCKS
};
enum BlockSlot {
  K_XHAT1, K_RSTD1, K_Y1, K_QKV, K_P, K_O, K_XHAT2, K_RSTD2, K_Y2, K_H, K_G,
  K_PACK_QKV, K_PACK_OUT, K_PACK_FC1, K_PACK_FC2, K_PACKT_QKV, K_PACKT_OUT, K_PACKT_FC1, K_PACKT_FC2, K_COUNT
};
// The conv tokenizer's layers take theirs after the deepest model's blocks.
enum ConvSlot { C_IN, C_COLS, C_Y, C_DY, C_PACK, C_PACKT, C_COUNT };
constexpr int W_CONV = W_BLOCKS + K_COUNT * kMaxDepth;

struct Shape {
  int B, grid, N, cls, T, Tp, D, PD, R, IN, M, H, dh;
  // Conv tokenizer (convLayers 0 for patches): layer l's input side and channels in and out.
  int convLayers, side[kMaxConvLayers], cin[kMaxConvLayers], cout[kMaxConvLayers];
  explicit Shape(const Config& c)
      : B(c.batch), grid(token_grid(c)), N(grid * grid), cls(c.pool == kPoolCls ? 1 : 0), T(N + cls), Tp(padded(T)), D(c.dim),
        PD(c.channels * c.patch * c.patch), R(c.batch * T), IN(c.heads * c.dimHead), M(c.mlp), H(c.heads), dh(c.dimHead),
        convLayers(c.tokenizer == kConvTokens ? c.convLayers : 0) {
    for (int l = 0; l < convLayers; l++) {
      side[l] = c.image >> l;
      cin[l] = conv_in(c, l);
      cout[l] = conv_out(c, l);
    }
  }
  // Rows of conv layer l's im2col matrix (one per pixel) in a sample, and its columns (3 x 3 taps).
  int pixels(int l) const { return side[l] * side[l]; }
  int taps(int l) const { return 9 * cin[l]; }
};

// What a conv tokenizer layer keeps for its backward, and its packed kernel. in: its input, the
// previous layer's pooled output (none for layer 0: the images); y: ReLU(conv), before the pool.
struct ConvLayer {
  float *in, *cols, *y, *dy;
  float *pack, *packT;  // packed W (forward), W^T (backward; none for layer 0, whose input needs no gradient)
};

inline ConvLayer conv_layer(Workspace* ws, const Shape& s, int l) {
  const int base = W_CONV + C_COUNT * l;
  const size_t rows = (size_t)s.B * s.pixels(l);
  auto t = [&](int slot, size_t n) { return workspace_take(ws, base + slot, n); };
  return {l ? t(C_IN, rows * s.cin[l]) : nullptr, t(C_COLS, rows * s.taps(l)), t(C_Y, rows * s.cout[l]), t(C_DY, rows * s.cout[l]),
          t(C_PACK, packed_floats(s.taps(l), s.cout[l])), l ? t(C_PACKT, packed_floats(s.cout[l], s.taps(l))) : nullptr};
}

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

// Per-thread scratch of the conv tokenizer's backward for a micro-batch: the im2col gradient of a
// layer (conv_dcols_floats floats), then that of its input.
inline size_t conv_dcols_floats(const Shape& s) {
  size_t n = 0;
  for (int l = 1; l < s.convLayers; l++) n = n > (size_t)s.pixels(l) * s.taps(l) ? n : (size_t)s.pixels(l) * s.taps(l);
  return kMicro * n;
}
inline size_t conv_scratch_floats(const Shape& s) {
  size_t n = 0;
  for (int l = 1; l < s.convLayers; l++) n = n > (size_t)s.pixels(l) * s.cin[l] ? n : (size_t)s.pixels(l) * s.cin[l];
  return conv_dcols_floats(s) + kMicro * n;
}

// Per-thread scratch of the per-sample regions: one head's attention scratch and the attention
// output gradient of a micro-batch, or the conv tokenizer's backward scratch.
inline size_t thread_scratch_floats(const Shape& s) {
  const size_t blocks = head_scratch_floats(s.T, s.dh) + (size_t)kMicro * s.T * s.IN, conv = conv_scratch_floats(s);
  return (blocks > conv ? blocks : conv) + 64;
}

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
