// The parameter layout and dropout sites the kernels expect, reported to tfpipe, which compares
// them with src/ml/vit/layout.ts at load and refuses the native path when they differ.
#include "api.h"

namespace tfpipe {

const char* const kStemNames[P_STEM_COUNT] = {"embedding/patch/kernel", "embedding/patch/bias", "embedding/cls_token",
                                              "embedding/pos_embedding"};
const char* const kBlockNames[B_COUNT] = {"attn_norm/gamma", "attn_norm/beta", "attn/to_q", "attn/to_k", "attn/to_v",
                                          "attn/to_out/kernel", "attn/to_out/bias", "mlp_norm/gamma", "mlp_norm/beta",
                                          "mlp/fc1/kernel", "mlp/fc1/bias", "mlp/fc2/kernel", "mlp/fc2/bias"};
const char* const kHeadNames[H_COUNT] = {"head/norm/gamma", "head/norm/beta", "head/kernel", "head/bias"};
const char* const kBlockSiteNames[kSitesPerBlock] = {"attn/weights", "attn/out", "mlp/hidden", "mlp/out"};

int param_count(const Config& c) { return P_STEM_COUNT + B_COUNT * c.depth + H_COUNT; }

size_t param_size(const Config& c, int i) {
  const size_t grid = c.image / c.patch, T = grid * grid + 1, D = c.dim, IN = (size_t)c.heads * c.dimHead,
               PD = (size_t)c.channels * c.patch * c.patch, M = c.mlp, C = c.classes;
  const size_t stem[P_STEM_COUNT] = {PD * D, D, D, T * D};
  const size_t block[B_COUNT] = {D, D, D * IN, D * IN, D * IN, IN * D, D, D, D, D * M, M, M * D, D};
  const size_t head[H_COUNT] = {D, D, D * C, C};
  if (i < P_STEM_COUNT) return stem[i];
  if (i < P_STEM_COUNT + B_COUNT * c.depth) return block[(i - P_STEM_COUNT) % B_COUNT];
  return head[i - P_STEM_COUNT - B_COUNT * c.depth];
}

}  // namespace tfpipe
