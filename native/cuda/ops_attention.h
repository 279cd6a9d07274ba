// Attention of one (sample, head) per block (hd.h BlockCtx): the head's q, k, v (and in the
// backward the output gradient) are read once from the projections' row-major [R, IN] layout
// into shared memory, and everything between the projections stays inside the block: scores,
// softmax, dropout and times V forward; through them and back to dq, dk, dv backward, written
// straight into row-major [R, IN] for the projections' products. One warp takes one query row
// (softmax's sums are warp sums), then in the backward one key row (dk, dv sum over queries).
//
// Shared memory rows are dimHead + 1 floats: lane j reading row j's element d hits bank
// (j (dh + 1) + d) mod 32, a different bank per lane. Same numbering of dropout elements as the
// CPU: element (row, j) of head bh is element (bh T + row) T + j of the site.
#pragma once
#include "ops.h"

namespace tfpipe {
namespace gpu {

// Loads the head's columns [h dh, (h + 1) dh) of `parts` consecutive row-major [R, IN] matrices
// (RI floats apart) for the sample's T rows into shared tiles [T][dh + 1], one after another.
TFP_HD void load_head(const BlockCtx& c, const float* src, size_t RI, int parts, int T, int dh, int IN, float* tiles) {
  const int dp = dh + 1;
  for (int e = c.tid; e < T * dh; e += c.threads) {
    const int i = e / dh, d = e % dh;
    const size_t at = (size_t)i * IN + d;
    for (int k = 0; k < parts; k++) tiles[(size_t)k * T * dp + i * dp + d] = src[k * RI + at];
  }
}

struct AttentionFwd {
  const float* qkv;  // [3][R][IN], q not yet scaled
  float* P;          // [B heads][T][ld]: the softmax (kept for the backward and the maps)
  Out O;             // [R][IN]
  Drop drop;
  size_t RI;
  int T, H, dh, IN, ld;
  float scale;

  static size_t smem_floats(int T, int dh, int warps) { return 3 * (size_t)T * (dh + 1) + (size_t)warps * T; }

  TFP_HD void operator()(size_t bh, const BlockCtx& c) const {
    const size_t b = bh / H, base = b * T * IN + (bh % H) * dh;
    const int dp = dh + 1;
    float *Q = c.smem, *K = Q + T * dp, *V = K + T * dp, *row = V + T * dp + c.warp * T;
    load_head(c, qkv + base, RI, 3, T, dh, IN, Q);
    c.sync();
    for (int i = c.warp; i < T; i += c.warps) {
      const float* q = Q + i * dp;
      float m = -3.0e38f;
      for (int j = c.lane; j < T; j += c.width) {
        const float* k = K + j * dp;
        float s = 0.f;
        for (int d = 0; d < dh; d++) s += q[d] * k[d];
        s *= scale;
        row[j] = s;
        m = fmaxf(m, s);
      }
      m = lane_max(m);
      float sum = 0.f;
      for (int j = c.lane; j < T; j += c.width) {
        const float e = expf(row[j] - m);
        row[j] = e;
        sum += e;
      }
      const float inv = 1.f / lane_sum(sum);
      float* p = P + (bh * T + i) * ld;
      for (int j = c.lane; j < T; j += c.width) {
        const float v = row[j] * inv;
        p[j] = v;
        row[j] = v * drop((bh * T + i) * T + j);
      }
      c.warp_sync();
      for (int d = c.lane; d < dh; d += c.width) {
        float o = 0.f;
        for (int j = 0; j < T; j++) o += row[j] * V[j * dp + d];
        O.put(base + (size_t)i * IN + d, o);
      }
      c.warp_sync();
    }
  }
};

struct AttentionBwd {
  const float* qkv;  // [3][R][IN] as the forward read it
  const float* P;    // [B heads][T][ld]
  const float* dO;   // [R][IN]
  float* dS;         // [B heads][T][ld] scratch: the scores' gradient
  float* Pd;         // [B heads][T][ld] scratch: P after dropout (only when dropout is on)
  Out dqkv;          // [3][R][IN]
  Drop drop;
  size_t RI;
  int T, H, dh, IN, ld;
  float scale;

  static size_t smem_floats(int T, int dh) { return 4 * (size_t)T * (dh + 1); }

  TFP_HD void operator()(size_t bh, const BlockCtx& c) const {
    const size_t b = bh / H, base = b * T * IN + (bh % H) * dh;
    const int dp = dh + 1;
    float *Q = c.smem, *K = Q + T * dp, *V = K + T * dp, *G = V + T * dp;
    load_head(c, qkv + base, RI, 3, T, dh, IN, Q);
    load_head(c, dO + base, RI, 1, T, dh, IN, G);
    c.sync();
    const bool dropping = drop.s->dropout;
    // Query rows: d(dropped P) = dO V^T; dp = that x mask; dS = P (dp - sum(dp P)); dq = scale dS K.
    for (int i = c.warp; i < T; i += c.warps) {
      const float* g = G + i * dp;
      const float* p = P + (bh * T + i) * ld;
      float* s = dS + (bh * T + i) * ld;
      float dot = 0.f;
      for (int j = c.lane; j < T; j += c.width) {
        const float* v = V + j * dp;
        float x = 0.f;
        for (int d = 0; d < dh; d++) x += g[d] * v[d];
        const float mask = drop((bh * T + i) * T + j);
        x *= mask;
        if (dropping) Pd[(bh * T + i) * ld + j] = p[j] * mask;
        s[j] = x;
        dot += x * p[j];
      }
      const float t = lane_sum(dot);
      for (int j = c.lane; j < T; j += c.width) s[j] = p[j] * (s[j] - t);
      c.warp_sync();
      for (int d = c.lane; d < dh; d += c.width) {
        float a = 0.f;
        for (int j = 0; j < T; j++) a += s[j] * K[j * dp + d];
        dqkv.put(base + (size_t)i * IN + d, a * scale);
      }
    }
    c.sync();
    // Key rows: dk = scale dS^T q, dv = (dropped P)^T dO.
    const float* A = dropping ? Pd : P;
    for (int j = c.warp; j < T; j += c.warps)
      for (int d = c.lane; d < dh; d += c.width) {
        float ak = 0.f, av = 0.f;
        for (int i = 0; i < T; i++) {
          const size_t at = (bh * T + i) * ld + j;
          ak += dS[at] * Q[i * dp + d];
          av += A[at] * G[i * dp + d];
        }
        dqkv.put(RI + base + (size_t)j * IN + d, ak * scale);
        dqkv.put(2 * RI + base + (size_t)j * IN + d, av);
      }
  }
};

}  // namespace gpu
}  // namespace tfpipe
