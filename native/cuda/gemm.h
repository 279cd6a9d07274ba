// One matrix product of the GPU model, described in row-major terms (as the CPU code and the
// TypeScript model write them), and the host's reference implementation of it. On the GPU
// (device_exec.cu) the same description becomes a cuBLASLt call.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "api.h"
#include "hd.h"

namespace tfpipe {
namespace gpu {

// C = alpha op(A) op(B) + beta C for `batch` products at strides sa, sb, sc (elements). A is
// stored [M, K] row-major with row stride lda, or [K, M] when ta (op = transpose); B is [K, N] or
// [N, K] when tb. beta = 0 overwrites C whatever it held. A and B are fp32, or bf16 when half (the
// bf16 precision's operands); C is fp32, accumulated in fp32.
struct Gemm {
  bool ta, tb;
  int M, N, K;
  const void* A;
  int lda;
  const void* B;
  int ldb;
  float* C;
  int ldc;
  float alpha = 1.f, beta = 0.f;
  int batch = 1;
  long long sa = 0, sb = 0, sc = 0;
  bool half = false;
};

// An operand as the model holds it: fp32, bf16, or both (the bf16 precision keeps a bf16 copy of
// what feeds products). A product takes bf16 when both its operands have it.
struct In {
  const float* f;
  const bf16* h;
  In(const float* f32 = nullptr, const bf16* b16 = nullptr) : f(f32), h(b16) {}
  In(const Out& o) : f(o.f), h(o.h) {}
  In at(size_t off) const { return In(f ? f + off : nullptr, h ? h + off : nullptr); }
};

inline Gemm mm(bool ta, bool tb, int M, int N, int K, In A, int lda, In B, int ldb, float* C, int ldc) {
  const bool half = A.h && B.h;
  if (!half && (!A.f || !B.f) && (A.f || A.h) && (B.f || B.h)) throw std::logic_error("a product of a bf16-only and an fp32-only operand");
  Gemm g{ta, tb, M, N, K, half ? (const void*)A.h : (const void*)A.f, lda, half ? (const void*)B.h : (const void*)B.f, ldb, C, ldc};
  g.half = half;
  return g;
}

inline Gemm batched(Gemm g, int batch, long long sa, long long sb, long long sc) {
  g.batch = batch;
  g.sa = sa;
  g.sb = sb;
  g.sc = sc;
  return g;
}

// What TF32 tensor cores see of an fp32 input: 10 mantissa bits, rounded to nearest even (NaN
// and infinity are left as they are). bf16 products read bf16 operands (hd.h to_bf16) instead.
float round_to_tf32(float x);

// The reference product on the host, with fp32 inputs rounded as the precision's tensor cores
// round them (TF32 for tf32 and for bf16's fp32 products) and float accumulation in k order.
void host_gemm(const Gemm& g, Precision p);

}  // namespace gpu
}  // namespace tfpipe
