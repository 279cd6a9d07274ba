// What the ISA-independent code (N-API glue, pool, dispatch, the standalone bench) and the
// per-ISA kernel objects share. This header is included by every translation unit, including
// those compiled with -mavx512f/-mavx2: it must hold only declarations, plain structs and
// constants, never an inline function. An inline function defined here would be emitted by each
// variant with its own flags and the linker would keep one copy for all, so a baseline CPU could
// end up running an AVX-512 copy (SIGILL). native/build.mjs checks the variant objects for such
// shared symbols (see native/check-symbols.mjs).
#pragma once
#include <cstddef>
#include <cstdint>

namespace tfpipe {

enum Activation : int32_t { kGeluTanh = 0, kGeluErf = 1 };
// The ViT options of src/ml/vit/config.ts. The first of each is 0, so a Config written as a list
// of the older fields gets today's model: patch tokens, a class token, learned positions.
enum Tokenizer : int32_t { kPatchTokens = 0, kConvTokens = 1 };
enum Pool : int32_t { kPoolCls = 0, kPoolMean = 1, kPoolSeq = 2 };
enum PosEmbedding : int32_t { kPosLearned = 0, kPosSincos = 1, kPosNone = 2 };

// The kernels keep per-block and per-conv-layer pointers in fixed arrays; larger models are
// refused at the boundary.
constexpr int kMaxDepth = 64;
constexpr int kMaxConvLayers = 4;

// Model hyper-parameters of one call, read by name from the JS config object.
struct Config {
  int32_t batch, image, channels, classes, patch, dim, depth, heads, dimHead, mlp;
  float dropout;
  int32_t activation;  // Activation
  int32_t tokenizer;   // Tokenizer
  int32_t convLayers, convChannels;  // conv tokenizer: layers (each halves the grid), channels of all but the last
  int32_t pool;          // Pool
  int32_t posEmbedding;  // PosEmbedding
};

// Parameter layout: indices into the weight/gradient arrays, in the order of the TS layout
// (src/ml/vit/layout.ts). The addon reports the names (info().layout) and the shapes for any config
// (shapes()), and tfpipe refuses the native path when either differs from its own.
// The layout lists every parameter any config may have; a model's weight arrays are those its
// config has, in layout order (param_index).
enum StemParam { P_PATCH_W, P_PATCH_B, P_CONV0, P_CLS = P_CONV0 + kMaxConvLayers, P_POS, P_STEM_COUNT };
enum BlockParam { B_LN1_G, B_LN1_B, B_Q, B_K, B_V, B_OUT_W, B_OUT_B, B_LN2_G, B_LN2_B, B_FC1_W, B_FC1_B, B_FC2_W, B_FC2_B, B_COUNT };
enum HeadParam { H_POOL_W, H_POOL_B, H_LN_G, H_LN_B, H_W, H_B, H_COUNT };
extern const char* const kStemNames[P_STEM_COUNT];
extern const char* const kBlockNames[B_COUNT];
extern const char* const kHeadNames[H_COUNT];
// Where a model of a config keeps each parameter among its weight arrays: stem[p] and head[p] the
// array's index, or -1 when the config has no such parameter; block l's parameter p at
// blocks + B_COUNT * l + p; count arrays in all.
struct ParamIndex {
  int stem[P_STEM_COUNT];
  int blocks;
  int head[H_COUNT];
  int count;
};
ParamIndex param_index(const Config& c);
// Rank of the largest parameter: the conv kernels [3, 3, in, out].
constexpr int kMaxRank = 4;
// Number of weight arrays of a model; the shape of array i (model order) as the kernels read it,
// row-major: its rank (1, 2 or 4) and dims; and its floats. The one place the C++ side derives
// the shapes (layout.cc), as src/ml/vit/layout.ts does for TypeScript.
int param_count(const Config& c);
int param_shape(const Config& c, int i, size_t dims[kMaxRank]);
size_t param_size(const Config& c, int i);

// The token grid's side, and the tokens T the blocks see (grid^2, plus the class token of pool cls).
int token_grid(const Config& c);
int token_count(const Config& c);
// Channels into and out of conv tokenizer layer l (the last gives dim).
int conv_in(const Config& c, int l);
int conv_out(const Config& c, int l);
// The fixed 2-D sin-cos positions of a grid x grid token grid, [grid^2, dim], computed in double
// and rounded once, as src/ml/vit/config.ts sincosPositions does.
void sincos_positions(int grid, int dim, float* out);

// Dropout sites: 0 is the embedding; block l owns 1 + kSitesPerBlock * l + BlockSite.
enum BlockSite { S_ATTN_WEIGHTS, S_ATTN_OUT, S_MLP_HIDDEN, S_MLP_OUT, kSitesPerBlock };
constexpr int kSiteEmbedding = 0;
extern const char* const kBlockSiteNames[kSitesPerBlock];

// Dropout masks come from a counter-based hash of (seed, site, element), as in
// src/ml/vit/dropout.ts, so both implementations draw the same masks.
struct DropoutSpec {
  bool active;
  uint32_t seed;
  uint32_t threshold;  // drop when the hash's top 24 bits < threshold
  float keep;          // 1 / (1 - rate)
};
// The dropout of a training step of c drawn from `seed`; inactive when c.dropout is 0 or seed < 0
// (layout.cc). The CPU kernels' run and the GPU model's step draw it alike.
DropoutSpec dropout_spec(const Config& c, double seed);

// Buffers kept between calls (re-allocating tens of MB per step costs page faults). A slot is a
// small integer chosen by the kernels; take() returns at least n floats, 64-byte aligned, and
// keeps the contents of earlier calls only while the size does not grow. Not thread-safe: take
// buffers before a parallel region.
struct Workspace;
Workspace* workspace_new();
void workspace_free(Workspace*);
float* workspace_take(Workspace*, int slot, size_t n);

// The worker pool (pool.cc). parallel_chunks runs fn(ctx, chunk, begin, end) over [0, n) split
// into contiguous non-empty chunks aligned to `align`, at most one per thread; chunk is in
// [0, parallel_chunk_count(n, align)). Inside a running chunk a nested call runs serially. Which
// items a chunk gets depends on the thread count, so no result may depend on the chunking: every
// sum over items is taken in a fixed order of fixed pieces (see model.cc).
typedef void (*ChunkFn)(void* ctx, int chunk, int begin, int end);
void parallel_chunks(int n, int align, ChunkFn fn, void* ctx);
int parallel_chunk_count(int n, int align);
void set_threads(int threads);
int get_threads();

// Per-section milliseconds of the calling thread (profile.cc), for the bench's profile: CPU time,
// or wall time with TFPIPE_PROFILE_CLOCK=wall. Off until profile_enable(true) (a step makes a few
// thousand section records; the clock reads would cost ~1% when nobody looks). Worker threads of
// the pool never record: profile_enabled() is false there.
void profile_enable(bool on);
bool profile_enabled();
void profile_mark_worker();  // called once by each pool worker
double profile_now_ms();
double wall_seconds();  // monotonic clock
void profile_add(const char* section, double ms);

// One ISA variant of the model kernels. attention (optional) receives the post-softmax weights
// of every block, [depth, batch, heads, T, T]; W and G hold a model's arrays (param_index).
struct Kernels {
  const char* isa;
  int lanes;           // floats per vector register
  int tileRows, tileCols;  // the main GEMM register tile
  // pool (optional) receives the weight each token has in the vector the head reads, [batch, T].
  void (*forward)(const Config&, const float* const* W, const float* images, const DropoutSpec&, Workspace*, float* logits,
                  float* attention, float* pool);
  // Gradients (zeroed by the caller, layout order) from dlogits; needs the forward's workspace.
  void (*backward)(const Config&, const float* const* W, float* const* G, const float* dlogits, const DropoutSpec&, Workspace*);
  // Multiply-add throughput of one thread with this variant's vectors over about `seconds`, in
  // GFLOP/s: the ceiling the GEMMs aim at (native/bench_main.cc).
  double (*peakGflops)(double seconds);
};

// Mean softmax cross-entropy against soft targets; fills dlogits = (softmax - t) / B (loss.cc).
void softmax_cross_entropy(int batch, int classes, const float* logits, const float* targets, double* loss, int* correct,
                           float* dlogits);

}  // namespace tfpipe
