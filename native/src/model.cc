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

// A model's arrays by role (param_index, layout.cc): stem[p] and head[p] null where the config has
// no such parameter. P: const float* for the weights, float* for the gradients.
template <class P>
struct Params {
  P stem[P_STEM_COUNT], head[H_COUNT];
  const P* blocks;
  Params(const Config& c, const P* all) {
    const ParamIndex ix = param_index(c);
    for (int p = 0; p < P_STEM_COUNT; p++) stem[p] = ix.stem[p] < 0 ? nullptr : all[ix.stem[p]];
    for (int p = 0; p < H_COUNT; p++) head[p] = ix.head[p] < 0 ? nullptr : all[ix.head[p]];
    blocks = all + ix.blocks;
  }
  const P* block(int l) const { return blocks + B_COUNT * l; }
};

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

// The positions added to the image tokens, [N, D] (learned: pos_embedding past the class token's
// row; sincos: the fixed table), or null for none.
const float* image_positions(const Config& c, const Shape& s, const float* pos, Workspace* ws) {
  if (c.posEmbedding == kPosLearned) return pos + (size_t)s.cls * s.D;
  if (c.posEmbedding == kPosNone) return nullptr;
  float* table = workspace_take(ws, W_SINCOS, (size_t)s.N * s.D);
  sincos_positions(s.grid, s.D, table);
  return table;
}

// --- Conv tokenizer: per layer x = maxpool3x3s2(relu(conv3x3(x))), as src/ml/vit/vit.ts ---------

// The 3 x 3 taps of every pixel of one sample (S x S pixels of C channels, NHWC) as the rows of
// an im2col matrix [S*S, 9C], columns in (ky, kx, c) order (the HWIO kernel's rows); zero padding.
void im2col(int S, int C, const float* in, float* cols) {
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++)
      for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++) {
          float* dst = cols + ((size_t)(y * S + x) * 9 + ky * 3 + kx) * C;
          const int iy = y + ky - 1, ix = x + kx - 1;
          if (iy < 0 || iy >= S || ix < 0 || ix >= S)
            std::memset(dst, 0, (size_t)C * sizeof(float));
          else
            std::memcpy(dst, in + ((size_t)iy * S + ix) * C, (size_t)C * sizeof(float));
        }
}

// The gradient of im2col: din (zeroed by the caller) += every tap's gradient at its pixel.
void col2im(int S, int C, const float* dcols, float* din) {
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++)
      for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++) {
          const int iy = y + ky - 1, ix = x + kx - 1;
          if (iy < 0 || iy >= S || ix < 0 || ix >= S) continue;
          const float* src = dcols + ((size_t)(y * S + x) * 9 + ky * 3 + kx) * C;
          float* dst = din + ((size_t)iy * S + ix) * C;
          for (int c = 0; c < C; c++) dst[c] += src[c];
        }
}

// Max-pool 3 x 3, stride 2, of one sample's S x S x C map into (S/2)^2 x C: output i covers rows
// (and columns) 2i..2i+2 below S (tf.maxPool 'same' on an even side pads only past the end).
void maxpool_fwd(int S, int C, const float* y, float* out) {
  const int So = S / 2;
  for (int oy = 0; oy < So; oy++)
    for (int ox = 0; ox < So; ox++)
      for (int c0 = 0; c0 < C; c0 += kLanes) {
        const int n = imin(kLanes, C - c0);
        vf m = load_n(y + ((size_t)2 * oy * S + 2 * ox) * C + c0, n);
        for (int iy = 2 * oy; iy < imin(S, 2 * oy + 3); iy++)
          for (int ix = 2 * ox; ix < imin(S, 2 * ox + 3); ix++) m = vmax(m, load_n(y + ((size_t)iy * S + ix) * C + c0, n));
        store_n(out + ((size_t)oy * So + ox) * C + c0, m, n);
      }
}

