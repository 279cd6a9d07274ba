// N-API glue: info(), shapes(), run() and profile() for src/ml/vit/native.ts (the optimizer's
// functions are in addon_optimizer.cc, the GPU model's in addon_gpu.cc). Compiled once, with
// baseline flags; the model code it calls is the variant dispatch.cc selects.
#include <node_api.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "api.h"
#include "dispatch.h"
#include "napi_util.h"
#include "profile.h"

namespace tfpipe {
namespace {

using namespace napi;

Workspace* g_ws = workspace_new();

// The variant chosen at load (TFPIPE_NATIVE_ISA or the best this CPU runs) or why there is none.
const Kernels* g_default = nullptr;
std::string g_default_error;

// Everything a run needs, gathered from the JS arguments.
struct Job {
  const Kernels* kernels = nullptr;
  Config c{};
  DropoutSpec drop{};
  int threads = 1;
  std::vector<const float*> W;
  const float* images = nullptr;
  const float* targets = nullptr;
  std::vector<float*> G;
  float* logits = nullptr;
  float* attention = nullptr;
  float* pool = nullptr;
  double loss = 0;
  int correct = 0;
  // Gradient clipping by global L2 norm (0 = off), done here: ~170 tfjs ops per step otherwise.
  double clipNorm = 0;
  double gradNorm = 0;
  std::vector<size_t> gradSizes;

