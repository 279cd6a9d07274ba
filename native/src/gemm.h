// GEMM for one ISA variant: C[M,N] (+)= A[M,K] B[K,N], row-major, through register tiles of
// kMR rows x kNV vectors. Included by model.cc inside its variant's namespace.
//
// Tile shapes follow the BLIS/OpenBLAS micro-kernels for each register file, re-measured on this
// workload's shapes (R = batch * 65 rows, K and N 16..384; see native/README.md):
// - AVX-512, 32 zmm: 8 x 32 (16 accumulators). 12 x 32 (BLIS skx) measured 5-20% slower here.
// - AVX2 + FMA, 16 ymm: 6 x 16 (12 accumulators + 2 B vectors + 1 broadcast), BLIS haswell's.
// - SSE2, 16 xmm, no FMA: 4 x 12; a multiply-add needs a temporary, so fewer accumulators.
// - NEON, 32 q registers: 8 x 12 (24 accumulators), BLIS armv8a's.
// Narrow outputs (attention heads: 16 or 32 columns) get taller single-vector tiles so that
// enough independent FMA chains hide the latency.
#pragma once
#include "isa.h"

namespace tfpipe {
namespace TFPIPE_ISA {

#if defined(__AVX512F__)
constexpr int kMR = 8, kNV = 2, kMRNarrow = 16;
#elif defined(__AVX2__)
constexpr int kMR = 6, kNV = 2, kMRNarrow = 12;
#elif defined(__aarch64__)
constexpr int kMR = 8, kNV = 3, kMRNarrow = 16;
#else
constexpr int kMR = 4, kNV = 3, kMRNarrow = 8;
#endif
constexpr int kPanel = kNV * kLanes;  // columns of a full tile

// A's element (r, k) is A[r * lda + k * acs]: acs = 1 for row-major A, lda = 1 for A read transposed.
template <int MR, int NV>
inline void tile(int K, const float* A, int lda, int acs, const float* B, int ldb, float* C, int ldc, bool acc) {
  vf c[MR][NV];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) c[r][v] = acc ? load(C + r * ldc + kLanes * v) : vf{};
  for (int k = 0; k < K; k++) {
    vf b[NV];
    for (int v = 0; v < NV; v++) b[v] = load(B + (size_t)k * ldb + kLanes * v);
    for (int r = 0; r < MR; r++) {
      float a = A[(size_t)r * lda + (size_t)k * acs];
      for (int v = 0; v < NV; v++) c[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) store(C + r * ldc + kLanes * v, c[r][v]);
}

// MR rows of C: full tiles, then single vectors, then scalar columns.
template <int MR>
void rows(int N, int K, const float* A, int lda, int acs, const float* B, int ldb, float* C, int ldc, bool acc) {
  int j = 0;
  for (; j + kPanel <= N; j += kPanel) tile<MR, kNV>(K, A, lda, acs, B + j, ldb, C + j, ldc, acc);
  for (; j + kLanes <= N; j += kLanes) tile<MR, 1>(K, A, lda, acs, B + j, ldb, C + j, ldc, acc);
  for (; j < N; j++)
    for (int r = 0; r < MR; r++) {
      float s = acc ? C[r * ldc + j] : 0.f;
      for (int k = 0; k < K; k++) s += A[(size_t)r * lda + (size_t)k * acs] * B[(size_t)k * ldb + j];
      C[r * ldc + j] = s;
    }
}

template <int MR>
inline int rows_by(int i, int m1, int N, int K, const float* A, int lda, int acs, const float* B, int ldb, float* C, int ldc,
                   bool acc) {
  for (; i + MR <= m1; i += MR) rows<MR>(N, K, A + (size_t)i * lda, lda, acs, B, ldb, C + (size_t)i * ldc, ldc, acc);
  return i;
}

// Rows [m0, m1) of C = A B (acc: C += A B).
inline void gemm_rows(int m0, int m1, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool acc,
                      int acs = 1) {
  int i = m0;
  if (N < kPanel)
    i = rows_by<kMRNarrow>(i, m1, N, K, A, lda, acs, B, ldb, C, ldc, acc);
  else
    i = rows_by<kMR>(i, m1, N, K, A, lda, acs, B, ldb, C, ldc, acc);
  if (kMR > 4) i = rows_by<4>(i, m1, N, K, A, lda, acs, B, ldb, C, ldc, acc);
  rows_by<1>(i, m1, N, K, A, lda, acs, B, ldb, C, ldc, acc);
}

// C = A B (acc: C += A B), split over rows of C across threads.
inline void gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool acc, int acs = 1) {
  parallel_for(M, [&](int b, int e) { gemm_rows(b, e, N, K, A, lda, B, ldb, C, ldc, acc, acs); }, 4);
}

// out[cols, rows] = in[rows, cols]^T
inline void transpose(int rowsN, int cols, const float* in, float* out) {
  parallel_for(cols, [&](int b, int e) {
    for (int i0 = 0; i0 < rowsN; i0 += 64)
      for (int j = b; j < e; j++) {
        int i1 = imin(rowsN, i0 + 64);
        for (int i = i0; i < i1; i++) out[(size_t)j * rowsN + i] = in[(size_t)i * cols + j];
      }
  });
}

// One KC-row chunk of dw[I,O] += x^T dy for the columns [j0, j0 + PW): dy's panel is packed
// once and stays in L1 while every row strip of dw uses it.
template <int PV>
inline void tn_panel(int kc, int I, int O, int j0, const float* xc, const float* dyc, float* panel, float* acc) {
  constexpr int PW = PV * kLanes;
  for (int k = 0; k < kc; k++) std::memcpy(panel + (size_t)k * PW, dyc + (size_t)k * O + j0, PW * sizeof(float));
  int i = 0;
  for (; i + kMR <= I; i += kMR) tile<kMR, PV>(kc, xc + i, 1, I, panel, PW, acc + (size_t)i * O + j0, O, true);
  for (; i < I; i++) tile<1, PV>(kc, xc + i, 1, I, panel, PW, acc + (size_t)i * O + j0, O, true);
}

constexpr int kTnChunk = 256;

// dw[I,O] += x[R,I]^T dy[R,O]. R is large (batch * tokens) and I, O small, so walk R in chunks;
// threads take chunks and keep private sums, added up at the end. `scratch` holds
// tn_scratch_floats(...) floats.
inline size_t tn_scratch_floats(int R, int I, int O) {
  int chunks = (R + kTnChunk - 1) / kTnChunk;
  int t = imin(get_threads(), chunks);
  return (size_t)t * ((size_t)I * O + (size_t)kTnChunk * kPanel);
}
inline void gemm_tn_acc(int R, int I, int O, const float* x, const float* dy, float* dw, float* scratch) {
  const int chunks = (R + kTnChunk - 1) / kTnChunk;
  const int t = imin(get_threads(), chunks);
  const size_t per = (size_t)I * O + (size_t)kTnChunk * kPanel;
  parallel_for(t, [&](int tb, int te) {
    for (int ti = tb; ti < te; ti++) {
      float* acc = scratch + per * ti;
      float* panel = acc + (size_t)I * O;
      std::memset(acc, 0, (size_t)I * O * sizeof(float));
      for (int ch = ti; ch < chunks; ch += t) {
        int k0 = ch * kTnChunk, kc = imin(kTnChunk, R - k0);
        const float* xc = x + (size_t)k0 * I;
        const float* dyc = dy + (size_t)k0 * O;
        int j0 = 0;
        for (; j0 + kPanel <= O; j0 += kPanel) tn_panel<kNV>(kc, I, O, j0, xc, dyc, panel, acc);
        for (; j0 + kLanes <= O; j0 += kLanes) tn_panel<1>(kc, I, O, j0, xc, dyc, panel, acc);
        for (int i = 0; i < I; i++)  // leftover columns
          for (int j = j0; j < O; j++) {
            float s = 0.f;
            for (int k = 0; k < kc; k++) s += xc[(size_t)k * I + i] * dyc[(size_t)k * O + j];
            acc[(size_t)i * O + j] += s;
          }
      }
    }
  });
  for (int ti = 0; ti < t; ti++) {
    const float* p = scratch + per * ti;
    for (size_t e = 0; e < (size_t)I * O; e++) dw[e] += p[e];
  }
}

}  // namespace TFPIPE_ISA
}  // namespace tfpipe
