// Native CPU kernels for tfpipe's ViT: one call runs the whole forward pass and, when targets are
// given, the loss and the backward pass, returning every parameter gradient. It mirrors
// src/ml/vit/forward.ts op for op (same layouts, same dropout hash) so both give the same numbers
// within float tolerance; tests compare them. Built at install time by native/build.mjs; optional.
#include <node_api.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <functional>
#include <mutex>
#include <cmath>
#include <map>
#include <string>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

// GCC/Clang vector extension: lowered to AVX-512, AVX2 or SSE by whatever -march allows.
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));

inline v16 load(const float* p) { return *reinterpret_cast<const v16u*>(p); }
inline void store(float* p, v16 v) { *reinterpret_cast<v16u*>(p) = v; }

typedef int32_t i16v __attribute__((vector_size(64)));
typedef uint32_t u16v __attribute__((vector_size(64)));

// exp(x) for 16 lanes: Cephes' expf (range reduction by ln 2, degree-6 polynomial), ~1 ulp.
inline v16 vexp(v16 x) {
  x = x > 88.3762626647949f ? v16{} + 88.3762626647949f : x;
  x = x < -87.3365447504019f ? v16{} - 87.3365447504019f : x;
  v16 fx = x * 1.44269504088896341f;
  fx = fx + (fx >= 0 ? v16{} + 0.5f : v16{} - 0.5f);
  i16v n = __builtin_convertvector(fx, i16v);  // round half away from zero
  v16 nf = __builtin_convertvector(n, v16);
  v16 r = x - nf * 0.693359375f - nf * -2.12194440e-4f;
  v16 p = v16{} + 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r * r + r + 1.f;
  i16v bits = (n + 127) << 23;
  return p * reinterpret_cast<v16&>(bits);
}

inline float hmax(v16 v) {
  float m = v[0];
  for (int i = 1; i < 16; i++) m = std::max(m, v[i]);
  return m;
}
inline float hsum(v16 v) {
  float s = 0.f;
  for (int i = 0; i < 16; i++) s += v[i];
  return s;
}
inline float rowmax(int n, const float* x) {
  int j = 0;
  float m = x[0];
  if (n >= 16) {
    v16 acc = load(x);
    for (j = 16; j + 16 <= n; j += 16) {
      v16 v = load(x + j);
      acc = v > acc ? v : acc;
    }
    m = hmax(acc);
  }
  for (; j < n; j++) m = std::max(m, x[j]);
  return m;
}
inline float rowdot(int n, const float* x, const float* y) {
  int j = 0;
  v16 acc{};
  for (; j + 16 <= n; j += 16) acc += load(x + j) * load(y + j);
  float s = hsum(acc);
  for (; j < n; j++) s += x[j] * y[j];
  return s;
}

inline float rowsum(int n, const float* x) {
  int j = 0;
  v16 acc{};
  for (; j + 16 <= n; j += 16) acc += load(x + j);
  float s = hsum(acc);
  for (; j < n; j++) s += x[j];
  return s;
}
inline float rowsqdev(int n, const float* x, float mu) {  // sum (x - mu)^2
  int j = 0;
  v16 acc{};
  for (; j + 16 <= n; j += 16) {
    v16 d = load(x + j) - mu;
    acc += d * d;
  }
  float s = hsum(acc);
  for (; j < n; j++) s += (x[j] - mu) * (x[j] - mu);
  return s;
}

// Applies f to x[0, n) 16 lanes at a time; the tail goes through a zero-padded vector.
template <class F>
inline void map16(size_t n, const float* x, float* y, F f) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) store(y + i, f(load(x + i), i));
  if (i < n) {
    float buf[16] = {0};
    std::memcpy(buf, x + i, (n - i) * sizeof(float));
    v16 r = f(load(buf), i);
    std::memcpy(y + i, &r, (n - i) * sizeof(float));
  }
}

int g_threads = 1;

// Time per named section, summed over calls; read by profile() (for the benchmark report).
// CPU time of the calling thread, so that other load on a shared machine does not inflate it;
// with several threads it undercounts the work done by the helpers.
std::map<std::string, double> g_profile;
inline double cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
struct Section {
  const char* name;
  double t0 = cpu_ms();
  explicit Section(const char* n) : name(n) {}
  ~Section() { g_profile[name] += cpu_ms() - t0; }
};
#define SECTION(n) Section section_##__LINE__(n)

