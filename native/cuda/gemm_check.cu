// cuBLASLt through the row-major mapping of the CUDA executor (device_exec.cuh), checked against
// the host executor's reference GEMM on odd shapes, both transposes, batches, beta and bf16
// operands: what `vit_bench --gemm-check` and native/gpu-check.sh report on a GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "checks.h"
#include "device_exec.cuh"

namespace tfpipe {
namespace gpu {

std::vector<GemmCheck> device_gemm_checks(Precision p) {
  DeviceExec ex(p);
  struct Case {
    bool ta, tb;
    int M, N, K, batch;
    float beta;
    bool half;
  };
  const Case cases[] = {{false, false, 37, 29, 23, 1, 0.f, false}, {false, true, 37, 29, 23, 1, 1.f, false},
                        {true, false, 37, 29, 23, 1, 0.f, false},  {true, true, 37, 29, 23, 1, 0.f, false},
                        {false, true, 65, 65, 32, 12, 0.f, false}, {false, false, 640, 384, 384, 1, 0.f, false},
                        {false, true, 37, 29, 23, 1, 1.f, true},   {true, false, 640, 384, 384, 1, 0.f, true}};
  std::vector<GemmCheck> out;
  uint32_t seed = 12345;
  auto rnd = [&] {
    seed = seed * 1664525u + 1013904223u;
    return (float)((seed >> 8) & 0xffff) / 32768.f - 1.f;
  };
  for (const Case& k : cases) {
    if (k.half && p != kBf16) continue;
    const int rowsA = k.ta ? k.K : k.M, colsA = k.ta ? k.M : k.K, rowsB = k.tb ? k.N : k.K, colsB = k.tb ? k.K : k.N;
    const int lda = colsA + 8, ldb = colsB + 8, ldc = k.N + 2;  // padded strides
    const size_t sa = (size_t)rowsA * lda, sb = (size_t)rowsB * ldb, sc = (size_t)k.M * ldc, in = k.half ? 2 : 4;
    std::vector<float> A(sa * k.batch), B(sb * k.batch), C(sc * k.batch), ref;
    for (auto& v : A) v = rnd();
    for (auto& v : B) v = rnd();
    for (auto& v : C) v = rnd();
    ref = C;
    std::vector<bf16> A16(A.size()), B16(B.size());
    for (size_t i = 0; i < A.size(); i++) A16[i] = to_bf16(A[i]);
    for (size_t i = 0; i < B.size(); i++) B16[i] = to_bf16(B[i]);
    void* dA = ex.alloc(A.size() * in);
    void* dB = ex.alloc(B.size() * in);
    float* dC = (float*)ex.alloc(C.size() * 4);
    ex.upload(dA, k.half ? (const void*)A16.data() : A.data(), A.size() * in);
    ex.upload(dB, k.half ? (const void*)B16.data() : B.data(), B.size() * in);
    ex.upload(dC, C.data(), C.size() * 4);
    Gemm g = batched(mm(k.ta, k.tb, k.M, k.N, k.K, In(), lda, In(), ldb, dC, ldc), k.batch, (long long)sa, (long long)sb, (long long)sc);
    g.A = dA;
    g.B = dB;
    g.half = k.half;
    g.alpha = 0.75f;
    g.beta = k.beta;
    ex.gemm("gemm_check", g);
    std::vector<float> got(C.size());
    ex.download(got.data(), dC, got.size() * 4);
    Gemm h = g;
    h.A = k.half ? (const void*)A16.data() : A.data();
    h.B = k.half ? (const void*)B16.data() : B.data();
    h.C = ref.data();
    host_gemm(h, kFp32);
    double err = 0, scale = 1e-3;
    for (size_t i = 0; i < got.size(); i++) {
      err = std::max(err, (double)std::fabs(got[i] - ref[i]));
      scale = std::max(scale, (double)std::fabs(ref[i]));
    }
    char label[128];
    std::snprintf(label, sizeof label, "%s%s M=%d N=%d K=%d batch=%d beta=%g%s", k.ta ? "T" : "N", k.tb ? "T" : "N", k.M, k.N, k.K, k.batch,
                  k.beta, k.half ? " bf16 operands" : "");
    out.push_back({label, err / scale});
  }
  return out;
}

}  // namespace gpu
}  // namespace tfpipe
