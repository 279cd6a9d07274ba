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

// exp(x): Cephes' expf (range reduction by ln 2, degree-6 polynomial), ~1 ulp.
inline vf vexp(vf x) {
  x = x > 88.3762626647949f ? splat(88.3762626647949f) : x;
  x = x < -87.3365447504019f ? splat(-87.3365447504019f) : x;
  vf fx = x * 1.44269504088896341f;
  fx = fx + (fx >= 0 ? splat(0.5f) : splat(-0.5f));
  vi n = __builtin_convertvector(fx, vi);  // round half away from zero
  vf nf = __builtin_convertvector(n, vf);
  vf r = x - nf * 0.693359375f - nf * -2.12194440e-4f;
  vf p = splat(1.9875691500E-4f);
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r * r + r + 1.f;
  return p * as_float((n + 127) << 23);
}

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

// CPU time of the calling thread per named section, summed over calls (the bench's profile).
struct Section {
  const char* name;
  double t0;
  explicit Section(const char* n) : name(n), t0(profile_now_ms()) {}
  ~Section() { profile_add(name, profile_now_ms() - t0); }
};
#define TFPIPE_STR2(x) #x
#define TFPIPE_STR(x) TFPIPE_STR2(x)
#define TFPIPE_CAT2(a, b) a##b
#define TFPIPE_CAT(a, b) TFPIPE_CAT2(a, b)
#define SECTION(n) Section TFPIPE_CAT(section_, __LINE__)(n)

}  // namespace TFPIPE_ISA
}  // namespace tfpipe
