// The parameter layout (names and shapes) and dropout sites the kernels expect, reported to tfpipe,
// which compares them with src/ml/vit/layout.ts at load and refuses the native path when they differ.
#include <cmath>

#include "api.h"

namespace tfpipe {

const char* const kStemNames[P_STEM_COUNT] = {
    "embedding/patch/kernel",  "embedding/patch/bias",  "embedding/conv_0/kernel", "embedding/conv_1/kernel",
    "embedding/conv_2/kernel", "embedding/conv_3/kernel", "embedding/cls_token",   "embedding/pos_embedding"};
const char* const kBlockNames[B_COUNT] = {"attn_norm/gamma", "attn_norm/beta", "attn/to_q", "attn/to_k", "attn/to_v",
                                          "attn/to_out/kernel", "attn/to_out/bias", "mlp_norm/gamma", "mlp_norm/beta",
                                          "mlp/fc1/kernel", "mlp/fc1/bias", "mlp/fc2/kernel", "mlp/fc2/bias"};
const char* const kHeadNames[H_COUNT] = {"head/pool/kernel", "head/pool/bias", "head/norm/gamma",
                                         "head/norm/beta",   "head/kernel",    "head/bias"};
const char* const kBlockSiteNames[kSitesPerBlock] = {"attn/weights", "attn/out", "mlp/hidden", "mlp/out"};

int token_grid(const Config& c) { return c.tokenizer == kConvTokens ? c.image >> c.convLayers : c.image / c.patch; }
int token_count(const Config& c) { return token_grid(c) * token_grid(c) + (c.pool == kPoolCls ? 1 : 0); }
int conv_in(const Config& c, int l) { return l == 0 ? c.channels : c.convChannels; }
int conv_out(const Config& c, int l) { return l == c.convLayers - 1 ? c.dim : c.convChannels; }

namespace {

// One parameter of the layout for a config: whether the model has it, and its shape.
struct Entry {
  bool present;
  int rank;
  size_t d[kMaxRank];
};

Entry stem_entry(const Config& c, int p) {
  const bool patch = c.tokenizer == kPatchTokens;
  const size_t D = c.dim, PD = (size_t)c.channels * c.patch * c.patch;
  if (p == P_PATCH_W) return {patch, 2, {PD, D}};
  if (p == P_PATCH_B) return {patch, 1, {D}};
  if (p == P_CLS) return {c.pool == kPoolCls, 2, {1, D}};
  if (p == P_POS) return {c.posEmbedding == kPosLearned, 2, {(size_t)token_count(c), D}};
  const int l = p - P_CONV0;
  const bool conv = !patch && l < c.convLayers;
  return {conv, 4, {3, 3, conv ? (size_t)conv_in(c, l) : 0, conv ? (size_t)conv_out(c, l) : 0}};
}

Entry block_entry(const Config& c, int p) {
  const size_t D = c.dim, IN = (size_t)c.heads * c.dimHead, M = c.mlp;
  const Entry block[B_COUNT] = {{true, 1, {D}},     {true, 1, {D}}, {true, 2, {D, IN}}, {true, 2, {D, IN}}, {true, 2, {D, IN}},
                                {true, 2, {IN, D}}, {true, 1, {D}}, {true, 1, {D}},     {true, 1, {D}},     {true, 2, {D, M}},
                                {true, 1, {M}},     {true, 2, {M, D}}, {true, 1, {D}}};
  return block[p];
}

Entry head_entry(const Config& c, int p) {
  const size_t D = c.dim, C = c.classes;
  const bool seq = c.pool == kPoolSeq;
  const Entry head[H_COUNT] = {{seq, 2, {D, 1}}, {seq, 1, {1}}, {true, 1, {D}}, {true, 1, {D}}, {true, 2, {D, C}}, {true, 1, {C}}};
  return head[p];
}

// The entry of a model's array i (model order).
Entry entry_of(const Config& c, int i) {
  const ParamIndex ix = param_index(c);
  for (int p = 0; p < P_STEM_COUNT; p++)
    if (ix.stem[p] == i) return stem_entry(c, p);
  if (i < ix.blocks + B_COUNT * c.depth) return block_entry(c, (i - ix.blocks) % B_COUNT);
  for (int p = 0; p < H_COUNT; p++)
    if (ix.head[p] == i) return head_entry(c, p);
  return {false, 1, {0}};
}

}  // namespace

ParamIndex param_index(const Config& c) {
  ParamIndex ix;
  int n = 0;
  for (int p = 0; p < P_STEM_COUNT; p++) ix.stem[p] = stem_entry(c, p).present ? n++ : -1;
  ix.blocks = n;
  n += B_COUNT * c.depth;
  for (int p = 0; p < H_COUNT; p++) ix.head[p] = head_entry(c, p).present ? n++ : -1;
  ix.count = n;
  return ix;
}

int param_count(const Config& c) { return param_index(c).count; }

int param_shape(const Config& c, int i, size_t dims[kMaxRank]) {
  const Entry e = entry_of(c, i);
  for (int k = 0; k < kMaxRank; k++) dims[k] = e.d[k];
  return e.rank;
}

size_t param_size(const Config& c, int i) {
  size_t dims[kMaxRank];
  const int rank = param_shape(c, i, dims);
  size_t n = 1;
  for (int k = 0; k < rank; k++) n *= dims[k];
  return n;
}

void sincos_positions(int grid, int dim, float* out) {
  const int w = dim / 4;
  for (int y = 0; y < grid; y++)
    for (int x = 0; x < grid; x++) {
      float* row = out + ((size_t)y * grid + x) * dim;
      for (int i = 0; i < w; i++) {
        const double omega = std::pow(10000.0, -(double)i / w);
        row[i] = (float)std::sin(x * omega);
        row[w + i] = (float)std::cos(x * omega);
        row[2 * w + i] = (float)std::sin(y * omega);
        row[3 * w + i] = (float)std::cos(y * omega);
      }
    }
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
