// The optimizer update (optimizer.cc); baseline translation units only.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tfpipe {

enum OptimizerKind { kAdam, kAdamW, kSgd };

struct OptimizerParams {
  OptimizerKind kind;
  double lr, beta1, beta2, eps, weightDecay, momentum;
  int step;  // 1 for the first update
};

// Updates count weight arrays in place from their gradients. slots: per weight [m, v] (Adam,
// AdamW) or [momentum buffer] (SGD), flattened weight by weight as OptimizerState.slots.
// decays[i]: weight decay applies to weight i.
void optimizer_update(const OptimizerParams& p, int count, float* const* W, const float* const* G, float* const* slots,
                      const size_t* sizes, const uint8_t* decays);

}  // namespace tfpipe