// Worker threads kept for the life of the process: a parallel region wakes them instead of
// creating threads, which cost tens of microseconds each over the ~150 regions of a training
// step. Never destroyed: workers are detached and simply end with the process.
//
// Every hand-over is a condition-variable wait whose predicate is re-checked under m_, and every
// change of a predicate's inputs is published under m_ (or, for the last finisher, followed by
// taking m_ before notifying), so no wake-up can be lost whatever the scheduling. The spins in
// front of the waits are short and bounded by time; they only save the futex round trip when the
// other side is running on another core at that moment.
class Pool {
 public:
  Pool() {
    cpu_set_t set;
    CPU_ZERO(&set);
    cpus_ = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)std::thread::hardware_concurrency();
  }

  // Runs job(i) for i in [0, t): i = 0 on the calling thread, the rest on workers.
  void run(int t, const std::function<void(int)>& job) {
    if (t <= 1) {
      job(0);
      return;
    }
    grow(t - 1);
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &job;
      active_ = t;
      // More threads than CPUs (a pinned process): the peer a spinner waits for may need this
      // very core, so spinning only delays it; go straight to sleep.
      spin_us_ = cpus_ >= t ? kSpinMicros : 0;
      pending_.store(t - 1);
      generation_.store(generation_.load() + 1);
    }
    work_.notify_all();
    in_job = true;
    job(0);
    in_job = false;
    auto finished = [&] { return pending_.load() == 0; };
    // The caller spins longer than the workers: its peers started later (woken from sleep) and
    // it holds its own core anyway.
    if (!spin(finished, kCallerSpin * spin_us_)) {
      std::unique_lock<std::mutex> lk(m_);
      done_.wait(lk, finished);
    }
  }

  // True on a thread that is inside a job: a nested region there runs serially (re-entering
  // run() would overwrite the region in flight).
  static thread_local bool in_job;

 private:
  // Spinning longer only pays when regions follow each other within this time; the serial code
  // between the regions of a training step mostly takes longer. No sched_yield(): on a loaded
  // machine it hands the core to another process for a whole time slice.
  static constexpr int kSpinMicros = 20, kCallerSpin = 5;

  template <class P>
  static bool spin(P ready, int us) {
    if (us <= 0) return ready();
    const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    for (;;) {
      for (int i = 0; i < 16; i++) {
        if (ready()) return true;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
      if (std::chrono::steady_clock::now() >= end) return ready();
    }
  }
  void grow(int n) {
    while (count_ < n) {
      int index = 1 + count_++;
      // The generation before this run's increment: the new worker must not miss this run.
      unsigned seen = generation_.load();
      std::thread([this, index, seen] { work(index, seen); }).detach();
    }
  }
  void work(int index, unsigned seen) {
    in_job = true;
    int spin_us = 0;
    for (;;) {
      spin([&] { return generation_.load() != seen; }, spin_us);
      const std::function<void(int)>* job;
      int active;
      {
        std::unique_lock<std::mutex> lk(m_);
        work_.wait(lk, [&] { return generation_.load() != seen; });
        // Job, size and generation change together under the lock: take them all at once.
        seen = generation_.load();
        job = job_;
        active = active_;
        spin_us = spin_us_;
      }
      if (index >= active) continue;
      (*job)(index);
      if (pending_.fetch_sub(1) == 1) {
        // The caller checks pending_ under m_ before it sleeps: taking m_ here orders this
        // notify after that check or after it is already waiting, never in between.
        std::lock_guard<std::mutex> lk(m_);
        done_.notify_all();
      }
    }
  }
  std::mutex m_;
  std::condition_variable work_, done_;
  std::atomic<unsigned> generation_{0};
  std::atomic<int> pending_{0};
  const std::function<void(int)>* job_ = nullptr;
  int active_ = 0;
  int spin_us_ = 0;  // written under m_; read by the caller, which wrote it
  int count_ = 0;    // workers started; only the calling thread touches it
  int cpus_ = 1;     // CPUs this process may run on
};

thread_local bool Pool::in_job = false;

Pool& pool() {
  static Pool* p = new Pool();
  return *p;
}

// Runs f(begin, end) over [0, n) split into contiguous chunks aligned to `align`, one per thread.
// Every chunk is non-empty: with fewer blocks than threads only as many threads as blocks run.
template <class F>
void parallel_for(int n, F f, int align = 1) {
  int blocks = (n + align - 1) / align;
  int t = std::min(g_threads, blocks);
  if (t <= 1 || Pool::in_job) {
    f(0, n);
    return;
  }
  int per = (blocks + t - 1) / t;
  t = (blocks + per - 1) / per;  // e.g. 4 blocks on 3 threads: 2 + 2, not 2 + 2 + 0
  pool().run(t, [&](int i) {
    int b = i * per * align, e = std::min(n, (i + 1) * per * align);
    f(b, e);
  });
}

// ---------------------------------------------------------------------------------------------
// GEMM: C[M,N] (+)= A[M,K] B[K,N], row-major with leading dimensions. A 4x32 register tile.

#ifdef __AVX512F__
constexpr bool kWideTiles = true;
#else
constexpr bool kWideTiles = false;
#endif

// A's element (r, k) is A[r * lda + k * acs]: acs = 1 for row-major A, lda = 1 for A given transposed.
template <int MR, int NV>
inline void tile(int K, const float* A, int lda, int acs, const float* B, int ldb, float* C, int ldc, bool acc) {
  v16 c[MR][NV];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) c[r][v] = acc ? load(C + r * ldc + 16 * v) : v16{};
  for (int k = 0; k < K; k++) {
    v16 b[NV];
    for (int v = 0; v < NV; v++) b[v] = load(B + (size_t)k * ldb + 16 * v);
    for (int r = 0; r < MR; r++) {
      float a = A[(size_t)r * lda + (size_t)k * acs];
      for (int v = 0; v < NV; v++) c[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) store(C + r * ldc + 16 * v, c[r][v]);
}

template <int MR>
void rows(int N, int K, const float* A, int lda, int acs, const float* B, int ldb, float* C, int ldc, bool acc) {
  int j = 0;
  for (; j + 32 <= N; j += 32) tile<MR, 2>(K, A, lda, acs, B + j, ldb, C + j, ldc, acc);
  for (; j + 16 <= N; j += 16) tile<MR, 1>(K, A, lda, acs, B + j, ldb, C + j, ldc, acc);
  for (; j < N; j++)
    for (int r = 0; r < MR; r++) {
      float s = acc ? C[r * ldc + j] : 0.f;
      for (int k = 0; k < K; k++) s += A[(size_t)r * lda + (size_t)k * acs] * B[(size_t)k * ldb + j];
      C[r * ldc + j] = s;
    }
}

void gemm_rows(int m0, int m1, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool acc, int acs = 1) {
  int i = m0;
  // A 4x16 tile has only 4 independent FMA chains, so narrow outputs (attention heads) take 8
  // rows; with AVX-512's 32 registers 8x32 tiles (16 accumulators) are faster everywhere.
  if (kWideTiles || N < 32)
    for (; i + 8 <= m1; i += 8) rows<8>(N, K, A + (size_t)i * lda, lda, acs, B, ldb, C + (size_t)i * ldc, ldc, acc);
  for (; i + 4 <= m1; i += 4) rows<4>(N, K, A + (size_t)i * lda, lda, acs, B, ldb, C + (size_t)i * ldc, ldc, acc);
  for (; i < m1; i++) rows<1>(N, K, A + (size_t)i * lda, lda, acs, B, ldb, C + (size_t)i * ldc, ldc, acc);
}

// C = A B (acc: C += A B), split over rows of C across threads.
void gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool acc, int acs = 1) {
  parallel_for(M, [&](int b, int e) { gemm_rows(b, e, N, K, A, lda, B, ldb, C, ldc, acc, acs); }, 4);
}

