// The ViT's forward pass and backward pass for one ISA variant (compiled once per variant, see
// isa.h). It mirrors src/ml/vit/vit.ts op for op (same layouts, same dropout sites and hash) so
// both give the same numbers within float tolerance; tests compare them.
//
// How the work is shared among threads, and why results do not depend on the thread count:
// - Everything but the weight gradients is per sample: the whole forward pass of a sample, and the
//   backward chain from one block's output gradient to its input gradient. Those run as one
//   parallel region over samples (the forward: one region for all blocks; the backward: one per
//   block), each thread walking its samples a micro-batch at a time so that a micro-batch's
//   activations stay in L2 from one op to the next. A sample's numbers are computed the same way
//   whichever thread holds it, so the split does not matter.
// - A weight gradient sums over all rows of the batch. Those sums run in a second region per block
//   (dw_jobs): each output element belongs to exactly one work unit, which sums over the rows in
//   order 0..R-1, so neither the number of threads nor the split of units changes the rounding.
// A step thus has about 2 regions per block, not ~40 (one per op) with serial code between them.
#include <math.h>

#include "attention.h"
#include "gemm.h"
#include "isa.h"
#include "layers.h"

namespace tfpipe {
namespace TFPIPE_ISA {

// Samples per micro-batch of the per-sample regions: 4 x 65 rows keep a micro-batch's widest
// activation (65 x 4 x 384 floats) within L2.
constexpr int kMicro = 4;

// ---------------------------------------------------------------------------------------------
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

Block block(Workspace* ws, const Shape& s, int l) {
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

// Activations kept for the backward (layer norm outputs, GELU outputs) are written once per step
// into buffers of several MB a block: without a hint, each line is first read from DRAM (for
// ownership) while the loop waits. Row loops ask for the lines this many floats ahead.
constexpr size_t kWriteAhead = 1024;
inline void prefetch_for_write(const float* p, size_t n) {
  for (size_t e = 0; e < n; e += 64 / sizeof(float)) __builtin_prefetch(p + e, 1);
}

// Layer norm of rows [r0, r1) of x into xhat, y, rstd.
void ln_fwd_rows(int D, size_t r0, size_t r1, const float* x, const float* g, const float* b, float* xhat, float* y, float* rstd) {
  const size_t ahead = kWriteAhead / D + 1;
  for (size_t r = r0; r < r1; r++) {
    if (r + ahead < r1) {
      prefetch_for_write(xhat + (r + ahead) * D, D);
      prefetch_for_write(y + (r + ahead) * D, D);
    }
    rstd[r] = ln_fwd_row(D, x + r * D, g, b, xhat + r * D, y + r * D);
  }
}

// ---------------------------------------------------------------------------------------------
// GEMM epilogues of the forward and backward chains (e(row, col, lanes, value), rows counted from
// the micro-batch's first row r0).

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

// The patch embedding: x[b, 1 + p] = dropout(patches W + b + pos[1 + p]).
struct Embed {
  float* x;
  int D, N, T;
  int firstSample;
  const float *bias, *pos;
  const Dropout& drop;
  uint32_t dbase;
  void operator()(int r, int c, int n, vf acc) const {
    const int b = firstSample + r / N, t = 1 + r % N;
    const size_t e = ((size_t)b * T + t) * D + c;
    vf y = acc + load_n(bias + c, n) + load_n(pos + (size_t)t * D + c, n);
    if (drop.active()) y *= drop.mask(dbase, e);
    store_n(x + e, y, n);
  }
  void prefetch(int r, int c) const { __builtin_prefetch(x + ((size_t)(firstSample + r / N) * T + 1 + r % N) * D + c, 1); }
};

// ---------------------------------------------------------------------------------------------
// Weight gradients: units of work that each own some output elements (see the top of the file).

struct DwJob {
  enum Kind { kGemm, kNorm, kPos } kind;
  int R;
  // kGemm: dW[I, O] (ldw) += X[R, I]^T DY[R, O]; db[O] += column sums of DY (optional).
  // kNorm: dW = gain gradient sum(DY * X), db = bias gradient sum(DY), over columns [0, O).
  // kPos:  DY = [B, T, O] input gradient of the tokens; dW[T, O] += sum over B; db (cls) += t = 0's.
  int I, O;
  const float *X, *DY;
  int ldx, ldy;
  float* dW;
  int ldw;
  float* db;
  int T;

  // Columns per kNorm unit: a cache line.
  static constexpr int kNormCols = 16;
  int units() const {
    if (kind == kGemm) return dw_strip_count(I);
    if (kind == kNorm) return (O + kNormCols - 1) / kNormCols;
    return T;
  }
  // Multiply-adds per unit (a kNorm unit reads two floats per multiply-add: weigh it double).
  double unit_cost() const {
    if (kind == kGemm) return (double)R * kMR * O;
    if (kind == kNorm) return 4.0 * R * kNormCols;
    return (double)R / T * O;
  }

  void run(int u0, int u1, float* pack) const {
    if (kind == kGemm) {
      dw_strips(R, I, O, X, ldx, DY, ldy, dW, ldw, u0 == 0 ? db : nullptr, u0, u1, pack);
    } else if (kind == kNorm) {
      for (int c0 = u0 * kNormCols; c0 < imin(O, u1 * kNormCols); c0 += kLanes) {
        const int n = imin(kLanes, O - c0);
        vf g = load_n(dW + c0, n), b = load_n(db + c0, n);
        for (int r = 0; r < R; r++) {
          const vf dy = load_n(DY + (size_t)r * ldy + c0, n);
          g += dy * load_n(X + (size_t)r * ldx + c0, n);
          b += dy;
        }
        store_n(dW + c0, g, n);
        store_n(db + c0, b, n);
      }
    } else {
      const int B = R / T;
      for (int t = u0; t < u1; t++)
        for (int c0 = 0; c0 < O; c0 += kLanes) {
          const int n = imin(kLanes, O - c0);
          vf s{};
          for (int b = 0; b < B; b++) s += load_n(DY + ((size_t)b * T + t) * ldy + c0, n);
          store_n(dW + (size_t)t * ldw + c0, load_n(dW + (size_t)t * ldw + c0, n) + s, n);
          if (t == 0) store_n(db + c0, load_n(db + c0, n) + s, n);
        }
    }
  }
};

DwJob gemm_job(int R, int I, int O, const float* X, const float* DY, int ldy, float* dW, float* db) {
  return {DwJob::kGemm, R, I, O, X, DY, I, ldy, dW, O, db, 0};
}
DwJob norm_job(int R, int D, const float* xhat, const float* dy, float* dg, float* db) {
  return {DwJob::kNorm, R, 0, D, xhat, dy, D, D, dg, D, db, 0};
}

// Runs the jobs' units across the threads: the units, in job order, are cut into one contiguous
// share per thread of about equal cost. A unit's result does not depend on the share it lands in.
void run_dw_jobs(Workspace* ws, const DwJob* jobs, int n) {
  double total = 0;
  for (int j = 0; j < n; j++) total += jobs[j].units() * jobs[j].unit_cost();
  const int shares = imax(1, get_threads());
  size_t per = 0;
  for (int j = 0; j < n; j++) per = per > dw_pack_floats(jobs[j].I, jobs[j].O) ? per : dw_pack_floats(jobs[j].I, jobs[j].O);
  float* pack = workspace_take(ws, W_DW_PACK, per * parallel_chunk_count(shares, 1));
  parallel_for_chunk(shares, [&](int chunk, int c0, int c1) {
    for (int c = c0; c < c1; c++) {
      const double lo = total * c / shares, hi = total * (c + 1) / shares;
      double start = 0;
      for (int j = 0; j < n; j++) {
        const DwJob& job = jobs[j];
        const double w = job.unit_cost();
        const int units = job.units();
        // Unit u belongs to the share holding its midpoint start + (u + 0.5) w.
        const int u0 = imax(0, imin(units, (int)ceil((lo - start) / w - 0.5)));
        const int u1 = imax(0, imin(units, (int)ceil((hi - start) / w - 0.5)));
        if (u0 < u1) job.run(u0, u1, pack + per * chunk);
        start += units * w;
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// The model.

// Patches of samples [b0, b1) in (channel, row, col) order from NHWC images.
void extract_patches(const Config& c, const Shape& s, int b0, int b1, const float* images, float* patches) {
  const int p = c.patch;
  for (int b = b0; b < b1; b++)
    for (int gy = 0; gy < s.grid; gy++)
      for (int gx = 0; gx < s.grid; gx++) {
        float* dst = patches + ((size_t)b * s.N + gy * s.grid + gx) * s.PD;
        for (int ch = 0; ch < c.channels; ch++)
          for (int r = 0; r < p; r++)
            for (int col = 0; col < p; col++)
              *dst++ = images[(((size_t)b * c.image + gy * p + r) * c.image + gx * p + col) * c.channels + ch];
      }
}

// Forward pass (keeping what the backward needs). Weights in layout order.
void forward(const Config& c, const float* const* W, const float* images, const DropoutSpec& spec, Workspace* ws, float* logits,
             float* attention) {
  SECTION("total_forward");
  const Shape s(c);
  const int B = s.B, N = s.N, T = s.T, Tp = s.Tp, D = s.D, PD = s.PD, IN = s.IN, M = s.M, H = s.H, dh = s.dh;
  const Dropout drop{spec};
  const float* const* Hw = &W[P_STEM_COUNT + B_COUNT * c.depth];
  float* patches = workspace_take(ws, W_PATCHES, (size_t)B * N * PD);
  float* x = workspace_take(ws, W_X, (size_t)s.R * D);
  float* hx = workspace_take(ws, W_HEAD_XHAT, (size_t)B * D);
  float* hr = workspace_take(ws, W_HEAD_RSTD, B);
  float* hy = workspace_take(ws, W_HEAD_Y, (size_t)B * D);
  float* colscale = workspace_take(ws, W_COLSCALE, 3 * (size_t)IN);
  const float scale = 1.f / sqrtf((float)dh);
  for (int i = 0; i < 3 * IN; i++) colscale[i] = i < IN ? scale : 1.f;
  float* packPatch = workspace_take(ws, W_PACK_PATCH, packed_floats(PD, D));
  Block blocks[kMaxDepth];
  for (int l = 0; l < c.depth; l++) blocks[l] = block(ws, s, l);

  {
    SECTION("pack_weights");
    for_each_item(1 + c.depth, [&](int i) {
      if (i == 0) return pack_w(PD, D, W[P_PATCH_W], D, packPatch);
      const float* const* w = &W[P_STEM_COUNT + B_COUNT * (i - 1)];
      const Block& k = blocks[i - 1];
      pack_b(D, 3 * IN, k.wqkv, [&](int r, int col) { return w[B_Q + col / IN][(size_t)r * IN + col % IN]; });
      pack_w(IN, D, w[B_OUT_W], D, k.wout);
      pack_w(D, M, w[B_FC1_W], M, k.w1);
      pack_w(M, D, w[B_FC2_W], D, k.w2);
    });
  }

  for_each_micro_batch(s, ws, [&](int b0, int b1, float* scratch) {
    const int rows = (b1 - b0) * T;
    const size_t r0 = (size_t)b0 * T;
    {
      SECTION("embedding");
      extract_patches(c, s, b0, b1, images, patches);
      Embed e{x, D, N, T, b0, W[P_PATCH_B], W[P_POS], drop, drop.base(kSiteEmbedding)};
      gemm_packed((b1 - b0) * N, PD, D, patches + (size_t)b0 * N * PD, PD, packPatch, e);
      for (int b = b0; b < b1; b++) {
        float* row = x + (size_t)b * T * D;
        for (int d = 0; d < D; d++) row[d] = W[P_CLS][d] + W[P_POS][d];
        drop.mul(drop.base(kSiteEmbedding), (size_t)b * T * D, D, row, row);
      }
    }
    for (int l = 0; l < c.depth; l++) {
      const Block& k = blocks[l];
      const float* const* w = &W[P_STEM_COUNT + B_COUNT * l];
      {
        SECTION("layernorm_fwd");
        ln_fwd_rows(D, r0, r0 + rows, x, w[B_LN1_G], w[B_LN1_B], k.xhat1, k.y1, k.rstd1);
      }
      {
        SECTION("linear_fwd_qkv");
        ScaledStore e{k.qkv + r0 * 3 * IN, 3 * IN, colscale};
        gemm_packed(rows, D, 3 * IN, k.y1 + r0 * D, D, k.wqkv, e);
      }
      {
        SECTION("attention_fwd");
        const uint32_t dbase = drop.base(site_of(l, S_ATTN_WEIGHTS));
        for (int b = b0; b < b1; b++)
          for (int hh = 0; hh < H; hh++) {
            const size_t bh = (size_t)b * H + hh;
            const float* q = k.qkv + (size_t)b * T * 3 * IN + (size_t)hh * dh;
            float* P = k.P + bh * T * Tp;
            attention_fwd_head(T, dh, 3 * IN, q, q + IN, q + 2 * IN, P, k.o + (size_t)b * T * IN + (size_t)hh * dh, IN, drop, dbase, bh * T * T,
                               scratch);
            if (attention)
              for (int i = 0; i < T; i++)
                std::memcpy(attention + (((size_t)l * B * H + bh) * T + i) * T, P + (size_t)i * Tp, T * sizeof(float));
          }
      }
      {
        SECTION("linear_fwd_out");
        ResidualAdd e{x, D, r0, w[B_OUT_B], drop, drop.base(site_of(l, S_ATTN_OUT))};
        gemm_packed(rows, IN, D, k.o + r0 * IN, IN, k.wout, e);
      }
      {
        SECTION("layernorm_fwd");
        ln_fwd_rows(D, r0, r0 + rows, x, w[B_LN2_G], w[B_LN2_B], k.xhat2, k.y2, k.rstd2);
      }
      {
        SECTION("linear_fwd_fc1");
        BiasStore e{k.h, M, r0, w[B_FC1_B]};
        gemm_packed(rows, D, M, k.y2 + r0 * D, D, k.w1, e);
      }
      {
        SECTION("gelu_fwd");
        gelu_fwd(c.activation, drop, drop.base(site_of(l, S_MLP_HIDDEN)), r0 * M, (size_t)rows * M, k.h, k.g);
      }
      {
        SECTION("linear_fwd_fc2");
        ResidualAdd e{x, D, r0, w[B_FC2_B], drop, drop.base(site_of(l, S_MLP_OUT))};
        gemm_packed(rows, M, D, k.g + r0 * M, M, k.w2, e);
      }
    }
    // Head on the class token.
    SECTION("head");
    for (int b = b0; b < b1; b++) {
      hr[b] = ln_fwd_row(D, x + (size_t)b * T * D, Hw[H_LN_G], Hw[H_LN_B], hx + (size_t)b * D, hy + (size_t)b * D);
      for (int o = 0; o < c.classes; o++) {
        float acc = Hw[H_B][o];
        for (int d = 0; d < D; d++) acc += hy[(size_t)b * D + d] * Hw[H_W][(size_t)d * c.classes + o];
        logits[(size_t)b * c.classes + o] = acc;
      }
    }
  });
}

// Backward from dlogits; grads (zeroed, layout order) are filled.
void backward(const Config& c, const float* const* W, float* const* G, const float* dlogits, const DropoutSpec& spec, Workspace* ws) {
  SECTION("total_backward");
  const Shape s(c);
  const int B = s.B, N = s.N, T = s.T, Tp = s.Tp, D = s.D, PD = s.PD, R = s.R, IN = s.IN, M = s.M, H = s.H, dh = s.dh, C = c.classes;
  const Dropout drop{spec};
  const float* const* Hw = &W[P_STEM_COUNT + B_COUNT * c.depth];
  float* const* GH = &G[P_STEM_COUNT + B_COUNT * c.depth];
  const float* hx = workspace_take(ws, W_HEAD_XHAT, (size_t)B * D);
  const float* hr = workspace_take(ws, W_HEAD_RSTD, B);
  const float* hy = workspace_take(ws, W_HEAD_Y, (size_t)B * D);
  float* dyh = workspace_take(ws, W_DYH, (size_t)B * D);
  float* dcls = workspace_take(ws, W_DCLS, (size_t)B * D);
  float* dx = workspace_take(ws, W_DX, (size_t)R * D);
  float* dres2 = workspace_take(ws, W_DRES2, (size_t)R * D);
  float* dhid = workspace_take(ws, W_DHID, (size_t)R * M);
  float* dy2 = workspace_take(ws, W_DY2, (size_t)R * D);
  float* dres1 = workspace_take(ws, W_DRES1, (size_t)R * D);
  float* dqkv = workspace_take(ws, W_DQKV, (size_t)R * 3 * IN);
  float* dy1 = workspace_take(ws, W_DY1, (size_t)R * D);
  float* dwqkv = workspace_take(ws, W_DQKV_W, (size_t)D * 3 * IN);
  const float scale = 1.f / sqrtf((float)dh);
  Block blocks[kMaxDepth];
  for (int l = 0; l < c.depth; l++) blocks[l] = block(ws, s, l);

  {
    SECTION("pack_weights");
    for_each_item(c.depth, [&](int l) {
      const float* const* w = &W[P_STEM_COUNT + B_COUNT * l];
      const Block& k = blocks[l];
      pack_b(3 * IN, D, k.wqkvT, [&](int r, int col) { return w[B_Q + r / IN][(size_t)col * IN + r % IN]; });
      pack_wt(D, IN, w[B_OUT_W], k.woutT);
      pack_wt(M, D, w[B_FC1_W], k.w1T);
      pack_wt(D, M, w[B_FC2_W], k.w2T);
    });
  }

  {
    // The head: a few hundred thousand multiply-adds, serial (sums over the batch in order).
    SECTION("head");
    for (int b = 0; b < B; b++) {
      const float* dl = dlogits + (size_t)b * C;
      for (int d = 0; d < D; d++) {
        float acc = 0.f;
        for (int o = 0; o < C; o++) acc += dl[o] * Hw[H_W][(size_t)d * C + o];
        dyh[(size_t)b * D + d] = acc;
        for (int o = 0; o < C; o++) GH[H_W][(size_t)d * C + o] += hy[(size_t)b * D + d] * dl[o];
      }
      for (int o = 0; o < C; o++) GH[H_B][o] += dl[o];
      std::memset(dcls + (size_t)b * D, 0, D * sizeof(float));
      ln_bwd_row(D, hx + (size_t)b * D, hr[b], Hw[H_LN_G], dyh + (size_t)b * D, dcls + (size_t)b * D);
      for (int d = 0; d < D; d++) {
        GH[H_LN_G][d] += dyh[(size_t)b * D + d] * hx[(size_t)b * D + d];
        GH[H_LN_B][d] += dyh[(size_t)b * D + d];
      }
    }
  }

  for (int l = c.depth - 1; l >= 0; l--) {
    const Block& k = blocks[l];
    const float* const* w = &W[P_STEM_COUNT + B_COUNT * l];
    float* const* g = &G[P_STEM_COUNT + B_COUNT * l];
    // From the gradient of the block's output (dx) to that of its input, per sample.
    for_each_micro_batch(s, ws, [&](int b0, int b1, float* scratch) {
      const int rows = (b1 - b0) * T;
      const size_t r0 = (size_t)b0 * T;
      if (l == c.depth - 1) {
        // Only the class tokens reach the head.
        std::memset(dx + r0 * D, 0, (size_t)rows * D * sizeof(float));
        for (int b = b0; b < b1; b++) std::memcpy(dx + (size_t)b * T * D, dcls + (size_t)b * D, D * sizeof(float));
      }
      // x2 = x1 + drop(fc2(drop(gelu(fc1(ln2(x1))))))
      {
        SECTION("dropout_bwd");
        drop.mul(drop.base(site_of(l, S_MLP_OUT)), r0 * D, (size_t)rows * D, dx + r0 * D, dres2 + r0 * D);
      }
      {
        SECTION("linear_bwd_dx_fc2");
        StoreTo e{dhid + r0 * M, M};
        gemm_packed(rows, D, M, dres2 + r0 * D, D, k.w2T, e);
      }
      {
        SECTION("gelu_bwd");
        gelu_bwd(drop, drop.base(site_of(l, S_MLP_HIDDEN)), r0 * M, (size_t)rows * M, k.h, dhid);
      }
      {
        SECTION("linear_bwd_dx_fc1");
        StoreTo e{dy2 + r0 * D, D};
        gemm_packed(rows, M, D, dhid + r0 * M, M, k.w1T, e);
      }
      {
        SECTION("layernorm_bwd");
        for (size_t r = r0; r < r0 + rows; r++) ln_bwd_row(D, k.xhat2 + r * D, k.rstd2[r], w[B_LN2_G], dy2 + r * D, dx + r * D);
      }
      // x1 = x + drop(to_out(attention(ln1(x))))
      {
        SECTION("dropout_bwd");
        drop.mul(drop.base(site_of(l, S_ATTN_OUT)), r0 * D, (size_t)rows * D, dx + r0 * D, dres1 + r0 * D);
      }
      float* dO = scratch + head_scratch_floats(T, dh);
      {
        SECTION("linear_bwd_dx_out");
        StoreTo e{dO, IN};
        gemm_packed(rows, D, IN, dres1 + r0 * D, D, k.woutT, e);
      }
      {
        SECTION("attention_bwd");
        const uint32_t dbase = drop.base(site_of(l, S_ATTN_WEIGHTS));
        for (int b = b0; b < b1; b++)
          for (int hh = 0; hh < H; hh++) {
            const size_t bh = (size_t)b * H + hh, off = (size_t)b * T * 3 * IN + (size_t)hh * dh;
            const float* q = k.qkv + off;
            float* dq = dqkv + off;
            // The next head's q, k, v rows (written in the forward, out of cache by now) and its
            // dq, dk, dv rows (written once: each line would be read for ownership while the
            // tile waits), a strip of rows at a time while this head computes. One line per row
            // each when dimHead is 16; wider heads prefetch their first line, the hardware the rest.
            const bool last = b + 1 == b1 && hh + 1 == H;
            const size_t next = hh + 1 < H ? off + dh : (size_t)(b + 1) * T * 3 * IN;
            auto ahead = [&](int i0, int rows) {
              if (last) return;
              for (int i = i0; i < i0 + rows; i++)
                for (int part = 0; part < 3; part++) {
                  const size_t e = next + (size_t)i * 3 * IN + (size_t)part * IN;
                  __builtin_prefetch(k.qkv + e);
                  __builtin_prefetch(dqkv + e, 1);
                }
            };
            attention_bwd_head(T, dh, 3 * IN, k.P + bh * T * Tp, q, q + IN, q + 2 * IN, dO + (size_t)(b - b0) * T * IN + (size_t)hh * dh, IN, dq,
                               dq + IN, dq + 2 * IN, scale, drop, dbase, bh * T * T, scratch, ahead);
          }
      }
      {
        SECTION("linear_bwd_dx_qkv");
        StoreTo e{dy1 + r0 * D, D};
        gemm_packed(rows, 3 * IN, D, dqkv + r0 * 3 * IN, 3 * IN, k.wqkvT, e);
      }
      {
        SECTION("layernorm_bwd");
        for (size_t r = r0; r < r0 + rows; r++) ln_bwd_row(D, k.xhat1 + r * D, k.rstd1[r], w[B_LN1_G], dy1 + r * D, dx + r * D);
      }
    });
    // The block's weight gradients, summed over all rows.
    {
      SECTION("weight_grads");
      std::memset(dwqkv, 0, (size_t)D * 3 * IN * sizeof(float));
      const DwJob jobs[] = {
          gemm_job(R, M, D, k.g, dres2, D, g[B_FC2_W], g[B_FC2_B]),
          gemm_job(R, D, M, k.y2, dhid, M, g[B_FC1_W], g[B_FC1_B]),
          gemm_job(R, IN, D, k.o, dres1, D, g[B_OUT_W], g[B_OUT_B]),
          gemm_job(R, D, 3 * IN, k.y1, dqkv, 3 * IN, dwqkv, nullptr),
          norm_job(R, D, k.xhat2, dy2, g[B_LN2_G], g[B_LN2_B]),
          norm_job(R, D, k.xhat1, dy1, g[B_LN1_G], g[B_LN1_B]),
      };
      run_dw_jobs(ws, jobs, sizeof jobs / sizeof jobs[0]);
      for (int d = 0; d < D; d++)
        for (int j = 0; j < 3 * IN; j++) g[B_Q + j / IN][(size_t)d * IN + j % IN] += dwqkv[(size_t)d * 3 * IN + j];
    }
  }
  // Embedding: x0 = drop([cls; patches W + b] + pos)
  float* demb = workspace_take(ws, W_DEMB, (size_t)B * N * D);
  {
    SECTION("embedding_bwd");
    const uint32_t dbase = drop.base(kSiteEmbedding);
    for_each_micro_batch(s, ws, [&](int b0, int b1, float*) {
      for (int b = b0; b < b1; b++) {
        float* rows = dx + (size_t)b * T * D;
        drop.mul(dbase, (size_t)b * T * D, (size_t)T * D, rows, rows);
        std::memcpy(demb + (size_t)b * N * D, rows + D, (size_t)N * D * sizeof(float));
      }
    });
  }
  {
    SECTION("weight_grads");
    const DwJob jobs[] = {
        gemm_job(B * N, PD, D, workspace_take(ws, W_PATCHES, (size_t)B * N * PD), demb, D, G[P_PATCH_W], G[P_PATCH_B]),
        {DwJob::kPos, R, 0, D, nullptr, dx, 0, D, G[P_POS], D, G[P_CLS], T},
    };
    run_dw_jobs(ws, jobs, 2);
  }
}

// Independent multiply-add chains in registers, enough to cover the FMA latency on every ISA here.
double peak_gflops(double seconds) {
  constexpr int kChains = 12;
  vf acc[kChains];
  for (int i = 0; i < kChains; i++) acc[i] = splat(1e-3f * (i + 1));
  const vf m = splat(0.999f), a = splat(1e-4f);
  const double t0 = wall_seconds();
  double t = t0;
  long rounds = 0;
  while (t - t0 < seconds) {
    for (int r = 0; r < 100000; r++) {
      for (int i = 0; i < kChains; i++) acc[i] = acc[i] * m + a;
    }
    rounds += 100000;
    t = wall_seconds();
  }
  float sink = 0;
  for (int i = 0; i < kChains; i++) sink += acc[i][0];
  volatile float keep = sink;
  (void)keep;
  return rounds * (double)kChains * kLanes * 2 / (t - t0) / 1e9;
}

const Kernels kKernels = {TFPIPE_STR(TFPIPE_ISA), kLanes, kMR, kPanel, forward, backward, peak_gflops};

const Kernels* kernels() { return &kKernels; }

}  // namespace TFPIPE_ISA
}  // namespace tfpipe
