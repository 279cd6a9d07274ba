// The bench's test problem (random weights, images and soft targets for a Config) and helpers,
// shared by the CPU bench (bench_main.cc) and the GPU bench (gpu_bench.cc).
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "src/api.h"

namespace tfpipe {
namespace bench {

// The items of a comma-separated list ("1,2,4").
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t a = 0;
  while (a <= s.size()) {
    size_t b = s.find(',', a);
    if (b == std::string::npos) b = s.size();
    if (b > a) out.push_back(s.substr(a, b - a));
    a = b + 1;
  }
  return out;
}

inline std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    if ((unsigned char)c < 0x20) continue;
    o += c;
  }
  return o;
}

struct Problem {
  Config c;
  std::vector<std::vector<float>> w, g;
  std::vector<float> images, targets, logits, dlogits;
  std::vector<const float*> W;
  std::vector<float*> G;
  Problem(const Config& cfg, unsigned seed) : c(cfg) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-0.1f, 0.1f);
    std::normal_distribution<float> n(0.f, 1.f);
    for (int i = 0; i < param_count(c); i++) {
      std::vector<float> v(param_size(c, i));
      for (auto& x : v) x = u(rng);
      w.push_back(v);
      g.emplace_back(v.size());
    }
    // LayerNorm gains near 1, as trained ones are.
    auto gains = [&](size_t i) {
      for (auto& x : w[i]) x += 1.f;
    };
    const ParamIndex ix = param_index(c);
    gains(ix.blocks + B_LN1_G);
    for (int l = 0; l < c.depth; l++) {
      gains(ix.blocks + B_COUNT * l + B_LN1_G);
      gains(ix.blocks + B_COUNT * l + B_LN2_G);
    }
    gains(ix.head[H_LN_G]);
    images.resize((size_t)c.batch * c.image * c.image * c.channels);
    for (auto& x : images) x = n(rng);
    targets.assign((size_t)c.batch * c.classes, 0.02f / (c.classes - 1));
    for (int b = 0; b < c.batch; b++) targets[(size_t)b * c.classes + (b * 7) % c.classes] = 0.98f;
    logits.resize((size_t)c.batch * c.classes);
    dlogits.resize(logits.size());
    for (auto& v : w) W.push_back(v.data());
    for (auto& v : g) G.push_back(v.data());
  }
  double train_step(const Kernels* k, Workspace* ws, const DropoutSpec& d) {
    for (auto& v : g) std::fill(v.begin(), v.end(), 0.f);
    k->forward(c, W.data(), images.data(), d, ws, logits.data(), nullptr, nullptr);
    double loss;
    int correct;
    softmax_cross_entropy(c.batch, c.classes, logits.data(), targets.data(), &loss, &correct, dlogits.data());
    k->backward(c, W.data(), G.data(), dlogits.data(), d, ws);
    return loss;
  }
};

inline DropoutSpec dropout(float rate, uint32_t seed) {
  DropoutSpec d{};
  d.active = rate > 0;
  d.seed = seed;
  d.threshold = (uint32_t)std::floor(rate * 16777216.0);
  d.keep = (float)(1.0 / (1.0 - rate));
  return d;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double scale = 1e-3, m = 0;
  for (float v : b) scale = std::max(scale, (double)std::fabs(v));
  for (size_t i = 0; i < a.size(); i++) m = std::max(m, (double)std::fabs(a[i] - b[i]));
  return m / scale;
}

}  // namespace bench
}  // namespace tfpipe
