// GEMM for one ISA variant, through register tiles of kMR rows x kNV vectors. Included by model.cc
// inside its variant's namespace.
//
// Tile shapes follow the BLIS/OpenBLAS micro-kernels for each register file, re-measured on this
// workload's shapes (R = batch * 65 rows, K and N 16..384; see native/README.md):
// - AVX-512, 32 zmm: 8 x 32 (16 accumulators). 12 x 32 (BLIS skx) measured 5-20% slower here.
// - AVX2 + FMA, 16 ymm: 6 x 16 (12 accumulators + 2 B vectors + 1 broadcast), BLIS haswell's.
// - SSE2, 16 xmm, no FMA: 4 x 12; a multiply-add needs a temporary, so fewer accumulators.
// - NEON, 32 q registers: 8 x 12 (24 accumulators), BLIS armv8a's.
//
// Three drivers:
// - gemm_packed: C = A B with B (a weight matrix) packed into panels of kPanel columns, [K][kPanel]
//   each, so that a panel is one contiguous block that stays in L1 while every row strip of A
//   passes (a weight's rows are 256-1536 bytes apart: unpacked, a 64-row panel maps onto a few L1
//   sets and evicts itself). The result goes through an epilogue functor, so bias, scale, dropout
//   and the residual add happen while the tile is in registers (GELU does not: it runs as a pass
//   over the rows after the GEMM, epilogues.h says why).
// - gemm_rows: small unpacked products inside one attention head.
// - dw_strips: a weight gradient dW += X^T DY over all R rows for some row strips of dW (kMR rows,
//   every column each), R walked in chunks of kTnChunk rows in order, whatever thread runs it.
// Every result element is one chain of multiply-adds over k in order 0..K-1: which tile shape,
// chunk or thread computes it never changes its rounding.
#pragma once
#include "isa.h"

