// Load-time choice of the kernel variant: the best one this CPU runs, or the one
// TFPIPE_NATIVE_ISA names. native/build.mjs defines TFPIPE_HAVE_<VARIANT> for each variant
// object it compiled and linked. Compiled with baseline flags.
#include "dispatch.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace tfpipe {
#define DECLARE_VARIANT(ns) \
  namespace ns {            \
  const Kernels* kernels(); \
  }
#ifdef TFPIPE_HAVE_AVX512
DECLARE_VARIANT(avx512)
#endif
#ifdef TFPIPE_HAVE_AVX2
DECLARE_VARIANT(avx2)
#endif
#ifdef TFPIPE_HAVE_NEON
DECLARE_VARIANT(neon)
#endif
#ifdef TFPIPE_HAVE_BASELINE
DECLARE_VARIANT(baseline)
#endif

namespace {

// TFPIPE_NATIVE_HIDE_FEATURES="avx512f ..." makes the dispatch act as if the CPU lacked those
// features (tests of the fallback and of a forced variant the CPU cannot run, on any machine).
[[maybe_unused]] bool hidden(const char* f) {
  const char* env = std::getenv("TFPIPE_NATIVE_HIDE_FEATURES");
  if (!env) return false;
  std::string list = std::string(" ") + env + " ";
  for (auto& c : list)
    if (c == ',') c = ' ';
  return list.find(std::string(" ") + f + " ") != std::string::npos;
}

#if defined(__x86_64__) || defined(__i386__)
// __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0).
bool x86_has(const char* f) {
  if (hidden(f)) return false;
  __builtin_cpu_init();
  if (!strcmp(f, "avx512f")) return __builtin_cpu_supports("avx512f");
  if (!strcmp(f, "avx512bw")) return __builtin_cpu_supports("avx512bw");
  if (!strcmp(f, "avx512dq")) return __builtin_cpu_supports("avx512dq");
  if (!strcmp(f, "avx512vl")) return __builtin_cpu_supports("avx512vl");
  if (!strcmp(f, "avx2")) return __builtin_cpu_supports("avx2");
  if (!strcmp(f, "fma")) return __builtin_cpu_supports("fma");
  return false;
}
const char* const kX86Features[] = {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma"};
#endif

bool has_all(const char* list) {
#if defined(__x86_64__) || defined(__i386__)
  std::string s(list);
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find(' ', start);
    if (end == std::string::npos) end = s.size();
    if (end > start && !x86_has(s.substr(start, end - start).c_str())) return false;
    start = end + 1;
  }
  return true;
#else
  return list[0] == 0;
#endif
}

std::vector<Variant> build_variants() {
  std::vector<Variant> v;
  auto add = [&](const char* name, const Kernels* k, const char* requires) { v.push_back({name, k, has_all(requires), requires}); };
#ifdef TFPIPE_HAVE_AVX512
  add("avx512", avx512::kernels(), "avx512f avx512bw avx512dq avx512vl avx2 fma");
#endif
#ifdef TFPIPE_HAVE_AVX2
  add("avx2", avx2::kernels(), "avx2 fma");
#endif
#ifdef TFPIPE_HAVE_NEON
  add("neon", neon::kernels(), "");
#endif
#ifdef TFPIPE_HAVE_BASELINE
  add("baseline", baseline::kernels(), "");
#endif
  return v;
}

}  // namespace

const std::vector<Variant>& variants() {
  static const std::vector<Variant> v = build_variants();
  return v;
}

const Kernels* select_kernels(const char* forced, std::string* error) {
  const auto& all = variants();
  std::string built;
  for (const auto& v : all) built += std::string(built.empty() ? "" : ", ") + v.name;
  if (!forced || !*forced || !strcmp(forced, "auto")) {
    for (const auto& v : all)
      if (v.supported) return v.kernels;
    *error = "no kernel variant in this build runs on this CPU (built: " + built + ")";
    return nullptr;
  }
  for (const auto& v : all) {
    if (strcmp(v.name, forced) != 0) continue;
    if (v.supported) return v.kernels;
    *error = std::string("TFPIPE_NATIVE_ISA=") + forced + ": this CPU (" + cpu_model() + ") cannot run the " + forced +
             " kernels (they need " + v.requires + "; it has: " + cpu_features() + ")";
    return nullptr;
  }
  *error = std::string("TFPIPE_NATIVE_ISA=") + forced + ": no such kernel variant in this build (built: " + built + ")";
  return nullptr;
}

std::string cpu_features() {
#if defined(__x86_64__) || defined(__i386__)
  std::string out;
  for (const char* f : kX86Features)
    if (x86_has(f)) out += std::string(out.empty() ? "" : " ") + f;
  return out.empty() ? "sse2" : out;
#elif defined(__aarch64__)
  return "neon";
#else
  return "";
#endif
}

std::string cpu_model() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned regs[12] = {0};
  unsigned a, b, c, d;
  if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x80000004u) {
    for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
  }
  char brand[49] = {0};
  std::memcpy(brand, regs, 48);
  std::string name(brand);
  while (!name.empty() && name.back() == ' ') name.pop_back();
  while (!name.empty() && name.front() == ' ') name.erase(0, 1);
  unsigned family = 0, model = 0;
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    family = (a >> 8) & 0xf;
    model = (a >> 4) & 0xf;
    if (family == 0xf) family += (a >> 20) & 0xff;
    if (family == 0x6 || family >= 0xf) model |= ((a >> 16) & 0xf) << 4;
  }
  char fm[64];
  std::snprintf(fm, sizeof fm, " (family %u, model %u)", family, model);
  return (name.empty() ? std::string("x86-64") : name) + fm;
#else
  std::ifstream in("/proc/cpuinfo");
  std::string line, implementer, part, model;
  while (std::getline(in, line)) {
    auto value = [&] {
      std::string v = line.substr(line.find(':') + 1);
      size_t a = v.find_first_not_of(" \t"), b = v.find_last_not_of(" \t");
      return a == std::string::npos ? std::string() : v.substr(a, b - a + 1);
    };
    if (line.rfind("model name", 0) == 0 && model.empty()) model = value();
    if (line.rfind("CPU implementer", 0) == 0 && implementer.empty()) implementer = value();
    if (line.rfind("CPU part", 0) == 0 && part.empty()) part = value();
  }
  if (!model.empty()) return model;
  if (!implementer.empty()) return "arm64 (implementer " + implementer + ", part " + part + ")";
  return "unknown CPU";
#endif
}

}  // namespace tfpipe