// out[cols, rows] = in[rows, cols]^T
void transpose(int rowsN, int cols, const float* in, float* out) {
  parallel_for(cols, [&](int b, int e) {
    for (int i0 = 0; i0 < rowsN; i0 += 64)
      for (int j = b; j < e; j++) {
        int i1 = std::min(rowsN, i0 + 64);
        for (int i = i0; i < i1; i++) out[(size_t)j * rowsN + i] = in[(size_t)i * cols + j];
      }
  });
}

// y[R,O] = x[R,I] w[I,O] + b
void linear_fwd(int R, int I, int O, const float* x, const float* w, const float* b, float* y) {
  SECTION("linear_fwd");
  if (b) {
    parallel_for(R, [&](int s, int e) {
      for (int r = s; r < e; r++) std::memcpy(y + (size_t)r * O, b, O * sizeof(float));
      gemm_rows(s, e, O, I, x, I, w, O, y, O, true);
    }, 4);
  } else {
    gemm(R, O, I, x, I, w, O, y, O, false);
  }
}

std::vector<float> g_tmp_w;

// dw[I,O] += x[R,I]^T dy[R,O]. R is large (batch * tokens) and I, O small, so walk R in chunks:
// each chunk's 32-column panel of dy is packed once and stays in L1 while every 4-row strip of
// dw uses it. Threads take chunks and keep private sums, added up at the end.
void gemm_tn_acc(int R, int I, int O, const float* x, const float* dy, float* dw) {
  const int KC = 256;
  const int chunks = (R + KC - 1) / KC;
  int t = std::min(g_threads, chunks);
  std::vector<std::vector<float>> partial(t, std::vector<float>((size_t)I * O, 0.f));
  parallel_for(t, [&](int tb, int te) {
    for (int ti = tb; ti < te; ti++) {
      float* acc = partial[ti].data();
      std::vector<float> panel((size_t)KC * 32);
      for (int ch = ti; ch < chunks; ch += t) {
        int k0 = ch * KC, kc = std::min(KC, R - k0);
        const float* xc = x + (size_t)k0 * I;
        int j0 = 0;
        for (; j0 + 32 <= O; j0 += 32) {
          for (int k = 0; k < kc; k++) std::memcpy(panel.data() + (size_t)k * 32, dy + (size_t)(k0 + k) * O + j0, 32 * sizeof(float));
          int i = 0;
          if (kWideTiles)
            for (; i + 8 <= I; i += 8) tile<8, 2>(kc, xc + i, 1, I, panel.data(), 32, acc + (size_t)i * O + j0, O, true);
          for (; i + 4 <= I; i += 4) tile<4, 2>(kc, xc + i, 1, I, panel.data(), 32, acc + (size_t)i * O + j0, O, true);
          for (; i < I; i++) tile<1, 2>(kc, xc + i, 1, I, panel.data(), 32, acc + (size_t)i * O + j0, O, true);
        }
        for (int i = 0; i < I; i++)  // leftover columns (O not a multiple of 32)
          for (int j = j0; j < O; j++) {
            float s2 = 0.f;
            for (int k = 0; k < kc; k++) s2 += xc[(size_t)k * I + i] * dy[(size_t)(k0 + k) * O + j];
            acc[(size_t)i * O + j] += s2;
          }
      }
    }
  });
  for (int ti = 0; ti < t; ti++)
    for (size_t e = 0; e < (size_t)I * O; e++) dw[e] += partial[ti][e];
}

// Given dy[R,O]: dw += x^T dy, db += sum(dy), dx (=/+=) dy w^T.
void linear_bwd(int R, int I, int O, const float* x, const float* w, const float* dy, float* dw, float* db, float* dx, bool dx_acc) {
  {
    SECTION("linear_bwd_dw");
    gemm_tn_acc(R, I, O, x, dy, dw);
  }
  SECTION("linear_bwd_dx_db");
  if (db) {
    for (int r = 0; r < R; r++)
      for (int o = 0; o < O; o++) db[o] += dy[(size_t)r * O + o];
  }
  if (dx) {
    g_tmp_w.resize((size_t)O * I);
    transpose(I, O, w, g_tmp_w.data());
    gemm(R, I, O, dy, O, g_tmp_w.data(), I, dx, I, dx_acc);
  }
}

// ---------------------------------------------------------------------------------------------
// Dropout masks: the same counter-based hash as src/ml/vit/dropout.ts.

