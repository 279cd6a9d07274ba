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

}  // namespace tfpipe
