// Adam, AdamW and SGD with momentum on the native side, with the semantics of src/ml/optim.ts
// (torch's): the train stage's update then needs no tfjs op per parameter. Compiled once; the
// loops are elementwise, so the compiler vectorises them with whatever the baseline has.
#include <cmath>

#include "optimizer.h"

namespace tfpipe {

void optimizer_update(const OptimizerParams& p, int count, float* const* W, const float* const* G, float* const* slots,
                      const size_t* sizes, const uint8_t* decays) {
  const int per = p.kind == kSgd ? 1 : 2;
  const float lr = (float)p.lr;
  const float bc1 = (float)(1.0 - std::pow(p.beta1, p.step)), bc2 = (float)(1.0 - std::pow(p.beta2, p.step));
  const float b1 = (float)p.beta1, b2 = (float)p.beta2, ob1 = (float)(1.0 - p.beta1), ob2 = (float)(1.0 - p.beta2);
  const float eps = (float)p.eps, mom = (float)p.momentum;
  for (int i = 0; i < count; i++) {
    const float wd = decays[i] ? (float)p.weightDecay : 0.f;
    const bool coupled = wd > 0 && p.kind != kAdamW;
    // AdamW decays the weight itself, scaled by the learning rate; Adam and SGD add wd * w to g.
    const float shrink = wd > 0 && p.kind == kAdamW ? (float)(1.0 - p.lr * wd) : 1.f;
    float* w = W[i];
    const float* g0 = G[i];
    const size_t n = sizes[i];
    if (p.kind == kSgd) {
      float* buf = slots[i];
      for (size_t j = 0; j < n; j++) {
        float g = coupled ? g0[j] + w[j] * wd : g0[j];
        float next = g;
        if (mom > 0) {
          next = p.step == 1 ? g : buf[j] * mom + g;
          buf[j] = next;
        }
        w[j] = w[j] * shrink - next * lr;
      }
      continue;
    }
    float* m = slots[per * i];
    float* v = slots[per * i + 1];
    for (size_t j = 0; j < n; j++) {
      float g = coupled ? g0[j] + w[j] * wd : g0[j];
      float m1 = m[j] * b1 + g * ob1;
      float v1 = v[j] * b2 + g * g * ob2;
      m[j] = m1;
      v[j] = v1;
      float mhat = m1 / bc1, vhat = v1 / bc2;
      w[j] = w[j] * shrink - mhat / (std::sqrt(vhat) + eps) * lr;
    }
  }
}

}  // namespace tfpipe
