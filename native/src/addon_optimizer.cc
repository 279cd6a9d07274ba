// N-API glue of the CPU optimizer (optimizer.cc) for src/ml/vit/native.ts. A trainer hands the
// constant settings and which weights decay over once, optimizerCreate(), as the GPU model takes
// them with gpuSetOptimizer(); each update then passes only the learning rate and the step,
// optimizerUpdate(). optimize() is the one-shot form with every setting (tests, the bench).
// Compiled once, with baseline flags.
#include <node_api.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api.h"
#include "napi_util.h"
#include "optimizer.h"

namespace tfpipe {
namespace {

using namespace napi;

// Marks the externals optimizerCreate makes, so that another external is refused, never misread.
const napi_type_tag kOptimizerTag = {0x7466706970652d6fULL, 0x7074696d697a6572ULL};

struct Optimizer {
  OptimizerParams constant{};  // lr and step are set per update
  std::vector<uint8_t> decays;
};

void finalize(napi_env, void* data, void*) { delete static_cast<Optimizer*>(data); }

// Checks weights, grads and slots against each other and the decays, then updates in place.
napi_value update(napi_env env, const OptimizerParams& p, napi_value w, napi_value g, napi_value s, const uint8_t* decays,
                  size_t decayCount, const char* what) {
  std::vector<float*> W, G, S;
  std::vector<size_t> ws, gs, ss;
  if (!float32s(env, w, "weights", &W, &ws) || !float32s(env, g, "grads", &G, &gs) || !float32s(env, s, "slots", &S, &ss)) return nullptr;
  const size_t per = p.kind == kSgd ? 1 : 2;
  bool ok = G.size() == W.size() && S.size() == per * W.size() && decayCount == W.size();
  for (size_t i = 0; ok && i < W.size(); i++) ok = gs[i] == ws[i] && ss[per * i] == ws[i] && ss[per * i + per - 1] == ws[i];
  if (!ok) {
    napi_throw_range_error(env, nullptr, (std::string(what) + ": weights, grads, slots and decays do not match in number or size").c_str());
    return nullptr;
  }
  std::lock_guard<std::mutex> serial(kernels_mutex());
  optimizer_update(p, (int)W.size(), W.data(), G.data(), S.data(), ws.data(), decays);
  return nullptr;
}

// optimize(settings, weights, grads, slots, decays: Uint8Array) -> undefined; updates weights and
// slots in place. settings: { name: 'adam' | 'adamw' | 'sgd', lr, beta1, beta2, eps, weightDecay,
// momentum, step } with step counting from 1, as src/ml/optim.ts.
napi_value Optimize(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!arguments(env, info, 5, 5, argv, "vit_kernels.optimize expects (settings, weights, grads, slots, decays)")) return nullptr;
  OptimizerParams p{};
  if (!read_optimizer(env, argv[0], "vit_kernels", true, &p)) return nullptr;
  napi_typedarray_type type;
  size_t n, off;
  void* data = nullptr;
  napi_value ab;
  // Decays that are not a Uint8Array count as not matching (reported after the arrays' own checks).
  if (napi_get_typedarray_info(env, argv[4], &type, &n, &data, &ab, &off) != napi_ok || type != napi_uint8_array) n = SIZE_MAX;
  return update(env, p, argv[1], argv[2], argv[3], static_cast<const uint8_t*>(data), n, "vit_kernels.optimize");
}

// optimizerCreate({ name, beta1, beta2, eps, weightDecay, momentum }, decays: Uint8Array) -> handle:
// the constant settings (optimize()'s, less lr and step) and which weights decay, kept.
napi_value OptimizerCreate(napi_env env, napi_callback_info info) {
  const char* op = "optimizerCreate";
  napi_value argv[2];
  if (!arguments(env, info, 2, 2, argv, "vit_kernels.optimizerCreate expects (settings, decays)")) return nullptr;
  std::unique_ptr<Optimizer> o(new Optimizer);
  if (!read_optimizer(env, argv[0], std::string("vit_kernels.") + op, false, &o->constant)) return nullptr;
  bool is = false;
  napi_typedarray_type type;
  size_t n, off;
  void* data;
  napi_value ab;
  if (napi_is_typedarray(env, argv[1], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, argv[1], &type, &n, &data, &ab, &off) != napi_ok || type != napi_uint8_array) {
    type_error(env, op, "decays must be a Uint8Array");
    return nullptr;
  }
  const uint8_t* d = static_cast<const uint8_t*>(data);
  o->decays.assign(d, d + n);
  return owning_external(env, o.release(), finalize, kOptimizerTag);
}

// optimizerUpdate(handle, lr, step, weights, grads, slots) -> undefined: one update in place with
// the handle's settings; step counts from 1.
napi_value OptimizerUpdate(napi_env env, napi_callback_info info) {
  const char* op = "optimizerUpdate";
  napi_value argv[6];
  if (!arguments(env, info, 6, 6, argv, "vit_kernels.optimizerUpdate expects (handle, lr, step, weights, grads, slots)"))
    return nullptr;
  const Optimizer* found = static_cast<Optimizer*>(tagged_external(env, argv[0], kOptimizerTag, op, "optimizerCreate"));
  if (!found) return nullptr;
  const Optimizer& o = *found;
  double lr, step;
  if (!number(env, argv[1], op, "lr", &lr) || !integer(env, argv[2], op, "step", 1, 2147483647.0, &step)) return nullptr;
  OptimizerParams p = o.constant;
  p.lr = lr;
  p.step = (int)step;
  return update(env, p, argv[3], argv[4], argv[5], o.decays.data(), o.decays.size(), "vit_kernels.optimizerUpdate");
}

}  // namespace

bool register_optimizer(napi_env env, napi_value exports) {
  const ExportedFn fns[] = {{"optimize", Optimize}, {"optimizerCreate", OptimizerCreate}, {"optimizerUpdate", OptimizerUpdate}};
  return export_functions(env, exports, fns, sizeof fns / sizeof fns[0]);
}

}  // namespace tfpipe