// Back through max-pool and ReLU: dy = (the pooled gradient at each window's first maximum, summed
// where windows overlap) where y > 0, else 0 (ReLU's gradient at 0 is 0, as tfjs's).
void maxpool_relu_bwd(int S, int C, const float* y, const float* dout, float* dy) {
  const int So = S / 2;
  std::memset(dy, 0, (size_t)S * S * C * sizeof(float));
  for (int oy = 0; oy < So; oy++)
    for (int ox = 0; ox < So; ox++)
      for (int c = 0; c < C; c++) {
        size_t arg = ((size_t)2 * oy * S + 2 * ox) * C + c;
        for (int iy = 2 * oy; iy < imin(S, 2 * oy + 3); iy++)
          for (int ix = 2 * ox; ix < imin(S, 2 * ox + 3); ix++) {
            const size_t e = ((size_t)iy * S + ix) * C + c;
            if (y[e] > y[arg]) arg = e;
          }
        dy[arg] += dout[((size_t)oy * So + ox) * C + c];
      }
  for (size_t e = 0; e < (size_t)S * S * C; e++)
    if (!(y[e] > 0.f)) dy[e] = 0.f;
}

// The conv tokenizer on samples [b0, b1) into their image token rows of x (before positions).
void conv_tokens_fwd(const Shape& s, const ConvLayer* L, const float* images, int b0, int b1, float* x) {
  for (int l = 0; l < s.convLayers; l++) {
    const int S = s.side[l], P = s.pixels(l), K = s.taps(l), co = s.cout[l];
    const float* in = l ? L[l].in : images;
    for (int b = b0; b < b1; b++) im2col(S, s.cin[l], in + (size_t)b * P * s.cin[l], L[l].cols + (size_t)b * P * K);
    ReluStore e{L[l].y + (size_t)b0 * P * co, co};
    gemm_packed((b1 - b0) * P, K, co, L[l].cols + (size_t)b0 * P * K, K, L[l].pack, e);
    for (int b = b0; b < b1; b++) {
      float* out = l + 1 < s.convLayers ? L[l + 1].in + (size_t)b * (P / 4) * co : x + ((size_t)b * s.T + s.cls) * s.D;
      maxpool_fwd(S, co, L[l].y + (size_t)b * P * co, out);
    }
  }
}

// From the gradient of the image token rows (dx, after the embedding's dropout) to dy of every
// conv layer, samples [b0, b1); the weight gradients follow from dy (conv_jobs).
void conv_tokens_bwd(const Shape& s, const ConvLayer* L, int b0, int b1, const float* dx, float* scratch) {
  float* dcols = scratch;
  float* din = scratch + conv_dcols_floats(s);
  for (int l = s.convLayers - 1; l >= 0; l--) {
    const int S = s.side[l], P = s.pixels(l), K = s.taps(l), co = s.cout[l];
    for (int b = b0; b < b1; b++) {
      const float* dout = l + 1 < s.convLayers ? din + (size_t)(b - b0) * (P / 4) * co : dx + ((size_t)b * s.T + s.cls) * s.D;
      maxpool_relu_bwd(S, co, L[l].y + (size_t)b * P * co, dout, L[l].dy + (size_t)b * P * co);
    }
    if (l == 0) break;  // the images need no gradient
    StoreTo e{dcols, K};
    gemm_packed((b1 - b0) * P, co, K, L[l].dy + (size_t)b0 * P * co, co, L[l].packT, e);
    std::memset(din, 0, (size_t)(b1 - b0) * P * s.cin[l] * sizeof(float));
    for (int b = b0; b < b1; b++) col2im(S, s.cin[l], dcols + (size_t)(b - b0) * P * K, din + (size_t)(b - b0) * P * s.cin[l]);
  }
}

// --- Pooling: the vector the head reads --------------------------------------------------------

// A sample's pooled vector from its T token rows, and the weight of each token in it: the class
// token (row 0); the mean; or sequence pooling, softmax over tokens of x_t w + bias.
void pool_fwd(int pool, int T, int D, const float* x, const float* w, const float* bias, float* pooled, float* weights) {
  if (pool == kPoolCls) {
    std::memcpy(pooled, x, (size_t)D * sizeof(float));
    for (int t = 0; t < T; t++) weights[t] = t == 0 ? 1.f : 0.f;
    return;
  }
  if (pool == kPoolMean) {
    for (int t = 0; t < T; t++) weights[t] = 1.f / T;
  } else {
    float mx = -3.0e38f;
    for (int t = 0; t < T; t++) {
      weights[t] = rowdot(D, x + (size_t)t * D, w) + bias[0];
      mx = fmax2(mx, weights[t]);
    }
    float sum = 0.f;
    for (int t = 0; t < T; t++) sum += weights[t] = expf(weights[t] - mx);
    for (int t = 0; t < T; t++) weights[t] /= sum;
  }
  std::memset(pooled, 0, (size_t)D * sizeof(float));
  for (int t = 0; t < T; t++)
    for (int d = 0; d < D; d++) pooled[d] += weights[t] * x[(size_t)t * D + d];
}