// One body for scalars and 16-lane vectors (GCC vector types take the same operators).
template <typename T>
inline T fmix32(T h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

struct Dropout {
  bool active = false;
  uint32_t seed = 0;
  uint32_t threshold = 0;
  float keep = 1.f;

  uint32_t base(int site) const { return fmix32(seed * 0x9e3779b1u ^ (uint32_t)(site + 1) * 0x85ebca77u); }

  // y[i] = x[i] * mask(site, start + i) for i in [0, n), 16 lanes at a time.
  void mul(int site, size_t start, size_t n, const float* x, float* y) const {
    const uint32_t b = base(site);
    const u16v lane = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    const uint32_t thr = threshold;
    const float kp = keep;
    map16(n, x, y, [&](v16 v, size_t i) {
      u16v h = fmix32(b ^ (((uint32_t)(start + i) + lane) * 0xcc9e2d51u));
      i16v kept = (i16v)((h >> 8) >= thr);  // all ones where kept
      v16 kv = v16{} + kp;
      i16v f = kept & reinterpret_cast<i16v&>(kv);
      return v * reinterpret_cast<v16&>(f);
    });
  }

  // x[i] *= mask(site, i) for i in [0, n)
  void apply(int site, size_t n, float* x) const {
    if (!active) return;
    SECTION("dropout");
    parallel_for((int)n, [&](int b, int e) { mul(site, b, e - b, x + b, x + b); }, 16);
  }
};

// ---------------------------------------------------------------------------------------------
// Layer norm over rows of [R, D]: y = xhat * g + b; keeps xhat and rstd for the backward.

void layernorm_fwd(int R, int D, const float* x, const float* g, const float* b, float* xhat, float* rstd, float* y) {
  SECTION("layernorm_fwd");
  parallel_for(R, [&](int s, int e) {
    for (int r = s; r < e; r++) {
      const float* xr = x + (size_t)r * D;
      float mu = rowsum(D, xr) / D;
      float var = rowsqdev(D, xr, mu) / D;
      float rs = 1.f / std::sqrt(var + 1e-5f);
      rstd[r] = rs;
      for (int d = 0; d < D; d++) {
        float h = (xr[d] - mu) * rs;
        xhat[(size_t)r * D + d] = h;
        y[(size_t)r * D + d] = h * g[d] + b[d];
      }
    }
  });
}

// dx += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)); dg += sum(dy*xhat); db += sum(dy)
void layernorm_bwd(int R, int D, const float* xhat, const float* rstd, const float* g, const float* dy, float* dg, float* db, float* dx) {
  SECTION("layernorm_bwd");
  parallel_for(R, [&](int s, int e) {
    std::vector<float> dxh(D);
    for (int r = s; r < e; r++) {
      const float* xr = xhat + (size_t)r * D;
      const float* dr = dy + (size_t)r * D;
      for (int d = 0; d < D; d++) dxh[d] = dr[d] * g[d];
      float m1 = rowsum(D, dxh.data()) / D;
      float m2 = rowdot(D, dxh.data(), xr) / D;
      for (int d = 0; d < D; d++) dx[(size_t)r * D + d] += rstd[r] * (dxh[d] - m1 - xr[d] * m2);
    }
  });
  for (int r = 0; r < R; r++)
    for (int d = 0; d < D; d++) {
      dg[d] += dy[(size_t)r * D + d] * xhat[(size_t)r * D + d];
      db[d] += dy[(size_t)r * D + d];
    }
}

// ---------------------------------------------------------------------------------------------
// GELU, tanh approximation, as x * sigmoid(2z), z = c (x + a x^3).

const float GELU_C = 0.7978845608028654f;
const float GELU_A = 0.044715f;

inline v16 sigmoid2z(v16 v) {  // sigmoid(2 c (v + a v^3))
  return 1.f / (1.f + vexp(v * (v * v * (-2.f * GELU_C * GELU_A) - 2.f * GELU_C)));
}

void gelu_fwd(size_t n, const float* x, float* y) {
  SECTION("gelu_fwd");
  parallel_for((int)n, [&](int b, int e) { map16(e - b, x + b, y + b, [](v16 v, size_t) { return v * sigmoid2z(v); }); }, 16);
}

// dx = dy * (s + x s (1 - s) 2 c (1 + 3 a x^2)), in place on dy
void gelu_bwd(size_t n, const float* x, float* dy) {
  SECTION("gelu_bwd");
  parallel_for((int)n, [&](int b, int e) {
    float tmp[256];
    for (int c0 = b; c0 < e; c0 += 256) {
      int len = std::min(256, e - c0);
      map16(len, x + c0, tmp, [](v16 v, size_t) {
        v16 s = sigmoid2z(v);
        return s + v * s * (1.f - s) * (2.f * GELU_C) * (1.f + (3.f * GELU_A) * v * v);
      });
      for (int i = 0; i < len; i++) dy[c0 + i] *= tmp[i];
    }
  }, 16);
}

// ---------------------------------------------------------------------------------------------
// The model.

struct Config {
  int batch, image, channels, classes, patch, dim, depth, heads, dimHead, mlp;
  float dropout;
  int grid() const { return image / patch; }
  int patches() const { return grid() * grid(); }
  int tokens() const { return patches() + 1; }
  int patchDim() const { return channels * patch * patch; }
  int inner() const { return heads * dimHead; }
  int rowsN() const { return batch * tokens(); }
};

// Parameter indices in the order of parameterSpecs() in src/ml/vit/model.ts.
enum { P_PATCH_W, P_PATCH_B, P_CLS, P_POS, P_BLOCKS };
enum { B_LN1_G, B_LN1_B, B_Q, B_K, B_V, B_OUT_W, B_OUT_B, B_LN2_G, B_LN2_B, B_FC1_W, B_FC1_B, B_FC2_W, B_FC2_B, B_COUNT };
int headIndex(const Config& c) { return P_BLOCKS + B_COUNT * c.depth; }  // head norm g, b, W, b

struct BlockCache {
  std::vector<float> xhat1, rstd1, y1, q, k, v, attn, o, xhat2, rstd2, y2, h, g;
};

// Buffers kept between calls: re-allocating (and zeroing) tens of MB per step costs page faults.
struct Workspace {
  std::vector<float> patches, x, headXhat, headRstd, headY, logits;
  std::vector<float> emb, tmp, dx, dres, dhid, dy, dO, dq, dk, dv, demb;
  std::vector<BlockCache> blocks;
};

Workspace g_ws;

void resize(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// Attention for one (batch, head): q,k,v rows of stride `ld` at the head's column offset.
// attn[T,T] = softmax(q k^T) (q already scaled); out = dropout(attn) v.
void attention_head(int T, int d, int ld, const float* q, const float* k, const float* v, float* attn, float* out, const Dropout& drop,
                    int site, size_t maskBase, std::vector<float>& kt, std::vector<float>& pd) {
  kt.resize((size_t)d * T);
  for (int j = 0; j < T; j++)
    for (int c = 0; c < d; c++) kt[(size_t)c * T + j] = k[(size_t)j * ld + c];
  gemm_rows(0, T, T, d, q, ld, kt.data(), T, attn, T, false);
  float maxes[T];
  for (int i = 0; i < T; i++) maxes[i] = rowmax(T, attn + (size_t)i * T);
  for (int i = 0; i < T; i++)
    for (int j = 0; j < T; j++) attn[(size_t)i * T + j] -= maxes[i];
  map16((size_t)T * T, attn, attn, [](v16 v, size_t) { return vexp(v); });
  static thread_local std::vector<float> ones;
  if ((int)ones.size() < T) ones.assign(T, 1.f);
  for (int i = 0; i < T; i++) {
    float* row = attn + (size_t)i * T;
    float inv = 1.f / rowdot(T, row, ones.data());
    for (int j = 0; j < T; j++) row[j] *= inv;
  }
  const float* p = attn;
  if (drop.active) {
    pd.resize((size_t)T * T);
    drop.mul(site, maskBase, (size_t)T * T, attn, pd.data());
    p = pd.data();
  }
  gemm_rows(0, T, d, T, p, T, v, ld, out, ld, false);
}

struct Result {
  std::vector<float> logits;
  double loss = 0;
  int correct = 0;
};

// Forward pass (keeping what the backward needs). Weights in parameterSpecs order.
void forward(const Config& c, const std::vector<const float*>& W, const float* images, const Dropout& drop) {
  const int B = c.batch, N = c.patches(), T = c.tokens(), D = c.dim, PD = c.patchDim(), R = c.rowsN(), IN = c.inner(), p = c.patch;
  Workspace& ws = g_ws;
  // Patches in (channel, row, col) order from NHWC images.
  resize(ws.patches, (size_t)B * N * PD);
  for (int b = 0; b < B; b++)
    for (int gy = 0; gy < c.grid(); gy++)
      for (int gx = 0; gx < c.grid(); gx++) {
        float* dst = ws.patches.data() + ((size_t)b * N + gy * c.grid() + gx) * PD;
        for (int ch = 0; ch < c.channels; ch++)
          for (int r = 0; r < p; r++)
            for (int col = 0; col < p; col++)
              *dst++ = images[(((size_t)b * c.image + gy * p + r) * c.image + gx * p + col) * c.channels + ch];
      }
  // Tokens: [cls; patches W + b] + pos, as [B*T, D].
  resize(ws.x, (size_t)R * D);
  resize(ws.emb, (size_t)B * N * D);
  std::vector<float>& emb = ws.emb;
  linear_fwd(B * N, PD, D, ws.patches.data(), W[P_PATCH_W], W[P_PATCH_B], emb.data());
  float* x = ws.x.data();
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const float* src = t == 0 ? W[P_CLS] : emb.data() + ((size_t)b * N + t - 1) * D;
      const float* pos = W[P_POS] + (size_t)t * D;
      float* dst = x + ((size_t)b * T + t) * D;
      for (int d = 0; d < D; d++) dst[d] = src[d] + pos[d];
    }
  drop.apply(0, (size_t)R * D, x);

  ws.blocks.resize(c.depth);
  const float scale = 1.f / std::sqrt((float)c.dimHead);
  resize(ws.tmp, (size_t)R * std::max(D, c.mlp));
  std::vector<float>& tmp = ws.tmp;
  for (int l = 0; l < c.depth; l++) {
    BlockCache& k = ws.blocks[l];
    const float* const* w = &W[P_BLOCKS + B_COUNT * l];
    const int site = 1 + 4 * l;
    resize(k.xhat1, (size_t)R * D); resize(k.rstd1, R); resize(k.y1, (size_t)R * D);
    resize(k.q, (size_t)R * IN); resize(k.k, (size_t)R * IN); resize(k.v, (size_t)R * IN);
    resize(k.attn, (size_t)B * c.heads * T * T); resize(k.o, (size_t)R * IN);
    resize(k.xhat2, (size_t)R * D); resize(k.rstd2, R); resize(k.y2, (size_t)R * D);
    resize(k.h, (size_t)R * c.mlp); resize(k.g, (size_t)R * c.mlp);

    layernorm_fwd(R, D, x, w[B_LN1_G], w[B_LN1_B], k.xhat1.data(), k.rstd1.data(), k.y1.data());
    linear_fwd(R, D, IN, k.y1.data(), w[B_Q], nullptr, k.q.data());
    for (size_t i = 0; i < (size_t)R * IN; i++) k.q[i] *= scale;
    linear_fwd(R, D, IN, k.y1.data(), w[B_K], nullptr, k.k.data());
    linear_fwd(R, D, IN, k.y1.data(), w[B_V], nullptr, k.v.data());
    {
    SECTION("attention_fwd");
    parallel_for(B * c.heads, [&](int s, int e) {
      std::vector<float> kt, pd;
      for (int bh = s; bh < e; bh++) {
        int b = bh / c.heads, h = bh % c.heads;
        size_t off = (size_t)b * T * IN + (size_t)h * c.dimHead;
        attention_head(T, c.dimHead, IN, k.q.data() + off, k.k.data() + off, k.v.data() + off, k.attn.data() + (size_t)bh * T * T,
                       k.o.data() + off, drop, site, (size_t)bh * T * T, kt, pd);
      }
    });
    }
    linear_fwd(R, IN, D, k.o.data(), w[B_OUT_W], w[B_OUT_B], tmp.data());
    drop.apply(site + 1, (size_t)R * D, tmp.data());
    for (size_t i = 0; i < (size_t)R * D; i++) x[i] += tmp[i];

    layernorm_fwd(R, D, x, w[B_LN2_G], w[B_LN2_B], k.xhat2.data(), k.rstd2.data(), k.y2.data());
    linear_fwd(R, D, c.mlp, k.y2.data(), w[B_FC1_W], w[B_FC1_B], k.h.data());
    gelu_fwd((size_t)R * c.mlp, k.h.data(), k.g.data());
    drop.apply(site + 2, (size_t)R * c.mlp, k.g.data());
    linear_fwd(R, c.mlp, D, k.g.data(), w[B_FC2_W], w[B_FC2_B], tmp.data());
    drop.apply(site + 3, (size_t)R * D, tmp.data());
    for (size_t i = 0; i < (size_t)R * D; i++) x[i] += tmp[i];
  }
  // Head on the class token.
  const int H0 = headIndex(c);
  std::vector<float> cls((size_t)B * D);
  for (int b = 0; b < B; b++) std::memcpy(cls.data() + (size_t)b * D, x + (size_t)b * T * D, D * sizeof(float));
  resize(ws.headXhat, (size_t)B * D); resize(ws.headRstd, B); resize(ws.headY, (size_t)B * D);
  layernorm_fwd(B, D, cls.data(), W[H0], W[H0 + 1], ws.headXhat.data(), ws.headRstd.data(), ws.headY.data());
  ws.logits.assign((size_t)B * c.classes, 0.f);
  linear_fwd(B, D, c.classes, ws.headY.data(), W[H0 + 2], W[H0 + 3], ws.logits.data());
}

// Backward from dlogits; grads (zeroed, parameterSpecs order) are filled.
void backward(const Config& c, const std::vector<const float*>& W, const std::vector<float*>& G, const float* dlogits, const Dropout& drop) {
  const int B = c.batch, N = c.patches(), T = c.tokens(), D = c.dim, PD = c.patchDim(), R = c.rowsN(), IN = c.inner();
  Workspace& ws = g_ws;
  const int H0 = headIndex(c);
  std::vector<float> dcls((size_t)B * D, 0.f), dyh((size_t)B * D);
  linear_bwd(B, D, c.classes, ws.headY.data(), W[H0 + 2], dlogits, G[H0 + 2], G[H0 + 3], dyh.data(), false);
  layernorm_bwd(B, D, ws.headXhat.data(), ws.headRstd.data(), W[H0], dyh.data(), G[H0], G[H0 + 1], dcls.data());
  resize(ws.dx, (size_t)R * D);
  float* dx0 = ws.dx.data();
  std::fill(dx0, dx0 + (size_t)R * D, 0.f);
  std::vector<float>& dx = ws.dx;
  for (int b = 0; b < B; b++) std::memcpy(dx.data() + (size_t)b * T * D, dcls.data() + (size_t)b * D, D * sizeof(float));

  const float scale = 1.f / std::sqrt((float)c.dimHead);
  // Every element of these is written before it is read, so stale contents do not matter.
  resize(ws.dres, (size_t)R * D); resize(ws.dhid, (size_t)R * c.mlp); resize(ws.dy, (size_t)R * D);
  resize(ws.dO, (size_t)R * IN); resize(ws.dq, (size_t)R * IN); resize(ws.dk, (size_t)R * IN); resize(ws.dv, (size_t)R * IN);
  std::vector<float> &dres = ws.dres, &dhid = ws.dhid, &dy = ws.dy, &dO = ws.dO, &dq = ws.dq, &dk = ws.dk, &dv = ws.dv;
  for (int l = c.depth - 1; l >= 0; l--) {
    BlockCache& k = ws.blocks[l];
    const float* const* w = &W[P_BLOCKS + B_COUNT * l];
    float* const* g = &G[P_BLOCKS + B_COUNT * l];
    const int site = 1 + 4 * l;
    // x2 = x1 + drop(fc2(drop(gelu(fc1(ln2(x1))))))
    std::memcpy(dres.data(), dx.data(), (size_t)R * D * sizeof(float));
    drop.apply(site + 3, (size_t)R * D, dres.data());
    linear_bwd(R, c.mlp, D, k.g.data(), w[B_FC2_W], dres.data(), g[B_FC2_W], g[B_FC2_B], dhid.data(), false);
    drop.apply(site + 2, (size_t)R * c.mlp, dhid.data());
    gelu_bwd((size_t)R * c.mlp, k.h.data(), dhid.data());
    linear_bwd(R, D, c.mlp, k.y2.data(), w[B_FC1_W], dhid.data(), g[B_FC1_W], g[B_FC1_B], dy.data(), false);
    layernorm_bwd(R, D, k.xhat2.data(), k.rstd2.data(), w[B_LN2_G], dy.data(), g[B_LN2_G], g[B_LN2_B], dx.data());
    // x1 = x + drop(to_out(attention(ln1(x))))
    std::memcpy(dres.data(), dx.data(), (size_t)R * D * sizeof(float));
    drop.apply(site + 1, (size_t)R * D, dres.data());
    linear_bwd(R, IN, D, k.o.data(), w[B_OUT_W], dres.data(), g[B_OUT_W], g[B_OUT_B], dO.data(), false);
    {
    SECTION("attention_bwd");
    parallel_for(B * c.heads, [&](int s, int e) {
      const int d = c.dimHead;
      std::vector<float> dp((size_t)T * T), pd((size_t)T * T), vt((size_t)d * T), mask;
      for (int bh = s; bh < e; bh++) {
        int b = bh / c.heads, h = bh % c.heads;
        size_t off = (size_t)b * T * IN + (size_t)h * d;
        const float* P = k.attn.data() + (size_t)bh * T * T;
        const float *q = k.q.data() + off, *kk = k.k.data() + off, *v = k.v.data() + off, *dout = dO.data() + off;
        float *gq = dq.data() + off, *gk = dk.data() + off, *gv = dv.data() + off;
        // The head's dropout mask m (regenerated from the hash); pd = P * m.
        if (drop.active) {
          mask.assign((size_t)T * T, 1.f);
          drop.mul(site, (size_t)bh * T * T, (size_t)T * T, mask.data(), mask.data());
        }
        const float* pdp = P;
        if (drop.active) {
          for (size_t i = 0; i < (size_t)T * T; i++) pd[i] = P[i] * mask[i];
          pdp = pd.data();
        }
        gemm_rows(0, T, d, T, pdp, 1, dout, IN, gv, IN, false, T);  // dv = pd^T dout (pd read transposed)
        for (int j = 0; j < T; j++)
          for (int cc = 0; cc < d; cc++) vt[(size_t)cc * T + j] = v[(size_t)j * IN + cc];
        gemm_rows(0, T, T, d, dout, IN, vt.data(), T, dp.data(), T, false);  // dpd = dout v^T
        // Through the mask and the softmax: ds = P (dp - sum(dp P)), dp = dpd * m.
        for (int i = 0; i < T; i++) {
          float* row = dp.data() + (size_t)i * T;
          const float* pr = P + (size_t)i * T;
          if (drop.active)
            for (int j = 0; j < T; j++) row[j] *= mask[(size_t)i * T + j];
          float dot = rowdot(T, row, pr);
          for (int j = 0; j < T; j++) row[j] = pr[j] * (row[j] - dot);
        }
        gemm_rows(0, T, d, T, dp.data(), T, kk, IN, gq, IN, false);   // dq = ds k
        gemm_rows(0, T, d, T, dp.data(), 1, q, IN, gk, IN, false, T);  // dk = ds^T q (ds read transposed)
      }
    });
    }
    for (size_t i = 0; i < (size_t)R * IN; i++) dq[i] *= scale;
    linear_bwd(R, D, IN, k.y1.data(), w[B_Q], dq.data(), g[B_Q], nullptr, dy.data(), false);
    linear_bwd(R, D, IN, k.y1.data(), w[B_K], dk.data(), g[B_K], nullptr, dy.data(), true);
    linear_bwd(R, D, IN, k.y1.data(), w[B_V], dv.data(), g[B_V], nullptr, dy.data(), true);
    layernorm_bwd(R, D, k.xhat1.data(), k.rstd1.data(), w[B_LN1_G], dy.data(), g[B_LN1_G], g[B_LN1_B], dx.data());
  }
  // Embedding: x0 = drop([cls; patches W + b] + pos)
  drop.apply(0, (size_t)R * D, dx.data());
  resize(ws.demb, (size_t)B * N * D);
  std::vector<float>& demb = ws.demb;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const float* src = dx.data() + ((size_t)b * T + t) * D;
      float* gp = G[P_POS] + (size_t)t * D;
      for (int d = 0; d < D; d++) gp[d] += src[d];
      if (t == 0)
        for (int d = 0; d < D; d++) G[P_CLS][d] += src[d];
      else
        std::memcpy(demb.data() + ((size_t)b * N + t - 1) * D, src, D * sizeof(float));
    }
  linear_bwd(B * N, PD, D, ws.patches.data(), W[P_PATCH_W], demb.data(), G[P_PATCH_W], G[P_PATCH_B], nullptr, false);
}

