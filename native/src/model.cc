// The ViT's forward pass and backward pass for one ISA variant (compiled once per variant, see
// isa.h). It mirrors src/ml/vit/vit.ts op for op (same layouts, same dropout sites and hash) so
// both give the same numbers within float tolerance; tests compare them.
#include <math.h>

#include "gemm.h"
#include "isa.h"

namespace tfpipe {
namespace TFPIPE_ISA {

// ---------------------------------------------------------------------------------------------
// Workspace slots: one buffer per activation kept for the backward, per scratch use.

enum Slot {
  W_PATCHES, W_X, W_EMB, W_TMP, W_CLS, W_HEAD_XHAT, W_HEAD_RSTD, W_HEAD_Y, W_TMPW, W_TN, W_ATTN_SCRATCH, W_LN_SCRATCH,
  W_DX, W_DRES, W_DHID, W_DY, W_DO, W_DQ, W_DK, W_DV, W_DEMB, W_DCLS, W_DYH, W_BLOCKS
};
enum BlockSlot { K_XHAT1, K_RSTD1, K_Y1, K_Q, K_K, K_V, K_ATTN, K_O, K_XHAT2, K_RSTD2, K_Y2, K_H, K_G, K_COUNT };

struct Shape {
  int B, N, T, D, PD, R, IN, grid;
  explicit Shape(const Config& c)
      : B(c.batch), N((c.image / c.patch) * (c.image / c.patch)), T(N + 1), D(c.dim), PD(c.channels * c.patch * c.patch),
        R(c.batch * T), IN(c.heads * c.dimHead), grid(c.image / c.patch) {}
};

struct BlockCache {
  float *xhat1, *rstd1, *y1, *q, *k, *v, *attn, *o, *xhat2, *rstd2, *y2, *h, *g;
};

BlockCache block_cache(Workspace* ws, const Config& c, const Shape& s, int l) {
  const int base = W_BLOCKS + K_COUNT * l;
  const size_t R = s.R, D = s.D, IN = s.IN, M = c.mlp;
  auto t = [&](int slot, size_t n) { return workspace_take(ws, base + slot, n); };
  return {t(K_XHAT1, R * D), t(K_RSTD1, R), t(K_Y1, R * D), t(K_Q, R * IN), t(K_K, R * IN), t(K_V, R * IN),
          t(K_ATTN, (size_t)s.B * c.heads * s.T * s.T), t(K_O, R * IN), t(K_XHAT2, R * D), t(K_RSTD2, R), t(K_Y2, R * D),
          t(K_H, R * M), t(K_G, R * M)};
}

// ---------------------------------------------------------------------------------------------
// Linear layers.

// y[R,O] = x[R,I] w[I,O] + b
void linear_fwd(int R, int I, int O, const float* x, const float* w, const float* b, float* y) {
  SECTION("linear_fwd");
  if (b) {
    parallel_for(R, [&](int s, int e) {
      for (int r = s; r < e; r++) std::memcpy(y + (size_t)r * O, b, O * sizeof(float));
      gemm_rows(s, e, O, I, x, I, w, O, y, O, true);
    }, 4);
  } else {
    gemm(R, O, I, x, I, w, O, y, O, false);
  }
}

// Given dy[R,O]: dw += x^T dy, db += sum(dy), dx (=/+=) dy w^T.
void linear_bwd(Workspace* ws, int R, int I, int O, const float* x, const float* w, const float* dy, float* dw, float* db, float* dx,
                bool dx_acc) {
  {
    SECTION("linear_bwd_dw");
    gemm_tn_acc(R, I, O, x, dy, dw, workspace_take(ws, W_TN, tn_scratch_floats(R, I, O)));
  }
  SECTION("linear_bwd_dx_db");
  if (db) {
    for (int r = 0; r < R; r++) {
      const float* d = dy + (size_t)r * O;
      for (int o = 0; o < O; o++) db[o] += d[o];
    }
  }
  if (dx) {
    float* wt = workspace_take(ws, W_TMPW, (size_t)O * I);
    transpose(I, O, w, wt);
    gemm(R, I, O, dy, O, wt, I, dx, I, dx_acc);
  }
}

// ---------------------------------------------------------------------------------------------
// Dropout masks: the same counter-based hash as src/ml/vit/dropout.ts.

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
  bool active() const { return spec.active; }
  uint32_t base(int site) const { return fmix32<uint32_t>(spec.seed * 0x9e3779b1u ^ (uint32_t)(site + 1) * 0x85ebca77u); }

