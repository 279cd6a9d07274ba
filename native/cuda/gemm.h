// One matrix product of the GPU model, described in row-major terms (as the CPU code and the
// TypeScript model write them), and the host's reference implementation of it. On the GPU
// (device_exec.cu) the same description becomes a cuBLASLt call.
#pragma once
#include <cstddef>
#include <cstdint>

#include "api.h"

namespace tfpipe {
namespace gpu {

// C = alpha op(A) op(B) + beta C for `batch` products at strides sa, sb, sc (floats). A is stored
// [M, K] row-major with row stride lda, or [K, M] when ta (op = transpose); B is [K, N] or [N, K]
// when tb. beta = 0 overwrites C whatever it held.
struct Gemm {
  bool ta, tb;
  int M, N, K;
  const float* A;
  int lda;
  const float* B;
  int ldb;
  float* C;
  int ldc;
  float alpha = 1.f, beta = 0.f;
  int batch = 1;
  long long sa = 0, sb = 0, sc = 0;
};

inline Gemm mm(bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  Gemm g{ta, tb, M, N, K, A, lda, B, ldb, C, ldc};
  return g;
}

inline Gemm batched(Gemm g, int batch, long long sa, long long sb, long long sc) {
  g.batch = batch;
  g.sa = sa;
  g.sb = sb;
  g.sc = sc;
  return g;
}

// What the tensor cores see of an fp32 input under each precision: TF32 keeps 10 mantissa bits,
// bf16 7 (round to nearest even; NaN and infinity are left as they are).
float round_to_precision(float x, Precision p);

// The reference product on the host, with the inputs rounded as the precision's tensor cores
// round them and float accumulation in k order.
void host_gemm(const Gemm& g, Precision p);

}  // namespace gpu
}  // namespace tfpipe