// Mean softmax cross-entropy vs soft targets; fills dlogits = (softmax - t) / B.
void loss(const Config& c, const float* logits, const float* targets, Result& res, std::vector<float>& dlogits) {
  const int B = c.batch, K = c.classes;
  dlogits.assign((size_t)B * K, 0.f);
  double total = 0;
  for (int b = 0; b < B; b++) {
    const float* l = logits + (size_t)b * K;
    const float* t = targets + (size_t)b * K;
    float m = l[0];
    int am = 0, at = 0;
    for (int i = 1; i < K; i++) {
      if (l[i] > m) { m = l[i]; am = i; }
      if (t[i] > t[at]) at = i;
    }
    double s = 0;
    for (int i = 0; i < K; i++) s += std::exp((double)(l[i] - m));
    double lse = m + std::log(s);
    for (int i = 0; i < K; i++) {
      total -= t[i] * (l[i] - lse);
      dlogits[(size_t)b * K + i] = (float)((std::exp(l[i] - lse) - t[i]) / B);
    }
    if (am == at) res.correct++;
  }
  res.loss = total / B;
}

// ---------------------------------------------------------------------------------------------
// N-API glue.

#define CHECK(call)                                                            \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      napi_throw_error(env, nullptr, "vit_kernels: N-API call failed: " #call); \
      return nullptr;                                                          \
    }                                                                          \
  } while (0)