  void execute() {
    std::lock_guard<std::mutex> serial(kernels_mutex());
    set_threads(threads);
    kernels->forward(c, W.data(), images, drop, g_ws, logits, attention, pool);
    if (targets) {
      std::vector<float> dlogits((size_t)c.batch * c.classes);
      softmax_cross_entropy(c.batch, c.classes, logits, targets, &loss, &correct, dlogits.data());
      kernels->backward(c, W.data(), G.data(), dlogits.data(), drop, g_ws);
      double sq = 0;
      for (size_t i = 0; i < G.size(); i++)
        for (size_t j = 0; j < gradSizes[i]; j++) sq += (double)G[i][j] * G[i][j];
      gradNorm = std::sqrt(sq);
      if (clipNorm > 0 && gradNorm > clipNorm) {
        const float scale = (float)(clipNorm / (gradNorm + 1e-6));
        for (size_t i = 0; i < G.size(); i++)
          for (size_t j = 0; j < gradSizes[i]; j++) G[i][j] *= scale;
      }
    }
  }
};

// run(config, weights: Float32Array[], images, targets | null, seed, threads, options?)
//   options: { isa?: string, attention?: boolean, clipNorm?: number }
// -> { isa, logits, attention?, pool?, loss?, correct?, gradNorm?, grads?: Float32Array[] } (loss etc. added
//    after the run; pool: each token's weight in the pooled vector, [B, T], with attention); with clipNorm > 0 the gradients come scaled so that their global L2 norm <= clipNorm.
// Returns the output object, or null with a JS exception pending. The run is synchronous: the
// arguments' and the output's arrays stay alive in the call's handle scope, no references needed.
napi_value prepare(napi_env env, napi_callback_info info, Job* job) {
  napi_value argv[7];
  if (!arguments(env, info, 7, 6, argv, "vit_kernels.run expects (config, weights, images, targets, seed, threads, options?)"))
    return nullptr;
  Config& c = job->c;
  if (!read_config(env, argv[0], &c)) return nullptr;

  job->kernels = g_default;
  std::string error = g_default_error;
  bool wantAttention = false;
  napi_valuetype ot;
  CHECK(napi_typeof(env, argv[6], &ot));
  if (ot == napi_object) {
    bool has;
    napi_value v;
    CHECK(napi_has_named_property(env, argv[6], "isa", &has));
    if (has) {
      CHECK(napi_get_named_property(env, argv[6], "isa", &v));
      char buf[32] = {0};
      size_t len;
      CHECK(napi_get_value_string_utf8(env, v, buf, sizeof buf, &len));
      error.clear();
      job->kernels = select_kernels(buf, &error);
    }
    CHECK(napi_has_named_property(env, argv[6], "clipNorm", &has));
    if (has) {
      CHECK(napi_get_named_property(env, argv[6], "clipNorm", &v));
      CHECK(napi_get_value_double(env, v, &job->clipNorm));
    }
    CHECK(napi_has_named_property(env, argv[6], "attention", &has));
    if (has) {
      CHECK(napi_get_named_property(env, argv[6], "attention", &v));
      CHECK(napi_get_value_bool(env, v, &wantAttention));
    }
  }
  if (!job->kernels) {
    napi_throw_error(env, nullptr, ("vit_kernels: " + error).c_str());
    return nullptr;
  }

  uint32_t nw;
  CHECK(napi_get_array_length(env, argv[1], &nw));
  if ((int)nw != param_count(c)) {
    napi_throw_error(env, nullptr, ("vit_kernels: expected " + std::to_string(param_count(c)) + " weight arrays, got " + std::to_string(nw)).c_str());
    return nullptr;
  }
  const int T = token_count(c);
  std::vector<size_t> sizes(nw);
  job->W.resize(nw);
  for (uint32_t i = 0; i < nw; i++) {
    napi_value e;
    CHECK(napi_get_element(env, argv[1], i, &e));
    float* p;
    if (!float32(env, e, &p, &sizes[i])) {
      napi_throw_type_error(env, nullptr, "vit_kernels: weights must be Float32Arrays");
      return nullptr;
    }
    job->W[i] = p;
  }
  // The sizes the kernels will read: a wrong one would read out of bounds.
  for (uint32_t i = 0; i < nw; i++) {
    const size_t want = param_size(c, (int)i);
    if (sizes[i] != want) {
      napi_throw_range_error(env, nullptr, ("vit_kernels: weight " + std::to_string(i) + " has " + std::to_string(sizes[i]) +
                                            " values, expected " + std::to_string(want)).c_str());
      return nullptr;
    }
  }
  // An input array of n floats.
  auto input = [&](napi_value v, size_t n, const char* what, const float** out) {
    float* p;
    size_t len;
    if (!float32(env, v, &p, &len) || len != n) {
      napi_throw_type_error(env, nullptr, (std::string("vit_kernels: ") + what).c_str());
      return false;
    }
    *out = p;
    return true;
  };
  if (!input(argv[2], (size_t)c.batch * c.image * c.image * c.channels, "images must be a Float32Array [B, H, W, C]", &job->images))
    return nullptr;
  napi_valuetype tt;
  CHECK(napi_typeof(env, argv[3], &tt));
  if (tt != napi_null && tt != napi_undefined &&
      !input(argv[3], (size_t)c.batch * c.classes, "targets must be a Float32Array [B, classes]", &job->targets))
    return nullptr;
  double seed;
  CHECK(napi_get_value_double(env, argv[4], &seed));
  int32_t threads;
  CHECK(napi_get_value_int32(env, argv[5], &threads));
  job->threads = threads < 1 ? 1 : threads;
  if (job->targets) job->drop = dropout_spec(c, seed);

  napi_value out;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_set_named_property(env, out, "isa", str(env, job->kernels->isa)));
  napi_value logits = newFloat32(env, (size_t)c.batch * c.classes, &job->logits);
  if (!logits) return nullptr;
  CHECK(napi_set_named_property(env, out, "logits", logits));
  if (wantAttention) {
    napi_value att = newFloat32(env, (size_t)c.depth * c.batch * c.heads * T * T, &job->attention);
    if (!att) return nullptr;
    CHECK(napi_set_named_property(env, out, "attention", att));
    napi_value pool = newFloat32(env, (size_t)c.batch * T, &job->pool);
    if (!pool) return nullptr;
    CHECK(napi_set_named_property(env, out, "pool", pool));
  }
  if (job->targets) {
    napi_value grads;
    CHECK(napi_create_array_with_length(env, nw, &grads));
    job->G.resize(nw);
    job->gradSizes = sizes;
    for (uint32_t i = 0; i < nw; i++) {
      napi_value g = newFloat32(env, sizes[i], &job->G[i]);
      if (!g) return nullptr;
      CHECK(napi_set_element(env, grads, i, g));
    }
    CHECK(napi_set_named_property(env, out, "grads", grads));
  }
  return out;
}

napi_value Run(napi_env env, napi_callback_info info) {
  Job job;
  napi_value out = prepare(env, info, &job);
  if (!out) return nullptr;
  job.execute();
  if (job.targets) {
    napi_set_named_property(env, out, "loss", num(env, job.loss));
    napi_set_named_property(env, out, "correct", num(env, job.correct));
    napi_set_named_property(env, out, "gradNorm", num(env, job.gradNorm));
  }
  return out;
}

// shapes(config) -> number[][]: the shape of every weight array for this config, in layout order
// (param_shape, layout.cc), for tfpipe to compare with its own formulas (src/ml/vit/layout.ts).
napi_value Shapes(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!arguments(env, info, 1, 1, argv, "vit_kernels.shapes expects (config)")) return nullptr;
  Config c;
  if (!read_config(env, argv[0], &c)) return nullptr;
  const int n = param_count(c);
  napi_value out;
  CHECK(napi_create_array_with_length(env, n, &out));
  for (int i = 0; i < n; i++) {
    size_t dims[kMaxRank];
    const int rank = param_shape(c, i, dims);
    napi_value shape;
    CHECK(napi_create_array_with_length(env, rank, &shape));
    for (int d = 0; d < rank; d++) CHECK(napi_set_element(env, shape, d, num(env, (double)dims[d])));
    CHECK(napi_set_element(env, out, i, shape));
  }
  return out;
}

