// The CUDA executor of the GPU model (model.h): element and row functors (ops.h) become
// grid-stride kernels, products go to cuBLASLt (loaded at run time, cublaslt.h), and every CUDA
// call and launch is checked, the failing operation named in the error. TFPIPE_CUDA_SYNC=1 also
// synchronises after each launch, so an asynchronous fault is pinned to the launch that made it.
// Included by the CUDA units: device_exec.cu (the device probe, the trainer's factory, the
// profile) and gemm_check.cu (cuBLASLt through the row-major mapping, against the host GEMM).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

#include "checks.h"
#include "cublaslt.h"
#include "model.h"

namespace tfpipe {
namespace gpu {

// Per-operation GPU milliseconds (TFPIPE_CUDA_PROFILE=1): CUDA events around every launch, read
// whenever an executor synchronises anyway (downloads), summed by operation name (device_exec.cu).
extern std::mutex g_profileMutex;
extern std::map<std::string, double> g_profile;
// The device tfpipe uses: 0, or TFPIPE_CUDA_DEVICE (device_exec.cu).
int device_index();

namespace {

[[noreturn]] void fail(const char* what, const char* call, cudaError_t e) {
  throw std::runtime_error(std::string("CUDA error in ") + what + " (" + call + "): " + cudaGetErrorName(e) + ", " + cudaGetErrorString(e));
}
#define CK(what, call)                            \
  do {                                            \
    cudaError_t e_ = (call);                      \
    if (e_ != cudaSuccess) fail(what, #call, e_); \
  } while (0)

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 8192;
constexpr int kSumBlocks = 1024;

template <class F>
__global__ void each_kernel(F f, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) f(i);
}

// One warp per row: every lane of a warp has the same row, so lane_sum's shuffles see all 32.
template <class F>
__global__ void rows_kernel(F f, size_t n) {
  const size_t warps = (size_t)gridDim.x * blockDim.x / 32;
  const int lane = threadIdx.x & 31;
  for (size_t r = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; r < n; r += warps) f(r, lane, 32);
}

// One item per block (grid-stride over items), the block's threads and shared memory shared.
template <class F>
__global__ void blocks_kernel(F f, size_t n) {
  extern __shared__ __align__(16) float smem[];
  const BlockCtx c{(int)threadIdx.x, (int)blockDim.x, (int)threadIdx.x / 32, (int)blockDim.x / 32, (int)threadIdx.x & 31, 32, smem};
  for (size_t b = blockIdx.x; b < n; b += gridDim.x) {
    f(b, c);
    __syncthreads();
  }
}

// Sum of squares in two fixed-shape passes (kSumBlocks partial sums, then one block), in double:
// the same order, hence the same bits, on every run.
__global__ void sumsq_partial(const float* x, size_t n, double* part) {
  __shared__ double s[kThreads];
  double acc = 0;
  for (size_t i = (size_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += (size_t)gridDim.x * kThreads) acc += (double)x[i] * x[i];
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int o = kThreads / 2; o > 0; o >>= 1) {
    if ((int)threadIdx.x < o) s[threadIdx.x] += s[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[blockIdx.x] = s[0];
}

__global__ void sumsq_final(const double* part, int n, double* out) {
  __shared__ double s[kThreads];
  double acc = 0;
  for (int i = threadIdx.x; i < n; i += kThreads) acc += part[i];
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int o = kThreads / 2; o > 0; o >>= 1) {
    if ((int)threadIdx.x < o) s[threadIdx.x] += s[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = s[0];
}

// One cuBLASLt configuration per distinct product (shape, strides, alignment, precision).
struct Plan {
  lt::MatmulDesc desc = nullptr;
  lt::Layout a = nullptr, b = nullptr, c = nullptr;
  lt::Algo algo{};
};

// The largest power of two up to 256 that divides the address of every matrix of the batch.
unsigned alignment(const void* p, long long stride, int batch, size_t elem) {
  uintptr_t a = (uintptr_t)p;
  if (batch > 1) a |= (uintptr_t)(stride * (long long)elem);
  unsigned al = 256;
  while (al > 4 && a % al) al >>= 1;
  return al;
}

struct DeviceExec {
  Precision precision;
  const lt::Api* api = nullptr;
  lt::Handle handle = nullptr;
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;
  size_t workspaceBytes = 32u << 20;
  double* sumParts = nullptr;
  bool syncEach = false;
  std::vector<void*> allocs;
  std::map<std::string, Plan> plans;
  int smemOptin = 48 << 10;  // shared memory a block may have, bytes
  std::vector<const void*> wideKernels;  // kernels already allowed more than 48 KB
  bool profiling = false;
  struct Mark {
    const char* what;
    cudaEvent_t begin, end;
  };
  std::vector<Mark> marks;
  std::vector<cudaEvent_t> spare;

  explicit DeviceExec(Precision p) : precision(p) {
    const DeviceInfo& info = device_info();
    if (!info.ok) throw std::runtime_error(info.error);
    std::string why;
    api = lt::load(&why);
    const char* s = std::getenv("TFPIPE_CUDA_SYNC");
    syncEach = s && *s && std::strcmp(s, "0") != 0;
    const char* prof = std::getenv("TFPIPE_CUDA_PROFILE");
    profiling = prof && *prof && std::strcmp(prof, "0") != 0;
    CK("setup", cudaSetDevice(device_index()));
    CK("setup", cudaDeviceGetAttribute(&smemOptin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_index()));
    CK("setup", cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const lt::Status st = api->create(&handle);
    if (st != 0) throw std::runtime_error(std::string("cublasLtCreate: ") + lt::status_name(st));
    workspace = alloc(workspaceBytes);
    sumParts = (double*)alloc(kSumBlocks * sizeof(double));
  }
  ~DeviceExec() {
    if (stream) cudaStreamSynchronize(stream);
    for (auto& kv : plans) {
      api->descDestroy(kv.second.desc);
      api->layoutDestroy(kv.second.a);
      api->layoutDestroy(kv.second.b);
      api->layoutDestroy(kv.second.c);
    }
    for (void* p : allocs) cudaFree(p);
    for (auto& m : marks) spare.push_back(m.begin), spare.push_back(m.end);
    for (cudaEvent_t e : spare) cudaEventDestroy(e);
    if (handle) api->destroy(handle);
    if (stream) cudaStreamDestroy(stream);
  }

  cudaEvent_t event() {
    cudaEvent_t e;
    if (!spare.empty()) {
      e = spare.back();
      spare.pop_back();
    } else {
      CK("profile", cudaEventCreate(&e));
    }
    return e;
  }
  // Runs launch() (which enqueues one operation) between two events when profiling.
  template <class L>
  void timed(const char* what, L launch) {
    if (!profiling) {
      launch();
      return after(what);
    }
    Mark m{what, event(), event()};
    CK(what, cudaEventRecord(m.begin, stream));
    launch();
    after(what);
    CK(what, cudaEventRecord(m.end, stream));
    marks.push_back(m);
  }
  void harvest() {
    if (marks.empty()) return;
    std::lock_guard<std::mutex> lock(g_profileMutex);
    for (auto& m : marks) {
      float ms = 0;
      CK("profile", cudaEventElapsedTime(&ms, m.begin, m.end));
      g_profile[m.what] += ms;
      spare.push_back(m.begin);
      spare.push_back(m.end);
    }
    marks.clear();
  }
  void after(const char* what) {
    CK(what, cudaGetLastError());
    if (syncEach) CK(what, cudaStreamSynchronize(stream));
  }
  void* alloc(size_t bytes) {
    void* p = nullptr;
    CK("alloc", cudaMalloc(&p, bytes ? bytes : 1));
    allocs.push_back(p);
    CK("alloc", cudaMemsetAsync(p, 0, bytes, stream));
    return p;
  }
  // From pageable host memory: the call returns once the source has been staged, so the caller may
  // reuse it at once.
  void upload(void* dst, const void* src, size_t bytes) { CK("upload", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream)); }
  void download(void* dst, const void* src, size_t bytes) {
    CK("download", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
    CK("download", cudaStreamSynchronize(stream));
    harvest();
  }
  void zero(void* p, size_t bytes) { CK("zero", cudaMemsetAsync(p, 0, bytes, stream)); }
  void sync() {
    CK("sync", cudaStreamSynchronize(stream));
    harvest();
  }

  template <class F>
  void each(const char* what, size_t n, const F& f) {
    if (!n) return;
    const size_t blocks = (n + kThreads - 1) / kThreads;
    timed(what, [&] { each_kernel<<<(unsigned)(blocks < kMaxBlocks ? blocks : kMaxBlocks), kThreads, 0, stream>>>(f, n); });
  }
  template <class F>
  void rows(const char* what, size_t n, const F& f) {
    if (!n) return;
    const size_t blocks = (n + kThreads / 32 - 1) / (kThreads / 32);
    timed(what, [&] { rows_kernel<<<(unsigned)(blocks < kMaxBlocks ? blocks : kMaxBlocks), kThreads, 0, stream>>>(f, n); });
  }
  size_t max_smem() const { return (size_t)smemOptin; }
  template <class F>
  void blocks(const char* what, size_t n, int warps, size_t smemFloats, const F& f) {
    if (!n) return;
    const size_t bytes = smemFloats * sizeof(float);
    if (bytes > (size_t)smemOptin)
      throw std::runtime_error(std::string(what) + " needs " + std::to_string(bytes >> 10) + " KB of shared memory per block; this GPU offers " +
                               std::to_string(smemOptin >> 10) + " KB");
    const void* k = (const void*)blocks_kernel<F>;
    if (bytes > (48u << 10) && std::find(wideKernels.begin(), wideKernels.end(), k) == wideKernels.end()) {
      CK(what, cudaFuncSetAttribute(blocks_kernel<F>, cudaFuncAttributeMaxDynamicSharedMemorySize, smemOptin));
      wideKernels.push_back(k);
    }
    const unsigned grid = (unsigned)(n < (1u << 20) ? n : (1u << 20));
    timed(what, [&] { blocks_kernel<<<grid, warps * 32, bytes, stream>>>(f, n); });
  }
  void sumsq(const char* what, const float* x, size_t n, double* out) {
    timed(what, [&] { sumsq_partial<<<kSumBlocks, kThreads, 0, stream>>>(x, n, sumParts); });
    timed(what, [&] { sumsq_final<<<1, kThreads, 0, stream>>>(sumParts, kSumBlocks, out); });
  }

  void lt_check(const char* what, const char* call, lt::Status s, const Gemm& g) {
    if (s == 0) return;
    char shape[256];
    std::snprintf(shape, sizeof shape, "M=%d N=%d K=%d ta=%d tb=%d lda=%d ldb=%d ldc=%d batch=%d bf16=%d", g.M, g.N, g.K, g.ta, g.tb, g.lda,
                  g.ldb, g.ldc, g.batch, g.half);
    throw std::runtime_error(std::string("cuBLASLt error in ") + what + " (" + call + ", " + shape + "): " + lt::status_name(s));
  }

  // cuBLASLt is column-major, and a row-major [r, c] matrix is a column-major [c, r] one, so the
  // row-major C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T: cuBLASLt's
  // first operand is our B, its second our A, each with its own transpose flag.
  const Plan& plan(const char* what, const Gemm& g) {
    const size_t in = g.half ? 2 : 4;
    const unsigned alA = alignment(g.A, g.sa, g.batch, in), alB = alignment(g.B, g.sb, g.batch, in), alC = alignment(g.C, g.sc, g.batch, 4);
    char key[320];
    std::snprintf(key, sizeof key, "%d%d %d %d %d %d %d %d %d %lld %lld %lld %u %u %u %d %d", g.ta, g.tb, g.M, g.N, g.K, g.lda, g.ldb, g.ldc,
                  g.batch, g.sa, g.sb, g.sc, alA, alB, alC, g.beta != 0.f, g.half);
    auto found = plans.find(key);
    if (found != plans.end()) return found->second;
    Plan p;
    // bf16 operands accumulate in fp32; fp32 operands use TF32 tensor cores unless the precision is
    // fp32 (cuBLASLt's FAST_16BF on fp32 data chose TF32 kernels: the bf16 precision's fp32
    // products, the head's, say so plainly).
    const int compute = g.half || precision == kFp32 ? lt::kCompute32F : lt::kCompute32FFastTF32;
    const int type = g.half ? lt::kR16BF : lt::kR32F;
    lt_check(what, "cublasLtMatmulDescCreate", api->descCreate(&p.desc, compute, lt::kR32F), g);
    const int32_t opA = g.tb ? lt::kOpT : lt::kOpN, opB = g.ta ? lt::kOpT : lt::kOpN;
    lt_check(what, "TRANSA", api->descSet(p.desc, lt::kDescTransA, &opA, sizeof opA), g);
    lt_check(what, "TRANSB", api->descSet(p.desc, lt::kDescTransB, &opB, sizeof opB), g);
    lt_check(what, "layout A", api->layoutCreate(&p.a, type, g.tb ? g.K : g.N, g.tb ? g.N : g.K, g.ldb), g);
    lt_check(what, "layout B", api->layoutCreate(&p.b, type, g.ta ? g.M : g.K, g.ta ? g.K : g.M, g.lda), g);
    lt_check(what, "layout C", api->layoutCreate(&p.c, lt::kR32F, g.N, g.M, g.ldc), g);
    if (g.batch > 1) {
      const int32_t n = g.batch;
      const int64_t sA = g.sb, sB = g.sa, sC = g.sc;
      lt_check(what, "batch A", api->layoutSet(p.a, lt::kLayoutBatchCount, &n, sizeof n), g);
      lt_check(what, "batch B", api->layoutSet(p.b, lt::kLayoutBatchCount, &n, sizeof n), g);
      lt_check(what, "batch C", api->layoutSet(p.c, lt::kLayoutBatchCount, &n, sizeof n), g);
      lt_check(what, "stride A", api->layoutSet(p.a, lt::kLayoutBatchStride, &sA, sizeof sA), g);
      lt_check(what, "stride B", api->layoutSet(p.b, lt::kLayoutBatchStride, &sB, sizeof sB), g);
      lt_check(what, "stride C", api->layoutSet(p.c, lt::kLayoutBatchStride, &sC, sizeof sC), g);
    }
    lt::Preference pref = nullptr;
    lt_check(what, "cublasLtMatmulPreferenceCreate", api->prefCreate(&pref), g);
    const uint64_t ws = workspaceBytes;
    const uint32_t aA = alB, aB = alA, aC = alC;  // cuBLASLt's A is our B and vice versa
    lt::Status st = api->prefSet(pref, lt::kPrefMaxWorkspace, &ws, sizeof ws);
    if (!st) st = api->prefSet(pref, lt::kPrefAlignA, &aA, sizeof aA);
    if (!st) st = api->prefSet(pref, lt::kPrefAlignB, &aB, sizeof aB);
    if (!st) st = api->prefSet(pref, lt::kPrefAlignC, &aC, sizeof aC);
    if (!st) st = api->prefSet(pref, lt::kPrefAlignD, &aC, sizeof aC);
    lt::HeuristicResult r{};
    int returned = 0;
    if (!st) st = api->heuristic(handle, p.desc, p.a, p.b, p.c, p.c, pref, 1, &r, &returned);
    api->prefDestroy(pref);
    lt_check(what, "cublasLtMatmulAlgoGetHeuristic", st, g);
    if (returned < 1) lt_check(what, "cublasLtMatmulAlgoGetHeuristic (no algorithm)", 15, g);
    p.algo = r.algo;
    return plans.emplace(key, p).first->second;
  }

  void gemm(const char* what, const Gemm& g) {
    const Plan& p = plan(what, g);
    timed(what, [&] {
      lt_check(what, "cublasLtMatmul",
               api->matmul(handle, p.desc, &g.alpha, g.B, p.a, g.A, p.b, &g.beta, g.C, p.c, g.C, p.c, &p.algo, workspace, workspaceBytes, stream),
               g);
    });
  }
};

}  // namespace
}  // namespace gpu
}  // namespace tfpipe
