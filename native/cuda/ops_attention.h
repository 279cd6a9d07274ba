// Attention of one (sample, head) per block (hd.h BlockCtx): the head's q, k, v (and in the
// backward the output gradient) are read once from the projections' row-major [R, IN] layout
// into shared memory, and everything between the projections stays inside the block: scores,
// softmax, dropout and times V forward; through them and back to dq, dk, dv backward, written
// straight into row-major [R, IN] for the projections' products. One warp takes one query row
// (softmax's sums are warp sums), then in the backward one key row (dk, dv sum over queries).
//
// Shared tiles are [T][dp] with dp = dimHead rounded up to 4 and then to 4 mod 8, zero-padded:
// rows are read 4 floats at a time, and 8 lanes reading 8 consecutive rows then hit 8 different
// groups of 4 banks. Same numbering of dropout elements as the CPU: element (row, j) of head bh
// is element (bh T + row) T + j of the site.
#pragma once
#include "ops.h"

namespace tfpipe {
namespace gpu {

#if defined(__CUDACC__)
typedef float4 f4;
#else
struct alignas(16) f4 {
  float x, y, z, w;
};
#endif

TFP_HD int round4(int n) { return (n + 3) / 4 * 4; }
TFP_HD int tile_stride(int dh) { return round4(dh) % 8 ? round4(dh) : round4(dh) + 4; }

// Sum over lanes that are `from`, 2 from, ... apart up to `to` (the lanes of a row split into
// parts); all 32 lanes call it. A warp of one lane (the plain host executor) has nothing to add.
TFP_HD float part_sum(float v, int from, int to) {
#if defined(__CUDA_ARCH__)
  for (int o = from; o < to; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
#else
  if (sim::current)
    for (int o = from; o < to; o <<= 1) v += sim::shfl_xor(v, o);
#endif
  return v;
}

// Loads the head's columns [h dh, (h + 1) dh) of `parts` consecutive row-major [R, IN] matrices
// (RI floats apart) for the sample's T rows into shared tiles [T][dp], one after another,
// zeroing the padding.
TFP_HD void load_head(const BlockCtx& c, const float* src, size_t RI, int parts, int T, int dh, int IN, float* tiles) {
  const int dp = tile_stride(dh);
  for (int e = c.tid; e < T * dp; e += c.threads) {
    const int i = e / dp, d = e % dp;
    const size_t at = (size_t)i * IN + d;
    for (int k = 0; k < parts; k++) tiles[(size_t)k * T * dp + e] = d < dh ? src[k * RI + at] : 0.f;
  }
}

// a . b over a tile row (dp floats, 4 at a time; the padding is zero).
TFP_HD float dot_row(const float* a, const float* b, int dp) {
  const f4* x = reinterpret_cast<const f4*>(a);
  const f4* y = reinterpret_cast<const f4*>(b);
  float s = 0.f;
  for (int k = 0; k < dp / 4; k++) s += x[k].x * y[k].x + x[k].y * y[k].y + x[k].z * y[k].z + x[k].w * y[k].w;
  return s;
}

// out[d] = scale sum_t coef[t * stride] tile[t][d] for d < dh, t < n, by the lanes of a warp:
// the dh values are G groups of 4; lane = part * G2 + g (G2 = G rounded up to a power of two, so
// that lanes of one group differ only in their part bits) takes group g of the rows t of its
// part, then the parts' sums are added by xor shuffles. Written to out at base + d. Where a warp
// is narrower than G2 (the host's one lane), each lane walks the groups with every row.
TFP_HD void combine_rows(const float* coef, size_t stride, int n, const float* tile, int dp, int dh, float scale, int lane, int width,
                         const Out& out, size_t base) {
  const int G = round4(dh) / 4;
  int G2 = 1;
  while (G2 < G) G2 *= 2;
  const bool split = width >= G2;
  const int parts = split ? width / G2 : 1;
  for (int g0 = 0; g0 < G; g0 += width) {
    const int g = split ? lane % G2 : g0 + lane, part = split ? lane / G2 : 0;
    float sx = 0.f, sy = 0.f, sz = 0.f, sw = 0.f;
    if (g < G)
      for (int t = part; t < n; t += parts) {
        const float a = coef[t * stride];
        const f4 v = reinterpret_cast<const f4*>(tile + (size_t)t * dp)[g];
        sx += a * v.x;
        sy += a * v.y;
        sz += a * v.z;
        sw += a * v.w;
      }
    sx = part_sum(sx, G2, G2 * parts);
    sy = part_sum(sy, G2, G2 * parts);
    sz = part_sum(sz, G2, G2 * parts);
    sw = part_sum(sw, G2, G2 * parts);
    if (part == 0 && g < G) {
      const float r[4] = {sx, sy, sz, sw};
      for (int k = 0; k < 4 && 4 * g + k < dh; k++) out.put(base + 4 * g + k, r[k] * scale);
    }
    if (split) break;
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

  static size_t smem_floats(int T, int dh, int warps) { return 3 * (size_t)T * tile_stride(dh) + (size_t)warps * round4(T); }

  TFP_HD void operator()(size_t bh, const BlockCtx& c) const {
    const size_t b = bh / H, base = b * T * IN + (bh % H) * dh;
    const int dp = tile_stride(dh);
    float *Q = c.smem, *K = Q + T * dp, *V = K + T * dp, *row = V + T * dp + c.warp * round4(T);
    load_head(c, qkv + base, RI, 3, T, dh, IN, Q);
    c.sync();
    for (int i = c.warp; i < T; i += c.warps) {
      float m = -3.0e38f;
      for (int j = c.lane; j < T; j += c.width) {
        const float s = dot_row(Q + i * dp, K + j * dp, dp) * scale;
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
      combine_rows(row, 1, T, V, dp, dh, 1.f, c.lane, c.width, O, base + (size_t)i * IN);
      c.warp_sync();
    }
  }
};

struct AttentionBwd {
  const float* qkv;  // [3][R][IN] as the forward read it
  const float* P;    // [B heads][T][ld]
  const float* dO;   // [R][IN]
  float* scratch;    // [B heads][2][T][ld] for dS and dropped P when they do not fit in shared memory
  Out dqkv;          // [3][R][IN]
  Drop drop;
  size_t RI;
  int T, H, dh, IN, ld;
  float scale;
  bool staged;  // dS and dropped P in shared memory (after the tiles), else in scratch

  static TFP_HD size_t tiles_floats(int T, int dh) { return 4 * (size_t)T * tile_stride(dh); }
  static size_t smem_floats(int T, int dh, int ld, bool staged) { return tiles_floats(T, dh) + (staged ? 2 * (size_t)T * ld : 0); }

  TFP_HD void operator()(size_t bh, const BlockCtx& c) const {
    const size_t b = bh / H, base = b * T * IN + (bh % H) * dh;
    const int dp = tile_stride(dh);
    float *Q = c.smem, *K = Q + T * dp, *V = K + T * dp, *G = V + T * dp;
    float* S = staged ? c.smem + tiles_floats(T, dh) : scratch + bh * 2 * T * ld;  // dS [T][ld]
    float* A = S + (size_t)T * ld;                                                  // dropped P [T][ld]
    load_head(c, qkv + base, RI, 3, T, dh, IN, Q);
    load_head(c, dO + base, RI, 1, T, dh, IN, G);
    c.sync();
    // Without dropout the dropped P is P itself.
    const bool dropping = drop.s->dropout;
    const float* dropped = dropping ? A : P + bh * T * ld;
    // Query rows: d(dropped P) = dO V^T; dp = that x mask; dS = P (dp - sum(dp P)); dq = scale dS K.
    for (int i = c.warp; i < T; i += c.warps) {
      const float* p = P + (bh * T + i) * ld;
      float* s = S + (size_t)i * ld;
      float dot = 0.f;
      for (int j = c.lane; j < T; j += c.width) {
        const float mask = drop((bh * T + i) * T + j);
        const float x = dot_row(G + i * dp, V + j * dp, dp) * mask;
        if (dropping) A[(size_t)i * ld + j] = p[j] * mask;
        s[j] = x;
        dot += x * p[j];
      }
      const float t = lane_sum(dot);
      for (int j = c.lane; j < T; j += c.width) s[j] = p[j] * (s[j] - t);
      c.warp_sync();
      combine_rows(s, 1, T, K, dp, dh, scale, c.lane, c.width, dqkv, base + (size_t)i * IN);
    }
    c.sync();
    // Key rows: dk = scale dS^T q, dv = (dropped P)^T dO.
    for (int j = c.warp; j < T; j += c.warps) {
      combine_rows(S + j, ld, T, Q, dp, dh, scale, c.lane, c.width, dqkv, RI + base + (size_t)j * IN);
      combine_rows(dropped + j, ld, T, G, dp, dh, 1.f, c.lane, c.width, dqkv, 2 * RI + base + (size_t)j * IN);
    }
  }
};

}  // namespace gpu
}  // namespace tfpipe
