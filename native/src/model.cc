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
//   (run_dw_jobs, weight_grads.h): each output element belongs to exactly one work unit, which sums
//   over the rows in order 0..R-1, so neither the number of threads nor the split of units changes
//   the rounding.
// A step thus has about 2 regions per block, not ~40 (one per op) with serial code between them.
//
// The buffers and the regions over micro-batches are in step_buffers.h, the GEMM epilogues and the
// row passes (layer norm, GELU) in epilogues.h, the FLOPs probe the bench uses in peak.h.
#include <math.h>

#include "attention.h"
#include "epilogues.h"
#include "gemm.h"
#include "isa.h"
#include "layers.h"
#include "peak.h"
#include "step_buffers.h"
#include "weight_grads.h"

namespace tfpipe {
namespace TFPIPE_ISA {

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
      run_dw_jobs(ws, W_DW_PACK, jobs, sizeof jobs / sizeof jobs[0]);
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
    run_dw_jobs(ws, W_DW_PACK, jobs, 2);
  }
}

const Kernels kKernels = {TFPIPE_STR(TFPIPE_ISA), kLanes, kMR, kPanel, forward, backward, peak_gflops};

const Kernels* kernels() { return &kKernels; }

}  // namespace TFPIPE_ISA
}  // namespace tfpipe
