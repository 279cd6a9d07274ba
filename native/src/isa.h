// Vector type and math for one ISA variant. Included only by the per-variant translation units
// (model.cc, gemm.h), which are compiled once per variant with that variant's flags and
// -DTFPIPE_ISA=<name>; everything defined here lives in namespace tfpipe::<name>, so the
// variants' copies never meet at link time (see api.h).
//
// The vector width follows the flags: 16 floats with AVX-512, 8 with AVX2, 4 otherwise (SSE2 on
// x86-64, NEON on arm64). GCC/Clang vector extensions lower the arithmetic to that ISA; a vector
// wider than the registers (what -march=native gave on AVX2 before) is split and spilled.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__aarch64__)
#include <arm_neon.h>
#elif defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "api.h"

#ifndef TFPIPE_ISA
#error "compile with -DTFPIPE_ISA=<variant name>"
#endif

namespace tfpipe {
namespace TFPIPE_ISA {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX2__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif

#if defined(__FMA__) || defined(__aarch64__)
constexpr bool kHasFma = true;
#else
constexpr bool kHasFma = false;
#endif

typedef float vf __attribute__((vector_size(4 * kLanes)));
typedef float vfu __attribute__((vector_size(4 * kLanes), aligned(4)));
typedef int32_t vi __attribute__((vector_size(4 * kLanes)));
typedef uint32_t vu __attribute__((vector_size(4 * kLanes)));

inline vf load(const float* p) { return *reinterpret_cast<const vfu*>(p); }
inline void store(float* p, vf v) { *reinterpret_cast<vfu*>(p) = v; }
inline vf splat(float x) { return vf{} + x; }
inline vf as_float(vi v) {
  vf r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}
inline vi as_int(vf v) {
  vi r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}
inline vu lane_index_plus_one() {
  vu r;
  for (int i = 0; i < kLanes; i++) r[i] = (uint32_t)(i + 1);
  return r;
}

inline int imin(int a, int b) { return a < b ? a : b; }
inline int imax(int a, int b) { return a > b ? a : b; }
inline float fmax2(float a, float b) { return a > b ? a : b; }

// The first n (< kLanes) floats of p, zeros after; and the store of the first n lanes. Only for
// the tails of odd sizes: the common paths use whole vectors.
inline vf load_n(const float* p, int n) {
  if (n >= kLanes) return load(p);
  float buf[kLanes] = {0};
  if (n > 0) std::memcpy(buf, p, (size_t)n * sizeof(float));
  return load(buf);
}
inline void store_n(float* p, vf v, int n) {
  if (n >= kLanes)
    store(p, v);
  else if (n > 0)
    std::memcpy(p, &v, (size_t)n * sizeof(float));
}
// All ones in the lanes below n, zeros above.
inline vi lanes_below(int n) {
  vi r;
  for (int i = 0; i < kLanes; i++) r[i] = i < n ? -1 : 0;
  return r;
}

// max / min of vectors (one instruction; GCC does not turn a ?: into one because of NaN order).
inline vf vmax(vf a, vf b) {
#if defined(__AVX512F__)
  return (vf)_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(__AVX2__)
  return (vf)_mm256_max_ps((__m256)a, (__m256)b);
#elif defined(__aarch64__)
  return vmaxq_f32(a, b);
#else
  return (vf)_mm_max_ps((__m128)a, (__m128)b);
#endif
}
inline vf vmin(vf a, vf b) {
#if defined(__AVX512F__)
  return (vf)_mm512_min_ps((__m512)a, (__m512)b);
#elif defined(__AVX2__)
  return (vf)_mm256_min_ps((__m256)a, (__m256)b);
#elif defined(__aarch64__)
  return vminq_f32(a, b);
#else
  return (vf)_mm_min_ps((__m128)a, (__m128)b);
#endif
}

// exp(x) for x <= 88.37: Cephes' expf (range reduction by ln 2, then 1 + r + r^2 P(r) with P of
// degree 5), ~1 ulp. n = round(x / ln 2) comes from adding 1.5 * 2^23 (the float's low bits then
// hold n), and P is evaluated by Estrin's scheme: the dependency chain is half Horner's, which is
// what limits a loop of exps (the polynomial's multiply-adds wait on each other).
inline vf vexp_le88(vf x) {
  x = vmax(x, splat(-87.3365447504019f));
  const vf magic = splat(12582912.f);
  const vf t = x * 1.44269504088896341f + magic;
  const vf nf = t - magic;
  const vi n = as_int(t) - as_int(magic);
  const vf r = x - nf * 0.693359375f - nf * -2.12194440e-4f;
  const vf r2 = r * r, r4 = r2 * r2;
  const vf p01 = r * 1.6666665459E-1f + 5.0000001201E-1f;
  const vf p23 = r * 8.3334519073E-3f + 4.1665795894E-2f;
  const vf p45 = r * 1.9875691500E-4f + 1.3981999507E-3f;
  const vf P = p45 * r4 + (p23 * r2 + p01);
  return (P * r2 + (r + 1.f)) * as_float((n + 127) << 23);
}
inline vf vexp(vf x) { return vexp_le88(vmin(x, splat(88.3762626647949f))); }

inline float hmax(vf v) {
  float m = v[0];
  for (int i = 1; i < kLanes; i++) m = fmax2(m, v[i]);
  return m;
}
inline float hsum(vf v) {
  float s = 0.f;
  for (int i = 0; i < kLanes; i++) s += v[i];
  return s;
}
inline float rowmax(int n, const float* x) {
  int j = 0;
  float m = x[0];
  if (n >= kLanes) {
    vf acc = load(x);
    for (j = kLanes; j + kLanes <= n; j += kLanes) {
      vf v = load(x + j);
      acc = v > acc ? v : acc;
    }
    m = hmax(acc);
  }
  for (; j < n; j++) m = fmax2(m, x[j]);
  return m;
}
inline float rowdot(int n, const float* x, const float* y) {
  int j = 0;
  vf acc{};
  for (; j + kLanes <= n; j += kLanes) acc += load(x + j) * load(y + j);
  float s = hsum(acc);
  for (; j < n; j++) s += x[j] * y[j];
  return s;
}
inline float rowsum(int n, const float* x) {
  int j = 0;
  vf acc{};
  for (; j + kLanes <= n; j += kLanes) acc += load(x + j);
  float s = hsum(acc);
  for (; j < n; j++) s += x[j];
  return s;
}
inline float rowsqdev(int n, const float* x, float mu) {  // sum (x - mu)^2
  int j = 0;
  vf acc{};
  for (; j + kLanes <= n; j += kLanes) {
    vf d = load(x + j) - mu;
    acc += d * d;
  }
  float s = hsum(acc);
  for (; j < n; j++) s += (x[j] - mu) * (x[j] - mu);
  return s;
}

// Applies f(vector, offset) to x[0, n) a vector at a time; the tail goes through a zero-padded one.
template <class F>
inline void map_vec(size_t n, const float* x, float* y, F f) {
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(y + i, f(load(x + i), i));
  if (i < n) {
    float buf[kLanes] = {0};
    std::memcpy(buf, x + i, (n - i) * sizeof(float));
    vf r = f(load(buf), i);
    std::memcpy(y + i, &r, (n - i) * sizeof(float));
  }
}

// Runs f(begin, end) over [0, n) in chunks on the pool; g(chunk, begin, end) also gets the chunk
// index (for per-chunk scratch taken from the workspace beforehand).
template <class F>
void parallel_for(int n, F f, int align = 1) {
  parallel_chunks(n, align, [](void* ctx, int, int b, int e) { (*static_cast<F*>(ctx))(b, e); }, &f);
}
template <class G>
void parallel_for_chunk(int n, G g, int align = 1) {
  parallel_chunks(n, align, [](void* ctx, int c, int b, int e) { (*static_cast<G*>(ctx))(c, b, e); }, &g);
}

// Time of the calling thread per named section, summed over calls (the bench's profile). Only
// while profiling is on (profile_enabled(), api.h), and only on the thread that called the
// kernels: inside a parallel region that thread's share stands for the region's wall time.
struct Section {
  const char* name;
  double t0;
  explicit Section(const char* n) : name(n), t0(profile_enabled() ? profile_now_ms() : -1) {}
  ~Section() {
    if (t0 >= 0) profile_add(name, profile_now_ms() - t0);
  }
};
#define TFPIPE_STR2(x) #x
#define TFPIPE_STR(x) TFPIPE_STR2(x)
#define TFPIPE_CAT2(a, b) a##b
#define TFPIPE_CAT(a, b) TFPIPE_CAT2(a, b)
#define SECTION(n) Section TFPIPE_CAT(section_, __LINE__)(n)

}  // namespace TFPIPE_ISA
}  // namespace tfpipe