// profile() -> { section: milliseconds } summed since the last call, then reset. The first call
// turns the per-section timing on (it costs a few thousand clock reads per step).
napi_value Profile(napi_env env, napi_callback_info) {
  std::lock_guard<std::mutex> serial(kernels_mutex());
  profile_enable(true);
  napi_value out;
  CHECK(napi_create_object(env, &out));
  for (auto& kv : profile_take()) CHECK(napi_set_named_property(env, out, kv.first.c_str(), num(env, kv.second)));
  return out;
}

// info() -> { isa, error, cpu, features, variants: [{ name, supported, requires, lanes, tile }], layout }
napi_value Info(napi_env env, napi_callback_info) {
  napi_value out, vars, layout, nul;
  CHECK(napi_get_null(env, &nul));
  CHECK(napi_create_object(env, &out));
  CHECK(napi_set_named_property(env, out, "isa", g_default ? str(env, g_default->isa) : nul));
  CHECK(napi_set_named_property(env, out, "error", g_default ? nul : str(env, g_default_error)));
  CHECK(napi_set_named_property(env, out, "cpu", str(env, cpu_model())));
  CHECK(napi_set_named_property(env, out, "features", str(env, cpu_features())));
  const auto& all = variants();
  CHECK(napi_create_array_with_length(env, all.size(), &vars));
  for (size_t i = 0; i < all.size(); i++) {
    napi_value v, supported, tile;
    CHECK(napi_create_object(env, &v));
    CHECK(napi_set_named_property(env, v, "name", str(env, all[i].name)));
    CHECK(napi_get_boolean(env, all[i].supported, &supported));
    CHECK(napi_set_named_property(env, v, "supported", supported));
    CHECK(napi_set_named_property(env, v, "requires", str(env, all[i].requires)));
    CHECK(napi_set_named_property(env, v, "lanes", num(env, all[i].kernels->lanes)));
    CHECK(napi_create_array_with_length(env, 2, &tile));
    CHECK(napi_set_element(env, tile, 0, num(env, all[i].kernels->tileRows)));
    CHECK(napi_set_element(env, tile, 1, num(env, all[i].kernels->tileCols)));
    CHECK(napi_set_named_property(env, v, "tile", tile));
    CHECK(napi_set_element(env, vars, i, v));
  }
  CHECK(napi_set_named_property(env, out, "variants", vars));
  CHECK(napi_create_object(env, &layout));
  CHECK(napi_set_named_property(env, layout, "stem", strings(env, kStemNames, P_STEM_COUNT)));
  CHECK(napi_set_named_property(env, layout, "block", strings(env, kBlockNames, B_COUNT)));
  CHECK(napi_set_named_property(env, layout, "head", strings(env, kHeadNames, H_COUNT)));
  CHECK(napi_set_named_property(env, layout, "blockDropoutSites", strings(env, kBlockSiteNames, kSitesPerBlock)));
  CHECK(napi_set_named_property(env, layout, "embeddingDropoutSite", num(env, kSiteEmbedding)));
  CHECK(napi_set_named_property(env, out, "layout", layout));
  return out;
}

napi_value Init(napi_env env, napi_value exports) {
  g_default = select_kernels(std::getenv("TFPIPE_NATIVE_ISA"), &g_default_error);
  const ExportedFn fns[] = {{"info", Info}, {"shapes", Shapes}, {"run", Run}, {"profile", Profile}};
  if (!export_functions(env, exports, fns, sizeof fns / sizeof fns[0])) return nullptr;
  return register_optimizer(env, exports) && register_gpu(env, exports) ? exports : nullptr;
}

}  // namespace

std::mutex& kernels_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace tfpipe

NAPI_MODULE(NODE_GYP_MODULE_NAME, tfpipe::Init)
