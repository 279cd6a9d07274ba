// N-API glue: info(), run(), optimize() and profile() for src/ml/vit/native.ts (the GPU model's
// functions are in addon_gpu.cc). Compiled once, with baseline flags; the model code it calls is
// the variant dispatch.cc selects.
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
#include "optimizer.h"
#include "profile.h"

namespace tfpipe {
namespace {

using namespace napi;

// One run at a time per process: the pool, the workspace and the profile are process-wide, and
// Node worker threads that load the addon share them.
std::mutex g_run_mutex;
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
  double loss = 0;
  int correct = 0;
  // Gradient clipping by global L2 norm (0 = off), done here: ~170 tfjs ops per step otherwise.
  double clipNorm = 0;
  double gradNorm = 0;
  std::vector<size_t> gradSizes;

  void execute() {
    std::lock_guard<std::mutex> serial(g_run_mutex);
    set_threads(threads);
    kernels->forward(c, W.data(), images, drop, g_ws, logits, attention);
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
// -> { isa, logits, attention?, loss?, correct?, gradNorm?, grads?: Float32Array[] } (loss etc. added
//    after the run); with clipNorm > 0 the gradients come scaled so that their global L2 norm <= clipNorm.
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
  const int T = (c.image / c.patch) * (c.image / c.patch) + 1;
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
  if (job->targets && c.dropout > 0 && seed >= 0) {
    job->drop.active = true;
    job->drop.seed = (uint32_t)(uint64_t)seed;
    job->drop.threshold = (uint32_t)std::floor(c.dropout * 16777216.0);
    job->drop.keep = (float)(1.0 / (1.0 - c.dropout));
  }

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

// optimize(settings, weights, grads, slots, decays: Uint8Array) -> undefined; updates weights and
// slots in place. settings: { name: 'adam' | 'adamw' | 'sgd', lr, beta1, beta2, eps, weightDecay,
// momentum, step } with step counting from 1, as src/ml/optim.ts.
napi_value Optimize(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!arguments(env, info, 5, 5, argv, "vit_kernels.optimize expects (settings, weights, grads, slots, decays)")) return nullptr;
  OptimizerParams p{};
  char name[16] = {0};
  size_t len;
  napi_value v;
  if (napi_get_named_property(env, argv[0], "name", &v) != napi_ok || napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, nullptr, "vit_kernels: settings.name must be a string");
    return nullptr;
  }
  if (!strcmp(name, "adam")) p.kind = kAdam;
  else if (!strcmp(name, "adamw")) p.kind = kAdamW;
  else if (!strcmp(name, "sgd")) p.kind = kSgd;
  else {
    napi_throw_range_error(env, nullptr, (std::string("vit_kernels: unknown optimizer \"") + name + "\"").c_str());
    return nullptr;
  }
  double step;
  if (!field(env, argv[0], "lr", &p.lr) || !field(env, argv[0], "beta1", &p.beta1) || !field(env, argv[0], "beta2", &p.beta2) ||
      !field(env, argv[0], "eps", &p.eps) || !field(env, argv[0], "weightDecay", &p.weightDecay) ||
      !field(env, argv[0], "momentum", &p.momentum) || !field(env, argv[0], "step", &step))
    return nullptr;
  p.step = (int)step;
  std::vector<float*> W, G, S;
  std::vector<size_t> ws, gs, ss;
  if (!float32s(env, argv[1], "weights", &W, &ws) || !float32s(env, argv[2], "grads", &G, &gs) || !float32s(env, argv[3], "slots", &S, &ss))
    return nullptr;
  const size_t per = p.kind == kSgd ? 1 : 2;
  bool ok = G.size() == W.size() && S.size() == per * W.size();
  for (size_t i = 0; ok && i < W.size(); i++) ok = gs[i] == ws[i] && ss[per * i] == ws[i] && ss[per * i + per - 1] == ws[i];
  napi_typedarray_type type;
  size_t dlen, off;
  void* dp;
  napi_value ab;
  if (!ok || napi_get_typedarray_info(env, argv[4], &type, &dlen, &dp, &ab, &off) != napi_ok || type != napi_uint8_array || dlen != W.size()) {
    napi_throw_range_error(env, nullptr, "vit_kernels.optimize: weights, grads, slots and decays do not match in number or size");
    return nullptr;
  }
  {
    std::lock_guard<std::mutex> serial(g_run_mutex);
    optimizer_update(p, (int)W.size(), W.data(), G.data(), S.data(), ws.data(), static_cast<const uint8_t*>(dp));
  }
  return nullptr;
}

// profile() -> { section: milliseconds } summed since the last call, then reset. The first call
// turns the per-section timing on (it costs a few thousand clock reads per step).
napi_value Profile(napi_env env, napi_callback_info) {
  std::lock_guard<std::mutex> serial(g_run_mutex);
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
  struct {
    const char* name;
    napi_callback cb;
  } fns[] = {{"info", Info}, {"run", Run}, {"optimize", Optimize}, {"profile", Profile}};
  for (auto& f : fns) {
    napi_value fn;
    if (napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.cb, nullptr, &fn) != napi_ok) return nullptr;
    if (napi_set_named_property(env, exports, f.name, fn) != napi_ok) return nullptr;
  }
  return register_gpu(env, exports) ? exports : nullptr;
}

}  // namespace
}  // namespace tfpipe

NAPI_MODULE(NODE_GYP_MODULE_NAME, tfpipe::Init)