// A sample's token gradients from its pooled vector's, g: weight_t g, plus ds_t w (the gradient
// through the scores) for sequence pooling.
void pool_bwd(int pool, int T, int D, const float* g, const float* weights, const float* ds, const float* w, float* dx) {
  if (pool == kPoolCls) {
    std::memset(dx, 0, (size_t)T * D * sizeof(float));
    std::memcpy(dx, g, (size_t)D * sizeof(float));
    return;
  }
  for (int t = 0; t < T; t++)
    for (int d = 0; d < D; d++) dx[(size_t)t * D + d] = weights[t] * g[d] + (ds ? ds[t] * w[d] : 0.f);
}

// Forward pass (keeping what the backward needs). Weights in model order.
void forward(const Config& c, const float* const* W, const float* images, const DropoutSpec& spec, Workspace* ws, float* logits,
             float* attention, float* pool) {
  SECTION("total_forward");
  const Shape s(c);
  const int B = s.B, N = s.N, T = s.T, Tp = s.Tp, D = s.D, PD = s.PD, IN = s.IN, M = s.M, H = s.H, dh = s.dh;
  const Dropout drop{spec};
  const Params<const float*> P(c, W);
  const float* const* Hw = P.head;
  const bool patch = c.tokenizer == kPatchTokens;
  float* patches = patch ? workspace_take(ws, W_PATCHES, (size_t)B * N * PD) : nullptr;
  float* x = workspace_take(ws, W_X, (size_t)s.R * D);
  float* pooled = workspace_take(ws, W_POOLED, (size_t)B * D);
  float* poolw = workspace_take(ws, W_POOL_WEIGHTS, (size_t)B * T);
  float* hx = workspace_take(ws, W_HEAD_XHAT, (size_t)B * D);
  float* hr = workspace_take(ws, W_HEAD_RSTD, B);
  float* hy = workspace_take(ws, W_HEAD_Y, (size_t)B * D);
  float* colscale = workspace_take(ws, W_COLSCALE, 3 * (size_t)IN);
  const float scale = 1.f / sqrtf((float)dh);
  for (int i = 0; i < 3 * IN; i++) colscale[i] = i < IN ? scale : 1.f;
  float* packPatch = patch ? workspace_take(ws, W_PACK_PATCH, packed_floats(PD, D)) : nullptr;
  const float* imagePos = image_positions(c, s, P.stem[P_POS], ws);
  Block blocks[kMaxDepth];
  for (int l = 0; l < c.depth; l++) blocks[l] = block(ws, s, l);
  ConvLayer conv[kMaxConvLayers];
  for (int l = 0; l < s.convLayers; l++) conv[l] = conv_layer(ws, s, l);

  {
    SECTION("pack_weights");
    for_each_item(1 + c.depth + s.convLayers, [&](int i) {
      if (i == 0) {
        if (patch) pack_w(PD, D, P.stem[P_PATCH_W], D, packPatch);
      } else if (i > c.depth) {
        const int l = i - 1 - c.depth;
        pack_w(s.taps(l), s.cout[l], P.stem[P_CONV0 + l], s.cout[l], conv[l].pack);
      } else {
        const float* const* w = P.block(i - 1);
        const Block& k = blocks[i - 1];
        pack_b(D, 3 * IN, k.wqkv, [&](int r, int col) { return w[B_Q + col / IN][(size_t)r * IN + col % IN]; });
        pack_w(IN, D, w[B_OUT_W], D, k.wout);
        pack_w(D, M, w[B_FC1_W], M, k.w1);
        pack_w(M, D, w[B_FC2_W], D, k.w2);
      }
    });
  }

  for_each_micro_batch(s, ws, [&](int b0, int b1, float* scratch) {
    const int rows = (b1 - b0) * T;
    const size_t r0 = (size_t)b0 * T;
    {
      SECTION("embedding");
      const uint32_t dbase = drop.base(kSiteEmbedding);
      if (patch) {
        extract_patches(c, s, b0, b1, images, patches);
        Embed e{x, D, N, T, s.cls, b0, P.stem[P_PATCH_B], imagePos, drop, dbase};
        gemm_packed((b1 - b0) * N, PD, D, patches + (size_t)b0 * N * PD, PD, packPatch, e);
      } else {
        conv_tokens_fwd(s, conv, images, b0, b1, x);
        for (int b = b0; b < b1; b++) {
          float* rows = x + ((size_t)b * T + s.cls) * D;
          if (imagePos)
            for (size_t e = 0; e < (size_t)N * D; e++) rows[e] += imagePos[e];
          drop.mul(dbase, ((size_t)b * T + s.cls) * D, (size_t)N * D, rows, rows);
        }
      }
      for (int b = b0; b < b1 && s.cls; b++) {
        float* row = x + (size_t)b * T * D;
        for (int d = 0; d < D; d++) row[d] = P.stem[P_CLS][d] + (c.posEmbedding == kPosLearned ? P.stem[P_POS][d] : 0.f);
        drop.mul(dbase, (size_t)b * T * D, D, row, row);
      }
    }
    for (int l = 0; l < c.depth; l++) {
      const Block& k = blocks[l];
      const float* const* w = P.block(l);
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
    // Head on the pooled tokens.
    SECTION("head");
    for (int b = b0; b < b1; b++) {
      float* v = pooled + (size_t)b * D;
      pool_fwd(c.pool, T, D, x + (size_t)b * T * D, Hw[H_POOL_W], Hw[H_POOL_B], v, poolw + (size_t)b * T);
      hr[b] = ln_fwd_row(D, v, Hw[H_LN_G], Hw[H_LN_B], hx + (size_t)b * D, hy + (size_t)b * D);
      for (int o = 0; o < c.classes; o++) {
        float acc = Hw[H_B][o];
        for (int d = 0; d < D; d++) acc += hy[(size_t)b * D + d] * Hw[H_W][(size_t)d * c.classes + o];
        logits[(size_t)b * c.classes + o] = acc;
      }
    }
  });
  if (pool) std::memcpy(pool, poolw, (size_t)B * T * sizeof(float));
}

// Backward from dlogits; grads (zeroed, model order) are filled.
void backward(const Config& c, const float* const* W, float* const* G, const float* dlogits, const DropoutSpec& spec, Workspace* ws) {
  SECTION("total_backward");
  const Shape s(c);
  const int B = s.B, N = s.N, T = s.T, Tp = s.Tp, D = s.D, PD = s.PD, R = s.R, IN = s.IN, M = s.M, H = s.H, dh = s.dh, C = c.classes;
  const Dropout drop{spec};
  const Params<const float*> P(c, W);
  const Params<float*> GP(c, G);
  const float* const* Hw = P.head;
  float* const* GH = GP.head;
  const bool patch = c.tokenizer == kPatchTokens;
  const float* x = workspace_take(ws, W_X, (size_t)R * D);
  const float* pooled = workspace_take(ws, W_POOLED, (size_t)B * D);
  const float* poolw = workspace_take(ws, W_POOL_WEIGHTS, (size_t)B * T);
  const float* hx = workspace_take(ws, W_HEAD_XHAT, (size_t)B * D);
  const float* hr = workspace_take(ws, W_HEAD_RSTD, B);
  const float* hy = workspace_take(ws, W_HEAD_Y, (size_t)B * D);
  float* dyh = workspace_take(ws, W_DYH, (size_t)B * D);
  float* dpooled = workspace_take(ws, W_DPOOLED, (size_t)B * D);
  float* dscores = c.pool == kPoolSeq ? workspace_take(ws, W_DSCORES, (size_t)B * T) : nullptr;
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
  ConvLayer conv[kMaxConvLayers];
  for (int l = 0; l < s.convLayers; l++) conv[l] = conv_layer(ws, s, l);

  {
    SECTION("pack_weights");
    // Layer 0 of a conv tokenizer needs no W^T: its input (the images) gets no gradient.
    const int convT = s.convLayers ? s.convLayers - 1 : 0;
    for_each_item(c.depth + convT, [&](int i) {
      if (i >= c.depth) {
        const int l = i - c.depth + 1;
        pack_wt(s.cout[l], s.taps(l), P.stem[P_CONV0 + l], conv[l].packT);
        return;
      }
      const float* const* w = P.block(i);
      const Block& k = blocks[i];
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
      float* g = dpooled + (size_t)b * D;
      std::memset(g, 0, D * sizeof(float));
      ln_bwd_row(D, hx + (size_t)b * D, hr[b], Hw[H_LN_G], dyh + (size_t)b * D, g);
      for (int d = 0; d < D; d++) {
        GH[H_LN_G][d] += dyh[(size_t)b * D + d] * hx[(size_t)b * D + d];
        GH[H_LN_B][d] += dyh[(size_t)b * D + d];
      }
      if (dscores) {
        // Sequence pooling: ds_t = a_t (g x_t - g pooled); the score weights sum ds_t x_t.
        const float gp = rowdot(D, g, pooled + (size_t)b * D);
        for (int t = 0; t < T; t++) {
          const float* xt = x + ((size_t)b * T + t) * D;
          const float ds = poolw[(size_t)b * T + t] * (rowdot(D, g, xt) - gp);
          dscores[(size_t)b * T + t] = ds;
          for (int d = 0; d < D; d++) GH[H_POOL_W][d] += ds * xt[d];
          GH[H_POOL_B][0] += ds;
        }
      }
    }
  }

  for (int l = c.depth - 1; l >= 0; l--) {
    const Block& k = blocks[l];
    const float* const* w = P.block(l);
    float* const* g = GP.block(l);
    // From the gradient of the block's output (dx) to that of its input, per sample.
    for_each_micro_batch(s, ws, [&](int b0, int b1, float* scratch) {
      const int rows = (b1 - b0) * T;
      const size_t r0 = (size_t)b0 * T;
      if (l == c.depth - 1) {
        // Only the pooling reaches the head.
        for (int b = b0; b < b1; b++)
          pool_bwd(c.pool, T, D, dpooled + (size_t)b * D, poolw + (size_t)b * T, dscores ? dscores + (size_t)b * T : nullptr, Hw[H_POOL_W],
                   dx + (size_t)b * T * D);
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
  // Embedding: x0 = drop([cls; tokens] + positions), tokens = patches W + b or the conv tokenizer's.
  float* demb = patch ? workspace_take(ws, W_DEMB, (size_t)B * N * D) : nullptr;
  {
    SECTION("embedding_bwd");
    const uint32_t dbase = drop.base(kSiteEmbedding);
    for_each_micro_batch(s, ws, [&](int b0, int b1, float* scratch) {
      for (int b = b0; b < b1; b++) {
        float* rows = dx + (size_t)b * T * D;
        drop.mul(dbase, (size_t)b * T * D, (size_t)T * D, rows, rows);
        if (patch) std::memcpy(demb + (size_t)b * N * D, rows + (size_t)s.cls * D, (size_t)N * D * sizeof(float));
      }
      if (!patch) conv_tokens_bwd(s, conv, b0, b1, dx, scratch);
    });
  }
  {
    SECTION("weight_grads");
    DwJob jobs[1 + kMaxConvLayers];
    int n = 0;
    if (GP.stem[P_POS] || GP.stem[P_CLS]) jobs[n++] = {DwJob::kPos, R, 0, D, nullptr, dx, 0, D, GP.stem[P_POS], D, GP.stem[P_CLS], T};
    if (patch)
      jobs[n++] = gemm_job(B * N, PD, D, workspace_take(ws, W_PATCHES, (size_t)B * N * PD), demb, D, GP.stem[P_PATCH_W], GP.stem[P_PATCH_B]);
    for (int l = 0; l < s.convLayers; l++)
      jobs[n++] = gemm_job(B * s.pixels(l), s.taps(l), s.cout[l], conv[l].cols, conv[l].dy, s.cout[l], GP.stem[P_CONV0 + l], nullptr);
    run_dw_jobs(ws, W_DW_PACK, jobs, n);
  }
}

const Kernels kKernels = {TFPIPE_STR(TFPIPE_ISA), kLanes, kMR, kPanel, forward, backward, peak_gflops};

const Kernels* kernels() { return &kKernels; }

}  // namespace TFPIPE_ISA
}  // namespace tfpipe
