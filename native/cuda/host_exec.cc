// The host executor of the GPU model (model.h): the same model code as the GPU runs, with plain
// loops for the kernels and a reference GEMM for cuBLASLt. It lets CI check the GPU path's
// formulas, layouts and transposes against the CPU kernels on machines without a GPU (and without
// nvcc: this file is plain C++). Single-threaded and slow: for small test models only.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>

#include "model.h"

namespace tfpipe {
namespace gpu {

const char* precision_name(Precision p) { return p == kTf32 ? "tf32" : p == kBf16 ? "bf16" : "fp32"; }

bool parse_precision(const char* name, Precision* out) {
  for (Precision p : {kFp32, kTf32, kBf16})
    if (name && !std::strcmp(name, precision_name(p))) {
      *out = p;
      return true;
    }
  return false;
}

float round_to_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;  // NaN, infinity
  const uint32_t lsb = (u >> 13) & 1u;              // 13 of the 23 mantissa bits go
  u = (u + 0xfffu + lsb) & ~0x1fffu;                // round to nearest, ties to even
  float r;
  std::memcpy(&r, &u, sizeof r);
  return r;
}

void host_gemm(const Gemm& g, Precision p) {
  const bool tf32 = !g.half && p != kFp32;  // fp32 operands of the tf32 and bf16 precisions
  auto load = [&](const void* base, size_t i) {
    if (g.half) return from_bf16(static_cast<const bf16*>(base)[i]);
    const float x = static_cast<const float*>(base)[i];
    return tf32 ? round_to_tf32(x) : x;
  };
  for (int bi = 0; bi < g.batch; bi++) {
    float* C = g.C + bi * g.sc;
    for (int m = 0; m < g.M; m++)
      for (int n = 0; n < g.N; n++) {
        float acc = 0.f;
        for (int k = 0; k < g.K; k++) {
          const size_t a = bi * g.sa + (g.ta ? (size_t)k * g.lda + m : (size_t)m * g.lda + k);
          const size_t b = bi * g.sb + (g.tb ? (size_t)n * g.ldb + k : (size_t)k * g.ldb + n);
          acc += load(g.A, a) * load(g.B, b);
        }
        float& c = C[(size_t)m * g.ldc + n];
        c = g.beta == 0.f ? g.alpha * acc : g.alpha * acc + g.beta * c;
      }
  }
}

namespace {

struct HostExec {
  Precision precision;
  std::vector<std::unique_ptr<double[]>> storage;

  explicit HostExec(Precision p) : precision(p) {}
  void* alloc(size_t bytes) {
    storage.emplace_back(new double[bytes / sizeof(double) + 1]());
    return storage.back().get();
  }
  void upload(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
  void zero(void* p, size_t bytes) { std::memset(p, 0, bytes); }
  void sync() {}
  // Shared memory a block may have: unlimited, unless TFPIPE_GPU_HOST_SMEM (bytes) sets a limit
  // (tests of the paths that large problems take on a GPU).
  size_t max_smem() const {
    const char* e = std::getenv("TFPIPE_GPU_HOST_SMEM");
    return e && *e ? (size_t)std::strtoull(e, nullptr, 10) : (size_t)-1;
  }
  template <class F>
  void each(const char*, size_t n, const F& f) {
    for (size_t i = 0; i < n; i++) f(i);
  }
  template <class F>
  void rows(const char*, size_t n, const F& f) {
    for (size_t r = 0; r < n; r++) f(r, 0, 1);
  }
  template <class F>
  void blocks(const char*, size_t n, int, size_t smemFloats, const F& f) {
    std::vector<float> smem(smemFloats);
    const BlockCtx c{0, 1, 0, 1, 0, 1, smem.data()};
    for (size_t b = 0; b < n; b++) f(b, c);
  }
  void gemm(const char*, const Gemm& g) { host_gemm(g, precision); }
  void sumsq(const char*, const float* x, size_t n, double* out) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    *out = s;
  }
};

// Runs body(tid) for tid in [0, threads) on as many OS threads, grouped into warps of 32 lanes
// whose shuffles and barriers (hd.h sim) work as the GPU's, with one block barrier for all.
template <class Body>
void run_lanes(int threads, const Body& body) {
  std::vector<sim::Warp> warps((threads + 31) / 32);
  for (auto& w : warps) w.barrier.n = 32;
  sim::Barrier block;
  block.n = threads;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; t++)
    pool.emplace_back([&, t] {
      sim::Lane lane{&warps[t / 32], &block, t % 32};
      sim::current = &lane;
      body(t);
      sim::current = nullptr;
    });
  for (auto& th : pool) th.join();
}

// The host executor with the GPU's lanes: rows take a warp of 32 lanes, blocks their warps.
struct SimtExec : HostExec {
  explicit SimtExec(Precision p) : HostExec(p) {}
  template <class F>
  void rows(const char*, size_t n, const F& f) {
    run_lanes(32, [&](int lane) {
      for (size_t r = 0; r < n; r++) f(r, lane, 32);
    });
  }
  template <class F>
  void blocks(const char*, size_t n, int warps, size_t smemFloats, const F& f) {
    std::vector<float> smem(smemFloats);
    run_lanes(warps * 32, [&](int t) {
      const BlockCtx c{t, warps * 32, t / 32, warps, t % 32, 32, smem.data()};
      for (size_t b = 0; b < n; b++) {
        f(b, c);
        c.sync();
      }
    });
  }
};

}  // namespace

const char* executor_name(Executor e) { return e == kHost ? "host" : e == kHostSimt ? "simt" : "cuda"; }

Trainer* new_host_trainer(const Config& c, Precision p, bool simt) {
  if (simt) return new Model<SimtExec>(c, p);
  return new Model<HostExec>(c, p);
}

const char* unsupported(const Config& c) {
  if (c.tokenizer == kPatchTokens && c.pool == kPoolCls && c.posEmbedding == kPosLearned) return nullptr;
  return "the CUDA kernels implement tokenizer patch, pool cls and position_embedding learned only";
}

Trainer* new_trainer(const Config& c, Precision p, Executor e) {
  if (const char* why = unsupported(c)) throw std::runtime_error(why);
  return e == kDevice ? new_device_trainer(c, p) : new_host_trainer(c, p, e == kHostSimt);
}

}  // namespace gpu
}  // namespace tfpipe