namespace tfpipe {
namespace TFPIPE_ISA {

#if defined(__AVX512F__)
constexpr int kMR = 8, kNV = 2;
#elif defined(__AVX2__)
constexpr int kMR = 6, kNV = 2;
#elif defined(__aarch64__)
constexpr int kMR = 8, kNV = 3;
#else
constexpr int kMR = 4, kNV = 3;
#endif
constexpr int kPanel = kNV * kLanes;  // columns of a full tile

// A compile-time int (std::integral_constant would be a std template: see api.h).
template <int N>
struct Int {
  static constexpr int value = N;
};

// c[r][v] += sum_k A(r, k) * B[k, v-th vector]. A(r, k) = A[r * lda + k], or A[k * lda + r] when
// TA (A read transposed).
template <int MR, int NV, bool TA>
inline void madd(int K, const float* A, int lda, const float* B, int ldb, vf (&c)[MR][NV]) {
  for (int k = 0; k < K; k++) {
    vf b[NV];
    for (int v = 0; v < NV; v++) b[v] = load(B + (size_t)k * ldb + kLanes * v);
    for (int r = 0; r < MR; r++) {
      const float a = TA ? A[(size_t)k * lda + r] : A[(size_t)r * lda + k];
      for (int v = 0; v < NV; v++) c[r][v] += a * b[v];
    }
  }
}

// Hands every vector of a finished tile to e(row, col, lanes, value); lanes < kLanes only in the
// last vector of a row that ends inside it.
template <int MR, int NV, class E>
inline void put(int i, int j, int ncols, vf (&c)[MR][NV], E& e) {
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++)
      if (kLanes * v < ncols) e(i + r, j + kLanes * v, imin(kLanes, ncols - kLanes * v), c[r][v]);
}

// How many row strips ahead the epilogue's memory is prefetched: an epilogue writes (and may
// read) rows 1-2 KB apart that no hardware prefetcher predicts, and the activations it touches
// come from DRAM. Two strips ahead is about 2 x 64 multiply-add steps, a DRAM latency.
constexpr int kPrefetchStrips = 2;

// Rows [i0, i1) against one B panel of NV vectors: full tiles, then 4, 2 and 1 rows. The epilogue
// e also gets e.prefetch(row, col) for the rows it will see two strips later.
template <int NV, bool TA, class E>
inline void strips(int i0, int i1, int K, const float* A, int lda, const float* B, int ldb, int j, int ncols, E& e) {
  auto one = [&](auto rows, int i) {
    constexpr int MR = decltype(rows)::value;
    for (int r = i + kPrefetchStrips * kMR; r < imin(i1, i + (kPrefetchStrips + 1) * kMR); r++) e.prefetch(r, j);
    vf c[MR][NV];
    for (int r = 0; r < MR; r++)
      for (int v = 0; v < NV; v++) c[r][v] = vf{};
    madd<MR, NV, TA>(K, TA ? A + i : A + (size_t)i * lda, lda, B, ldb, c);
    put<MR, NV>(i, j, ncols, c, e);
  };
  int i = i0;
  for (; i + kMR <= i1; i += kMR) one(Int<kMR>{}, i);
  if constexpr (kMR > 4) {
    if (i + 4 <= i1) {
      one(Int<4>{}, i);
      i += 4;
    }
  }
  if (i + 2 <= i1) {
    one(Int<2>{}, i);
    i += 2;
  }
  if (i < i1) one(Int<1>{}, i);
}

// Calls f(Int<NV>) for nv in [1, kNV].
template <class F>
inline void with_nv(int nv, F f) {
  if (nv >= kNV)
    f(Int<kNV>{});
  else if (nv == 1)
    f(Int<1>{});
  else if constexpr (kNV > 2)
    f(Int<2>{});
}

// --- Packed B ------------------------------------------------------------------------------------

inline int panel_count(int N) { return (N + kPanel - 1) / kPanel; }
inline size_t packed_floats(int K, int N) { return (size_t)panel_count(N) * K * kPanel; }

// Packs B[k, n] = get(k, n) (K x N) into panels; columns past N are zero.
template <class Get>
inline void pack_b(int K, int N, float* out, Get get) {
  for (int p = 0; p < panel_count(N); p++) {
    const int j0 = p * kPanel, w = imin(kPanel, N - j0);
    float* dst = out + (size_t)p * K * kPanel;
    for (int k = 0; k < K; k++) {
      for (int c = 0; c < w; c++) dst[(size_t)k * kPanel + c] = get(k, j0 + c);
      for (int c = w; c < kPanel; c++) dst[(size_t)k * kPanel + c] = 0.f;
    }
  }
}
// B = W (K rows of N, stride ldw; rows read in order) and B = W^T (W row-major N x K).
inline void pack_w(int K, int N, const float* w, int ldw, float* out) {
  for (int k = 0; k < K; k++)
    for (int p = 0; p < panel_count(N); p++) {
      const int j0 = p * kPanel, wd = imin(kPanel, N - j0);
      float* dst = out + ((size_t)p * K + k) * kPanel;
      std::memcpy(dst, w + (size_t)k * ldw + j0, (size_t)wd * sizeof(float));
      for (int c = wd; c < kPanel; c++) dst[c] = 0.f;
    }
}
inline void pack_wt(int K, int N, const float* w, float* out) {
  pack_b(K, N, out, [&](int k, int n) { return w[(size_t)n * K + k]; });
}

// C = A B for the M rows of A (row-major, lda), B packed (K x N); every vector of C goes to
// e(row, col, lanes, value). Panel by panel: the panel stays in L1 while all row strips of A use
// it, and the caller keeps M small enough (a micro-batch) that A stays in L2 across panels.
template <class E>
inline void gemm_packed(int M, int K, int N, const float* A, int lda, const float* Bp, E& e) {
  for (int p = 0; p < panel_count(N); p++) {
    const int j = p * kPanel, ncols = imin(kPanel, N - j);
    const float* bp = Bp + (size_t)p * K * kPanel;
    with_nv((ncols + kLanes - 1) / kLanes, [&](auto nv) { strips<decltype(nv)::value, false>(0, M, K, A, lda, bp, kPanel, j, ncols, e); });
  }
}

// --- Unpacked, small (attention) ------------------------------------------------------------------

// C = A B, rows [0, M), all N columns, B row-major (ldb) and read in whole vectors: a row of B may
// be read up to a vector past column N (never used). TA: A read transposed (A(r, k) = A[k*lda + r]).
template <bool TA, class E>
inline void gemm_rows(int M, int N, int K, const float* A, int lda, const float* B, int ldb, E& e) {
  int j = 0;
  for (; j + kPanel <= N; j += kPanel) strips<kNV, TA>(0, M, K, A, lda, B + j, ldb, j, kPanel, e);
  for (; j < N; j += kLanes) strips<1, TA>(0, M, K, A, lda, B + j, ldb, j, imin(kLanes, N - j), e);
}

// Stores C rows of stride ldc (optionally times a scale).
struct StoreTo {
  float* C;
  int ldc;
  float scale = 1.f;
  void operator()(int r, int c, int n, vf v) const { store_n(C + (size_t)r * ldc + c, scale == 1.f ? v : v * scale, n); }
  void prefetch(int r, int c) const { __builtin_prefetch(C + (size_t)r * ldc + c, 1); }
};

// --- Weight gradients ----------------------------------------------------------------------------

// dW[I, O] += X[R, I]^T DY[R, O] walks R in chunks of kTnChunk rows. Per chunk, DY's rows are
// packed into column panels [kc][kPanel] and X's columns into strips [kc][kMR], so that both
// operands are read in sequence (unpacked, X^T costs one cache line per multiply-add step). A
// panel stays in L1 while the strips, the smaller operand per step, stream from L2.
constexpr int kTnChunk = 256;
inline int dw_strip_count(int I) { return (I + kMR - 1) / kMR; }
inline size_t dw_pack_floats(int I, int O) {
  return (size_t)kTnChunk * kMR * dw_strip_count(I) + kLanes + (size_t)kTnChunk * panel_count(O) * kPanel;
}

// Row strips [s0, s1) of dW (kMR rows each, all O columns); with db also db += column sums of DY
// (give db only to the unit holding strip 0, so that each sum is taken once). `pack` holds
// dw_pack_floats(I, O) floats. Each element is summed over r in order 0..R-1 whatever the strips
// and threads, so the result does not depend on how the strips are shared out.
inline void dw_strips(int R, int I, int O, const float* X, int ldx, const float* DY, int ldy, float* dW, int ldw, float* db, int s0, int s1,
                      float* pack) {
  const int P = panel_count(O), S = s1 - s0;
  float* pa = pack;                                        // [S][kc][kMR]
  float* pb = pack + (size_t)kTnChunk * kMR * S + kLanes;  // [P][kc][kPanel]
  for (int k0 = 0; k0 < R; k0 += kTnChunk) {
    const int kc = imin(kTnChunk, R - k0);
    pack_w(kc, O, DY + (size_t)k0 * ldy, ldy, pb);
    if (db)
      for (int p = 0; p < P; p++)
        for (int v = 0; v < kNV; v++) {
          const int j = p * kPanel + kLanes * v, n = imin(kLanes, O - j);
          if (n <= 0) break;
          vf sum = load_n(db + j, n);
          for (int k = 0; k < kc; k++) sum += load(pb + ((size_t)p * kc + k) * kPanel + kLanes * v);
          store_n(db + j, sum, n);
        }
    for (int s = s0; s < s1; s++) {
      const int i = s * kMR, mr = imin(kMR, I - i);
      const float* xs = X + (size_t)k0 * ldx + i;
      float* dst = pa + (size_t)(s - s0) * kc * kMR;
      // Whole vectors copied at a stride of kMR: each overwrites the previous one's spill-over.
      if (mr == kMR)
        for (int k = 0; k < kc; k++)
          for (int v = 0; v < kMR; v += kLanes) store(dst + (size_t)k * kMR + v, load(xs + (size_t)k * ldx + v));
      else
        for (int k = 0; k < kc; k++)
          for (int r = 0; r < kMR; r++) dst[(size_t)k * kMR + r] = r < mr ? xs[(size_t)k * ldx + r] : 0.f;
    }
    // While this chunk computes, the next one's rows of DY and of X's strips come in: spread
    // over the tiles, so that packing the next chunk reads from cache, not DRAM (streaming them
    // in while nothing computes cost ~15% here).
    const int next = k0 + kTnChunk, nextRows = imin(kTnChunk, R - next);
    const int dyLines = (O + 15) / 16, xLines = (imin(I, s1 * kMR) - s0 * kMR + 15) / 16 + 1, rowLines = dyLines + xLines;
    const long fetchTotal = nextRows > 0 ? (long)nextRows * rowLines : 0;
    const long fetchPerTile = (fetchTotal + (long)P * S - 1) / ((long)P * S);
    long fetched = 0;
    auto fetch_some = [&] {
      for (long e = fetched + fetchPerTile; fetched < e && fetched < fetchTotal; fetched++) {
        const int row = next + (int)(fetched / rowLines), line = (int)(fetched % rowLines);
        __builtin_prefetch(line < dyLines ? DY + (size_t)row * ldy + 16 * line : X + (size_t)row * ldx + s0 * kMR + 16 * (line - dyLines));
      }
    };
    for (int p = 0; p < P; p++) {
      const int j0 = p * kPanel, w = imin(kPanel, O - j0);
      const float* bp = pb + (size_t)p * kc * kPanel;
      with_nv((w + kLanes - 1) / kLanes, [&](auto nvc) {
        constexpr int NV = decltype(nvc)::value;
        for (int s = s0; s < s1; s++) {
          fetch_some();
          const int i = s * kMR, mr = imin(kMR, I - i);
          vf c[kMR][NV];
          for (int r = 0; r < kMR; r++)
            for (int v = 0; v < NV; v++) c[r][v] = r < mr ? load_n(dW + (size_t)(i + r) * ldw + j0 + kLanes * v, w - kLanes * v) : vf{};
          madd<kMR, NV, true>(kc, pa + (size_t)(s - s0) * kc * kMR, kMR, bp, kPanel, c);
          for (int r = 0; r < mr; r++)
            for (int v = 0; v < NV; v++) store_n(dW + (size_t)(i + r) * ldw + j0 + kLanes * v, c[r][v], w - kLanes * v);
        }
      });
    }
  }
}

}  // namespace TFPIPE_ISA
}  // namespace tfpipe
