// What code shared by the host and the GPU needs: a marker for functions compiled for both, and
// the sums over the lanes that share a row. Every kernel's arithmetic is written once, in
// functors of ops.h, and runs on the GPU (device_exec.cu, nvcc) and on the host (host_exec.cc,
// plain g++), so CI checks the formulas against the CPU kernels without a GPU.
//
// A row functor is called as f(row, lane, width): on the GPU one warp takes a row (width 32), on
// the host one call does (width 1, lane 0). Each lane walks the row's elements lane, lane +
// width, ..., and lane_sum / lane_max combine the lanes' partial results.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define TFP_HD __host__ __device__ __forceinline__
#else
#define TFP_HD inline
#endif

namespace tfpipe {
namespace gpu {

// The total over the warp, the same bits in every lane: with xor butterflies each level adds the
// same two partial sums in both lanes of a pair (a + b and b + a), so all lanes end equal.
TFP_HD float lane_sum(float v) {
#if defined(__CUDA_ARCH__)
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
#endif
  return v;
}

TFP_HD float lane_max(float v) {
#if defined(__CUDA_ARCH__)
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
#endif
  return v;
}

}  // namespace gpu
}  // namespace tfpipe