  // y[i] = x[i] * mask(site, start + i) for i in [0, n).
  void mul(int site, size_t start, size_t n, const float* x, float* y) const {
    const uint32_t b = base(site);
    const vu lane = lane_index_plus_one();
    const uint32_t thr = spec.threshold;
    const vf kv = splat(spec.keep);
    map_vec(n, x, y, [&](vf v, size_t i) {
      vu h = fmix32<vu>(b ^ (((uint32_t)(start + i) + lane) * 0xcc9e2d51u));
      vi kept = (vi)((h >> 8) >= thr);  // all ones where kept
      return v * as_float(kept & as_int(kv));
    });
  }

  // x[i] *= mask(site, i) for i in [0, n)
  void apply(int site, size_t n, float* x) const {
    if (!spec.active) return;
    SECTION("dropout");
    parallel_for((int)n, [&](int b, int e) { mul(site, b, e - b, x + b, x + b); }, kLanes);
  }
};

inline int site_of(int block, BlockSite s) { return 1 + kSitesPerBlock * block + s; }

// ---------------------------------------------------------------------------------------------
// Layer norm over rows of [R, D]: y = xhat * g + b; keeps xhat and rstd for the backward.

void layernorm_fwd(int R, int D, const float* x, const float* g, const float* b, float* xhat, float* rstd, float* y) {
  SECTION("layernorm_fwd");
  parallel_for(R, [&](int s, int e) {
    for (int r = s; r < e; r++) {
      const float* xr = x + (size_t)r * D;
      float mu = rowsum(D, xr) / D;
      float var = rowsqdev(D, xr, mu) / D;
      float rs = 1.f / sqrtf(var + 1e-5f);
      rstd[r] = rs;
      for (int d = 0; d < D; d++) {
        float h = (xr[d] - mu) * rs;
        xhat[(size_t)r * D + d] = h;
        y[(size_t)r * D + d] = h * g[d] + b[d];
      }
    }
  });
}

// dx += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)); dg += sum(dy*xhat); db += sum(dy)
void layernorm_bwd(Workspace* ws, int R, int D, const float* xhat, const float* rstd, const float* g, const float* dy, float* dg,
                   float* db, float* dx) {
  SECTION("layernorm_bwd");
  float* scratch = workspace_take(ws, W_LN_SCRATCH, (size_t)parallel_chunk_count(R, 1) * D);
  parallel_for_chunk(R, [&](int chunk, int s, int e) {
    float* dxh = scratch + (size_t)chunk * D;
    for (int r = s; r < e; r++) {
      const float* xr = xhat + (size_t)r * D;
      const float* dr = dy + (size_t)r * D;
      for (int d = 0; d < D; d++) dxh[d] = dr[d] * g[d];
      float m1 = rowsum(D, dxh) / D;
      float m2 = rowdot(D, dxh, xr) / D;
      for (int d = 0; d < D; d++) dx[(size_t)r * D + d] += rstd[r] * (dxh[d] - m1 - xr[d] * m2);
    }
  });
  for (int r = 0; r < R; r++)
    for (int d = 0; d < D; d++) {
      dg[d] += dy[(size_t)r * D + d] * xhat[(size_t)r * D + d];
      db[d] += dy[(size_t)r * D + d];
    }
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

void gelu_fwd(int activation, size_t n, const float* x, float* y) {
  SECTION("gelu_fwd");
  if (activation == kGeluErf)
    parallel_for((int)n, [&](int b, int e) {
      map_vec(e - b, x + b, y + b, [](vf v, size_t) {
        vf pdf;
        return v * vphi(v, &pdf);
      });
    }, kLanes);
  else
    parallel_for((int)n, [&](int b, int e) { map_vec(e - b, x + b, y + b, [](vf v, size_t) { return v * sigmoid2z(v); }); }, kLanes);
}

// dy *= gelu'(x), in place. tanh form: s + x s (1 - s) 2 c (1 + 3 a x^2) with s = sigmoid(2z);
// exact: Phi(x) + x phi(x).
void gelu_bwd(int activation, size_t n, const float* x, float* dy) {
  SECTION("gelu_bwd");
  parallel_for((int)n, [&](int b, int e) {
    float tmp[256];
    for (int c0 = b; c0 < e; c0 += 256) {
      int len = imin(256, e - c0);
      if (activation == kGeluErf)
        map_vec(len, x + c0, tmp, [](vf v, size_t) {
          vf pdf;
          vf cdf = vphi(v, &pdf);
          return cdf + v * pdf;
        });
      else
        map_vec(len, x + c0, tmp, [](vf v, size_t) {
          vf s = sigmoid2z(v);
          return s + v * s * (1.f - s) * (2.f * GELU_C) * (1.f + (3.f * GELU_A) * v * v);
        });
      for (int i = 0; i < len; i++) dy[c0 + i] *= tmp[i];
    }
  }, kLanes);
}

// ---------------------------------------------------------------------------------------------
// Attention.

// Scratch floats per thread for attention_head / attention_head_bwd.
inline size_t attn_scratch_floats(int T, int d) { return 3 * (size_t)T * T + 2 * (size_t)d * T + T; }

// One (batch, head): q,k,v rows of stride `ld` at the head's column offset.
// attn[T,T] = softmax(q k^T) (q already scaled); out = dropout(attn) v.
void attention_head(int T, int d, int ld, const float* q, const float* k, const float* v, float* attn, float* out, const Dropout& drop,
                    int site, size_t maskBase, float* scratch) {
  float* kt = scratch;               // [d, T]
  float* pd = kt + (size_t)d * T;    // [T, T]
  float* maxes = pd + (size_t)T * T;  // [T]
  for (int j = 0; j < T; j++)
    for (int c = 0; c < d; c++) kt[(size_t)c * T + j] = k[(size_t)j * ld + c];
  gemm_rows(0, T, T, d, q, ld, kt, T, attn, T, false);
  for (int i = 0; i < T; i++) maxes[i] = rowmax(T, attn + (size_t)i * T);
  for (int i = 0; i < T; i++)
    for (int j = 0; j < T; j++) attn[(size_t)i * T + j] -= maxes[i];
  map_vec((size_t)T * T, attn, attn, [](vf x, size_t) { return vexp(x); });
  for (int i = 0; i < T; i++) {
    float* row = attn + (size_t)i * T;
    float inv = 1.f / rowsum(T, row);
    for (int j = 0; j < T; j++) row[j] *= inv;
  }
  const float* p = attn;
  if (drop.active()) {
    drop.mul(site, maskBase, (size_t)T * T, attn, pd);
    p = pd;
  }
  gemm_rows(0, T, d, T, p, T, v, ld, out, ld, false);
}

// Backward of one (batch, head) given dout; writes dq (unscaled), dk, dv at the head's columns.
void attention_head_bwd(int T, int d, int ld, const float* P, const float* q, const float* k, const float* v, const float* dout,
                        float* gq, float* gk, float* gv, const Dropout& drop, int site, size_t maskBase, float* scratch) {
  float* dp = scratch;                 // [T, T]
  float* pd = dp + (size_t)T * T;      // [T, T]
  float* mask = pd + (size_t)T * T;    // [T, T]
  float* vt = mask + (size_t)T * T;    // [d, T]
  // The head's dropout mask m (regenerated from the hash); pd = P * m.
  const float* pdp = P;
  if (drop.active()) {
    for (size_t i = 0; i < (size_t)T * T; i++) mask[i] = 1.f;
    drop.mul(site, maskBase, (size_t)T * T, mask, mask);
    for (size_t i = 0; i < (size_t)T * T; i++) pd[i] = P[i] * mask[i];
    pdp = pd;
  }
  gemm_rows(0, T, d, T, pdp, 1, dout, ld, gv, ld, false, T);  // dv = pd^T dout (pd read transposed)
  for (int j = 0; j < T; j++)
    for (int c = 0; c < d; c++) vt[(size_t)c * T + j] = v[(size_t)j * ld + c];
  gemm_rows(0, T, T, d, dout, ld, vt, T, dp, T, false);  // dpd = dout v^T
  // Through the mask and the softmax: ds = P (dp - sum(dp P)), dp = dpd * m.
  for (int i = 0; i < T; i++) {
    float* row = dp + (size_t)i * T;
    const float* pr = P + (size_t)i * T;
    if (drop.active())
      for (int j = 0; j < T; j++) row[j] *= mask[(size_t)i * T + j];
    float dot = rowdot(T, row, pr);
    for (int j = 0; j < T; j++) row[j] = pr[j] * (row[j] - dot);
  }
  gemm_rows(0, T, d, T, dp, T, k, ld, gq, ld, false);     // dq = ds k
  gemm_rows(0, T, d, T, dp, 1, q, ld, gk, ld, false, T);  // dk = ds^T q (ds read transposed)
}

// Runs f(bh, off, scratch) for every (batch, head) pair bh across the threads: off is the head's
// column offset in the [B*T, heads*dimHead] activations, scratch the chunk's own scratch.
template <class F>
void for_each_head(const Config& c, int T, float* scratch, F f) {
  const size_t per = attn_scratch_floats(T, c.dimHead);
  const size_t IN = (size_t)c.heads * c.dimHead;
  parallel_for_chunk(c.batch * c.heads, [&](int chunk, int s0, int e0) {
    for (int bh = s0; bh < e0; bh++) f(bh, (size_t)(bh / c.heads) * T * IN + (size_t)(bh % c.heads) * c.dimHead, scratch + chunk * per);
  });
}

// ---------------------------------------------------------------------------------------------
// The model.

// Forward pass (keeping what the backward needs). Weights in layout order.
void forward(const Config& c, const float* const* W, const float* images, const DropoutSpec& spec, Workspace* ws, float* logits,
             float* attention) {
  SECTION("total_forward");
  const Shape s(c);
  const int B = s.B, N = s.N, T = s.T, D = s.D, PD = s.PD, R = s.R, IN = s.IN, p = c.patch;
  const Dropout drop{spec};
  // Patches in (channel, row, col) order from NHWC images.
  float* patches = workspace_take(ws, W_PATCHES, (size_t)B * N * PD);
  for (int b = 0; b < B; b++)
    for (int gy = 0; gy < s.grid; gy++)
      for (int gx = 0; gx < s.grid; gx++) {
        float* dst = patches + ((size_t)b * N + gy * s.grid + gx) * PD;
        for (int ch = 0; ch < c.channels; ch++)
          for (int r = 0; r < p; r++)
            for (int col = 0; col < p; col++)
              *dst++ = images[(((size_t)b * c.image + gy * p + r) * c.image + gx * p + col) * c.channels + ch];
      }
  // Tokens: [cls; patches W + b] + pos, as [B*T, D].
  float* x = workspace_take(ws, W_X, (size_t)R * D);
  float* emb = workspace_take(ws, W_EMB, (size_t)B * N * D);
  linear_fwd(B * N, PD, D, patches, W[P_PATCH_W], W[P_PATCH_B], emb);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const float* src = t == 0 ? W[P_CLS] : emb + ((size_t)b * N + t - 1) * D;
      const float* pos = W[P_POS] + (size_t)t * D;
      float* dst = x + ((size_t)b * T + t) * D;
      for (int d = 0; d < D; d++) dst[d] = src[d] + pos[d];
    }
  drop.apply(kSiteEmbedding, (size_t)R * D, x);

  const float scale = 1.f / sqrtf((float)c.dimHead);
  float* tmp = workspace_take(ws, W_TMP, (size_t)R * imax(D, c.mlp));
  float* attn_scratch = workspace_take(ws, W_ATTN_SCRATCH, (size_t)parallel_chunk_count(B * c.heads, 1) * attn_scratch_floats(T, c.dimHead));
  for (int l = 0; l < c.depth; l++) {
    const BlockCache k = block_cache(ws, c, s, l);
    const float* const* w = &W[P_STEM_COUNT + B_COUNT * l];

    layernorm_fwd(R, D, x, w[B_LN1_G], w[B_LN1_B], k.xhat1, k.rstd1, k.y1);
    linear_fwd(R, D, IN, k.y1, w[B_Q], nullptr, k.q);
    for (size_t i = 0; i < (size_t)R * IN; i++) k.q[i] *= scale;
    linear_fwd(R, D, IN, k.y1, w[B_K], nullptr, k.k);
    linear_fwd(R, D, IN, k.y1, w[B_V], nullptr, k.v);
    {
      SECTION("attention_fwd");
      const int site = site_of(l, S_ATTN_WEIGHTS);
      for_each_head(c, T, attn_scratch, [&](int bh, size_t off, float* scratch) {
        attention_head(T, c.dimHead, IN, k.q + off, k.k + off, k.v + off, k.attn + (size_t)bh * T * T, k.o + off, drop, site,
                       (size_t)bh * T * T, scratch);
      });
    }
    if (attention) std::memcpy(attention + (size_t)l * B * c.heads * T * T, k.attn, (size_t)B * c.heads * T * T * sizeof(float));
    linear_fwd(R, IN, D, k.o, w[B_OUT_W], w[B_OUT_B], tmp);
    drop.apply(site_of(l, S_ATTN_OUT), (size_t)R * D, tmp);
    for (size_t i = 0; i < (size_t)R * D; i++) x[i] += tmp[i];

    layernorm_fwd(R, D, x, w[B_LN2_G], w[B_LN2_B], k.xhat2, k.rstd2, k.y2);
    linear_fwd(R, D, c.mlp, k.y2, w[B_FC1_W], w[B_FC1_B], k.h);
    gelu_fwd(c.activation, (size_t)R * c.mlp, k.h, k.g);
    drop.apply(site_of(l, S_MLP_HIDDEN), (size_t)R * c.mlp, k.g);
    linear_fwd(R, c.mlp, D, k.g, w[B_FC2_W], w[B_FC2_B], tmp);
    drop.apply(site_of(l, S_MLP_OUT), (size_t)R * D, tmp);
    for (size_t i = 0; i < (size_t)R * D; i++) x[i] += tmp[i];
  }
  // Head on the class token.
  const float* const* H = &W[P_STEM_COUNT + B_COUNT * c.depth];
  float* cls = workspace_take(ws, W_CLS, (size_t)B * D);
  for (int b = 0; b < B; b++) std::memcpy(cls + (size_t)b * D, x + (size_t)b * T * D, D * sizeof(float));
  float* hx = workspace_take(ws, W_HEAD_XHAT, (size_t)B * D);
  float* hr = workspace_take(ws, W_HEAD_RSTD, B);
  float* hy = workspace_take(ws, W_HEAD_Y, (size_t)B * D);
  layernorm_fwd(B, D, cls, H[H_LN_G], H[H_LN_B], hx, hr, hy);
  linear_fwd(B, D, c.classes, hy, H[H_W], H[H_B], logits);
}

// Backward from dlogits; grads (zeroed, layout order) are filled.
void backward(const Config& c, const float* const* W, float* const* G, const float* dlogits, const DropoutSpec& spec, Workspace* ws) {
  SECTION("total_backward");
  const Shape s(c);
  const int B = s.B, N = s.N, T = s.T, D = s.D, PD = s.PD, R = s.R, IN = s.IN;
  const Dropout drop{spec};
  const float* const* H = &W[P_STEM_COUNT + B_COUNT * c.depth];
  float* const* GH = &G[P_STEM_COUNT + B_COUNT * c.depth];
  float* dcls = workspace_take(ws, W_DCLS, (size_t)B * D);
  float* dyh = workspace_take(ws, W_DYH, (size_t)B * D);
  std::memset(dcls, 0, (size_t)B * D * sizeof(float));
  linear_bwd(ws, B, D, c.classes, workspace_take(ws, W_HEAD_Y, (size_t)B * D), H[H_W], dlogits, GH[H_W], GH[H_B], dyh, false);
  layernorm_bwd(ws, B, D, workspace_take(ws, W_HEAD_XHAT, (size_t)B * D), workspace_take(ws, W_HEAD_RSTD, B), H[H_LN_G], dyh, GH[H_LN_G],
                GH[H_LN_B], dcls);
  float* dx = workspace_take(ws, W_DX, (size_t)R * D);
  std::memset(dx, 0, (size_t)R * D * sizeof(float));
  for (int b = 0; b < B; b++) std::memcpy(dx + (size_t)b * T * D, dcls + (size_t)b * D, D * sizeof(float));

  const float scale = 1.f / sqrtf((float)c.dimHead);
  // Every element of these is written before it is read, so stale contents do not matter.
  float* dres = workspace_take(ws, W_DRES, (size_t)R * D);
  float* dhid = workspace_take(ws, W_DHID, (size_t)R * c.mlp);
  float* dy = workspace_take(ws, W_DY, (size_t)R * D);
  float* dO = workspace_take(ws, W_DO, (size_t)R * IN);
  float* dq = workspace_take(ws, W_DQ, (size_t)R * IN);
  float* dk = workspace_take(ws, W_DK, (size_t)R * IN);
  float* dv = workspace_take(ws, W_DV, (size_t)R * IN);
  float* attn_scratch = workspace_take(ws, W_ATTN_SCRATCH, (size_t)parallel_chunk_count(B * c.heads, 1) * attn_scratch_floats(T, c.dimHead));
  for (int l = c.depth - 1; l >= 0; l--) {
    const BlockCache k = block_cache(ws, c, s, l);
    const float* const* w = &W[P_STEM_COUNT + B_COUNT * l];
    float* const* g = &G[P_STEM_COUNT + B_COUNT * l];
    // x2 = x1 + drop(fc2(drop(gelu(fc1(ln2(x1))))))
    std::memcpy(dres, dx, (size_t)R * D * sizeof(float));
    drop.apply(site_of(l, S_MLP_OUT), (size_t)R * D, dres);
    linear_bwd(ws, R, c.mlp, D, k.g, w[B_FC2_W], dres, g[B_FC2_W], g[B_FC2_B], dhid, false);
    drop.apply(site_of(l, S_MLP_HIDDEN), (size_t)R * c.mlp, dhid);
    gelu_bwd(c.activation, (size_t)R * c.mlp, k.h, dhid);
    linear_bwd(ws, R, D, c.mlp, k.y2, w[B_FC1_W], dhid, g[B_FC1_W], g[B_FC1_B], dy, false);
    layernorm_bwd(ws, R, D, k.xhat2, k.rstd2, w[B_LN2_G], dy, g[B_LN2_G], g[B_LN2_B], dx);
    // x1 = x + drop(to_out(attention(ln1(x))))
    std::memcpy(dres, dx, (size_t)R * D * sizeof(float));
    drop.apply(site_of(l, S_ATTN_OUT), (size_t)R * D, dres);
    linear_bwd(ws, R, IN, D, k.o, w[B_OUT_W], dres, g[B_OUT_W], g[B_OUT_B], dO, false);
    {
      SECTION("attention_bwd");
      const int site = site_of(l, S_ATTN_WEIGHTS);
      for_each_head(c, T, attn_scratch, [&](int bh, size_t off, float* scratch) {
        attention_head_bwd(T, c.dimHead, IN, k.attn + (size_t)bh * T * T, k.q + off, k.k + off, k.v + off, dO + off, dq + off, dk + off,
                           dv + off, drop, site, (size_t)bh * T * T, scratch);
      });
    }
    for (size_t i = 0; i < (size_t)R * IN; i++) dq[i] *= scale;
    linear_bwd(ws, R, D, IN, k.y1, w[B_Q], dq, g[B_Q], nullptr, dy, false);
    linear_bwd(ws, R, D, IN, k.y1, w[B_K], dk, g[B_K], nullptr, dy, true);
    linear_bwd(ws, R, D, IN, k.y1, w[B_V], dv, g[B_V], nullptr, dy, true);
    layernorm_bwd(ws, R, D, k.xhat1, k.rstd1, w[B_LN1_G], dy, g[B_LN1_G], g[B_LN1_B], dx);
  }
  // Embedding: x0 = drop([cls; patches W + b] + pos)
  drop.apply(kSiteEmbedding, (size_t)R * D, dx);
  float* demb = workspace_take(ws, W_DEMB, (size_t)B * N * D);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const float* src = dx + ((size_t)b * T + t) * D;
      float* gp = G[P_POS] + (size_t)t * D;
      for (int d = 0; d < D; d++) gp[d] += src[d];
      if (t == 0)
        for (int d = 0; d < D; d++) G[P_CLS][d] += src[d];
      else
        std::memcpy(demb + ((size_t)b * N + t - 1) * D, src, D * sizeof(float));
    }
  linear_bwd(ws, B * N, PD, D, workspace_take(ws, W_PATCHES, (size_t)B * N * PD), W[P_PATCH_W], demb, G[P_PATCH_W], G[P_PATCH_B],
             nullptr, false);
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
