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
#include <cstring>
#if !defined(__CUDA_ARCH__)
#include <condition_variable>
#include <mutex>
#endif

#if defined(__CUDACC__)
#define TFP_HD __host__ __device__ __forceinline__
#else
#define TFP_HD inline
#endif

// Unrolls a loop of independent loads on the GPU, so that a thread has several in flight (a
// column-sum thread reads 64 rows; one load at a time left DRAM idle).
#if defined(__CUDA_ARCH__)
#define TFP_UNROLL _Pragma("unroll 8")
#else
#define TFP_UNROLL
#endif

namespace tfpipe {
namespace gpu {

#if !defined(__CUDA_ARCH__)
// The host's SIMT emulation (host_exec.cc, executor kHostSimt): one OS thread per lane, so that
// the GPU's lane arithmetic (shuffles, warp and block barriers) runs on the host as written and
// CI checks it without a GPU. A thread that is not an emulated lane has current == nullptr, and
// the functions below then see a warp of one lane.
namespace sim {
struct Barrier {
  std::mutex m;
  std::condition_variable cv;
  int n = 0, waiting = 0;
  unsigned generation = 0;
  void wait() {
    std::unique_lock<std::mutex> lock(m);
    const unsigned g = generation;
    if (++waiting == n) {
      waiting = 0;
      generation++;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return generation != g; });
    }
  }
};
struct Warp {
  Barrier barrier;
  float values[32];
};
struct Lane {
  Warp* warp;
  Barrier* block;
  int lane;
};
inline thread_local Lane* current = nullptr;
// This lane's v out, lane ^ mask's in: every lane of the warp must call it.
inline float shfl_xor(float v, int mask) {
  Lane* l = current;
  l->warp->values[l->lane] = v;
  l->warp->barrier.wait();
  const float r = l->warp->values[l->lane ^ mask];
  l->warp->barrier.wait();
  return r;
}
}  // namespace sim
#endif

// The total over the warp, the same bits in every lane: with xor butterflies each level adds the
// same two partial sums in both lanes of a pair (a + b and b + a), so all lanes end equal.
TFP_HD float lane_sum(float v) {
#if defined(__CUDA_ARCH__)
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
#else
  if (sim::current)
    for (int o = 16; o > 0; o >>= 1) v += sim::shfl_xor(v, o);
#endif
  return v;
}

TFP_HD float lane_max(float v) {
#if defined(__CUDA_ARCH__)
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
#else
  if (sim::current)
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, sim::shfl_xor(v, o));
#endif
  return v;
}

// bfloat16 as its bits: the upper half of a float, rounded to nearest even (NaN stays NaN).
typedef uint16_t bf16;

TFP_HD uint32_t bits_of(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
TFP_HD float float_of(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}
TFP_HD bf16 to_bf16(float x) {
  const uint32_t u = bits_of(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40u);
  return (bf16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
TFP_HD float from_bf16(bf16 h) { return float_of((uint32_t)h << 16); }

// Where a functor writes a value that feeds matrix products: in fp32 (f), in bfloat16 (h, the bf16
// precision), or both when something else also reads it; a null pointer is not written.
struct Out {
  float* f;
  bf16* h;
  TFP_HD void put(size_t i, float v) const {
    if (f) f[i] = v;
    if (h) h[i] = to_bf16(v);
  }
};

// Rounded multiply and add that the compiler may not fuse into one FMA: where the CPU code (built
// without FMA for its baseline) and the GPU must round alike, e.g. the optimizer, whose g / (|g| +
// eps) turns a last-bit difference of a near-zero gradient into a difference of a whole step.
TFP_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
TFP_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// What a block functor sees: its thread among the block's, its warp and lane, the block's shared
// memory, and barriers. On the GPU a block of `threads` threads runs the functor for one item;
// on the host one call does (one thread, one warp of width 1, barriers that do nothing), so loops
// written as "for (e = tid; e < n; e += threads)" and "for (row = warp; ...; row += warps)" cover
// everything either way.
struct BlockCtx {
  int tid, threads, warp, warps, lane, width;
  float* smem;
  TFP_HD void sync() const {
#if defined(__CUDA_ARCH__)
    __syncthreads();
#else
    if (sim::current) sim::current->block->wait();
#endif
  }
  TFP_HD void warp_sync() const {
#if defined(__CUDA_ARCH__)
    __syncwarp();
#else
    if (sim::current) sim::current->warp->barrier.wait();
#endif
  }
};

}  // namespace gpu
}  // namespace tfpipe
