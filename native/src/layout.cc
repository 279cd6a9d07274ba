// The parameter layout (names and shapes) and dropout sites the kernels expect, reported to tfpipe,
// which compares them with src/ml/vit/layout.ts at load and refuses the native path when they differ.
#include <cmath>

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

int param_shape(const Config& c, int i, size_t dims[2]) {
  struct Shape {
    int rank;
    size_t d0, d1;
  };
  const size_t grid = c.image / c.patch, T = grid * grid + 1, D = c.dim, IN = (size_t)c.heads * c.dimHead,
               PD = (size_t)c.channels * c.patch * c.patch, M = c.mlp, C = c.classes;
  const Shape stem[P_STEM_COUNT] = {{2, PD, D}, {1, D, 0}, {2, 1, D}, {2, T, D}};
  const Shape block[B_COUNT] = {{1, D, 0},  {1, D, 0}, {2, D, IN}, {2, D, IN}, {2, D, IN}, {2, IN, D}, {1, D, 0},
                                {1, D, 0},  {1, D, 0}, {2, D, M},  {1, M, 0},  {2, M, D},  {1, D, 0}};
  const Shape head[H_COUNT] = {{1, D, 0}, {1, D, 0}, {2, D, C}, {1, C, 0}};
  const Shape& s = i < P_STEM_COUNT                    ? stem[i]
                   : i < P_STEM_COUNT + B_COUNT * c.depth ? block[(i - P_STEM_COUNT) % B_COUNT]
                                                          : head[i - P_STEM_COUNT - B_COUNT * c.depth];
  dims[0] = s.d0;
  dims[1] = s.d1;
  return s.rank;
}

size_t param_size(const Config& c, int i) {
  size_t dims[2];
  return param_shape(c, i, dims) == 1 ? dims[0] : dims[0] * dims[1];
}

DropoutSpec dropout_spec(const Config& c, double seed) {
  DropoutSpec d{};
  if (c.dropout > 0 && seed >= 0) {
    d.active = true;
    d.seed = (uint32_t)(uint64_t)seed;
    d.threshold = (uint32_t)std::floor(c.dropout * 16777216.0);
    d.keep = (float)(1.0 / (1.0 - c.dropout));
  }
  return d;
}

}  // namespace tfpipe