bool float32(napi_env env, napi_value v, float** data, size_t* len) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  void* p;
  if (napi_get_typedarray_info(env, v, &type, len, &p, &ab, &off) != napi_ok || type != napi_float32_array) return false;
  *data = static_cast<float*>(p);
  return true;
}

napi_value newFloat32(napi_env env, size_t n, float** data) {
  napi_value ab, arr;
  void* p;
  if (napi_create_arraybuffer(env, n * sizeof(float), &p, &ab) != napi_ok) return nullptr;
  if (napi_create_typedarray(env, napi_float32_array, n, ab, 0, &arr) != napi_ok) return nullptr;
  std::memset(p, 0, n * sizeof(float));
  *data = static_cast<float*>(p);
  return arr;
}

// One run at a time per process: the pool, the workspaces and the profile are process-wide, and
// Node worker threads that load the addon share them.
std::mutex g_run_mutex;

// run(config: Int32Array[11], dropout, weights: Float32Array[], images, targets | null, seed, threads)
//   -> { logits: Float32Array, loss?, correct?, grads?: Float32Array[] }
napi_value Run(napi_env env, napi_callback_info info) {
  std::lock_guard<std::mutex> serial(g_run_mutex);
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 7) {
    napi_throw_type_error(env, nullptr, "vit_kernels.run expects 7 arguments");
    return nullptr;
  }
  napi_typedarray_type type;
  size_t clen, off;
  void* cp;
  napi_value ab;
  CHECK(napi_get_typedarray_info(env, argv[0], &type, &clen, &cp, &ab, &off));
  if (type != napi_int32_array || clen != 10) {
    napi_throw_type_error(env, nullptr, "config must be an Int32Array of 10");
    return nullptr;
  }
  const int32_t* ci = static_cast<const int32_t*>(cp);
  double dropout;
  CHECK(napi_get_value_double(env, argv[1], &dropout));
  Config c{ci[0], ci[1], ci[2], ci[3], ci[4], ci[5], ci[6], ci[7], ci[8], ci[9], (float)dropout};
  uint32_t nw;
  CHECK(napi_get_array_length(env, argv[2], &nw));
  if ((int)nw != headIndex(c) + 4) {
    napi_throw_error(env, nullptr, "vit_kernels: wrong number of weight arrays");
    return nullptr;
  }
  std::vector<const float*> W(nw);
  std::vector<size_t> sizes(nw);
  for (uint32_t i = 0; i < nw; i++) {
    napi_value e;
    CHECK(napi_get_element(env, argv[2], i, &e));
    float* p;
    if (!float32(env, e, &p, &sizes[i])) {
      napi_throw_type_error(env, nullptr, "weights must be Float32Arrays");
      return nullptr;
    }
    W[i] = p;
  }
  float* images;
  size_t ilen;
  if (!float32(env, argv[3], &images, &ilen) || ilen != (size_t)c.batch * c.image * c.image * c.channels) {
    napi_throw_type_error(env, nullptr, "images must be a Float32Array [B, H, W, C]");
    return nullptr;
  }
  napi_valuetype tt;
  CHECK(napi_typeof(env, argv[4], &tt));
  float* targets = nullptr;
  size_t tlen = 0;
  if (tt != napi_null && tt != napi_undefined) {
    if (!float32(env, argv[4], &targets, &tlen) || tlen != (size_t)c.batch * c.classes) {
      napi_throw_type_error(env, nullptr, "targets must be a Float32Array [B, classes]");
      return nullptr;
    }
  }
  double seed;
  CHECK(napi_get_value_double(env, argv[5], &seed));
  int32_t threads;
  CHECK(napi_get_value_int32(env, argv[6], &threads));
  g_threads = std::max(1, threads);

  Dropout drop;
  if (targets && c.dropout > 0 && seed >= 0) {
    drop.active = true;
    drop.seed = (uint32_t)(uint64_t)seed;
    drop.threshold = (uint32_t)std::floor(c.dropout * 16777216.0);
    drop.keep = (float)(1.0 / (1.0 - c.dropout));
  }
  {
    SECTION("total_forward");
    forward(c, W, images, drop);
  }

  napi_value out;
  CHECK(napi_create_object(env, &out));
  float* lp;
  napi_value logits = newFloat32(env, g_ws.logits.size(), &lp);
  if (!logits) return nullptr;
  std::memcpy(lp, g_ws.logits.data(), g_ws.logits.size() * sizeof(float));
  CHECK(napi_set_named_property(env, out, "logits", logits));
  if (targets) {
    Result res;
    std::vector<float> dlogits;
    loss(c, g_ws.logits.data(), targets, res, dlogits);
    napi_value grads;
    CHECK(napi_create_array_with_length(env, nw, &grads));
    std::vector<float*> G(nw);
    for (uint32_t i = 0; i < nw; i++) {
      napi_value g = newFloat32(env, sizes[i], &G[i]);
      if (!g) return nullptr;
      CHECK(napi_set_element(env, grads, i, g));
    }
    {
      SECTION("total_backward");
      backward(c, W, G, dlogits.data(), drop);
    }
    napi_value lossV, correctV;
    CHECK(napi_create_double(env, res.loss, &lossV));
    CHECK(napi_create_int32(env, res.correct, &correctV));
    CHECK(napi_set_named_property(env, out, "loss", lossV));
    CHECK(napi_set_named_property(env, out, "correct", correctV));
    CHECK(napi_set_named_property(env, out, "grads", grads));
  }
  return out;
}

// profile() -> { section: milliseconds } summed since the last call, then reset.
napi_value Profile(napi_env env, napi_callback_info) {
  std::lock_guard<std::mutex> serial(g_run_mutex);
  napi_value out;
  CHECK(napi_create_object(env, &out));
  for (auto& kv : g_profile) {
    napi_value v;
    CHECK(napi_create_double(env, kv.second, &v));
    CHECK(napi_set_named_property(env, out, kv.first.c_str(), v));
  }
  g_profile.clear();
  return out;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_value fn, prof;
  if (napi_create_function(env, "profile", NAPI_AUTO_LENGTH, Profile, nullptr, &prof) != napi_ok) return nullptr;
  if (napi_set_named_property(env, exports, "profile", prof) != napi_ok) return nullptr;
  if (napi_create_function(env, "run", NAPI_AUTO_LENGTH, Run, nullptr, &fn) != napi_ok) return nullptr;
  if (napi_set_named_property(env, exports, "run", fn) != napi_ok) return nullptr;
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
