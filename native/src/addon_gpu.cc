// N-API glue of the GPU model (native/cuda/api.h) for src/ml/vit/gpu.ts: a ViT resident on the
// CUDA executor, or with host: true on the host executor (the same model code on plain loops, which
// the tests check against the CPU kernels where there is no GPU), behind an external handle.
// Every array's size is checked against the layout (param_size, layout.cc) before the model reads
// it, and every C++ exception becomes a JS error naming the operation.
//
// Built with TFPIPE_CUDA_KERNELS when the addon links the CUDA executor (device_exec.cu), else with
// TFPIPE_CUDA_SKIPPED="why not" (native/build.mjs), which gpuInfo() and gpuCreate() report.
#include <node_api.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cuda/api.h"
#include "napi_util.h"

namespace tfpipe {
namespace {

using namespace napi;

#if defined(TFPIPE_CUDA_KERNELS)
constexpr bool kCudaBuild = true;
const char* const kNoCuda = "";
#elif defined(TFPIPE_CUDA_SKIPPED)
constexpr bool kCudaBuild = false;
const char* const kNoCuda = "this build has no CUDA kernels (" TFPIPE_CUDA_SKIPPED ")";
#else
constexpr bool kCudaBuild = false;
const char* const kNoCuda = "this build has no CUDA kernels";
#endif

// One GPU call at a time per process (Node worker threads may share the addon). Recursive: a
// finalizer may run on the thread that holds it.
std::recursive_mutex g_gpu_mutex;

// Marks the externals gpuCreate makes, so that another external is refused, never misread.
const napi_type_tag kHandleTag = {0x7466706970652d67ULL, 0x70752d747261696eULL};

struct Handle {
  std::unique_ptr<gpu::Trainer> trainer;  // null once released
  Config c{};
  int slotsPerWeight = 0;  // 0 until gpuSetOptimizer
};

void finalize(napi_env, void* data, void*) {
  std::lock_guard<std::recursive_mutex> lock(g_gpu_mutex);
  delete static_cast<Handle*>(data);
}

// Runs body under the GPU lock; a C++ exception becomes a JS error naming the operation.
template <class F>
napi_value guarded(napi_env env, const char* op, const F& body) {
  try {
    std::lock_guard<std::recursive_mutex> lock(g_gpu_mutex);
    return body();
  } catch (const std::exception& e) {
    fail(env, op, e.what());
  } catch (...) {
    fail(env, op, "unknown C++ exception");
  }
  return nullptr;
}

// The handle passed as v, live unless `released` is allowed; null with a JS error otherwise.
Handle* handle(napi_env env, napi_value v, const char* op, bool released = false) {
  Handle* h = static_cast<Handle*>(tagged_external(env, v, kHandleTag, op, "gpuCreate"));
  if (h && !released && !h->trainer) {
    fail(env, op, "the handle was released");
    return nullptr;
  }
  return h;
}

// CUDA's 13000 as "13.0".
std::string cuda_version(int v) { return v ? std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10) : ""; }

// gpuInfo() -> { ok, error, cudaBuild, name, computeCapability, sms, memoryBytes, driver, runtime,
//                cublasLt, cublasLtVersion, cublasLtError }; strings are null when unknown.
napi_value GpuInfo(napi_env env, napi_callback_info) {
  return guarded(env, "gpuInfo", [&]() -> napi_value {
    const gpu::DeviceInfo& d = gpu::device_info();
    napi_value out;
    CHECK(napi_create_object(env, &out));
    const std::string error = kCudaBuild ? d.error : kNoCuda;
    std::string lt;
    if (d.cublasLtVersion) {
      const size_t v = d.cublasLtVersion;
      lt = std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
    }
    CHECK(napi_set_named_property(env, out, "ok", boolean(env, kCudaBuild && d.ok)));
    CHECK(napi_set_named_property(env, out, "error", d.ok && kCudaBuild ? null(env) : str(env, error)));
    CHECK(napi_set_named_property(env, out, "cudaBuild", boolean(env, kCudaBuild)));
    CHECK(napi_set_named_property(env, out, "name", str_or_null(env, d.name)));
    CHECK(napi_set_named_property(env, out, "computeCapability",
                                  d.ccMajor ? str(env, std::to_string(d.ccMajor) + "." + std::to_string(d.ccMinor)) : null(env)));
    CHECK(napi_set_named_property(env, out, "sms", num(env, d.sms)));
    CHECK(napi_set_named_property(env, out, "memoryBytes", num(env, (double)d.memory)));
    CHECK(napi_set_named_property(env, out, "driver", str_or_null(env, cuda_version(d.driver))));
    CHECK(napi_set_named_property(env, out, "runtime", str_or_null(env, cuda_version(d.runtime))));
    CHECK(napi_set_named_property(env, out, "cublasLt", str_or_null(env, d.cublasLt)));
    CHECK(napi_set_named_property(env, out, "cublasLtVersion", str_or_null(env, lt)));
    CHECK(napi_set_named_property(env, out, "cublasLtError", str_or_null(env, d.cublasLtError)));
    return out;
  });
}

// gpuCreate(config, { precision?: 'fp32' | 'tf32' | 'bf16', host?: boolean | 'simt' }) -> handle.
// config as run() reads it; config.batch is the largest batch a step takes. host: true runs on the
// host executor, 'simt' on the host with the GPU's lanes emulated (api.h Executor).
napi_value GpuCreate(napi_env env, napi_callback_info info) {
  const char* op = "gpuCreate";
  napi_value argv[2];
  if (!arguments(env, info, 2, 1, argv, "vit_kernels.gpuCreate expects (config, { precision?, host? })")) return nullptr;
  Config c;
  if (!read_config(env, argv[0], &c)) return nullptr;
  gpu::Precision precision = gpu::kFp32;
  gpu::Executor executor = gpu::kDevice;
  napi_valuetype t;
  CHECK(napi_typeof(env, argv[1], &t));
  if (t == napi_object) {
    bool has;
    napi_value v;
    CHECK(napi_has_named_property(env, argv[1], "precision", &has));
    if (has) {
      CHECK(napi_get_named_property(env, argv[1], "precision", &v));
      char buf[16] = {0};
      size_t len;
      if (napi_get_value_string_utf8(env, v, buf, sizeof buf, &len) != napi_ok || !gpu::parse_precision(buf, &precision)) {
        range_error(env, op, "precision must be \"fp32\", \"tf32\" or \"bf16\"");
        return nullptr;
      }
    }
    CHECK(napi_has_named_property(env, argv[1], "host", &has));
    if (has) {
      CHECK(napi_get_named_property(env, argv[1], "host", &v));
      bool host = false;
      char buf[8] = {0};
      size_t len;
      if (napi_get_value_bool(env, v, &host) == napi_ok) {
        executor = host ? gpu::kHost : gpu::kDevice;
      } else if (napi_get_value_string_utf8(env, v, buf, sizeof buf, &len) == napi_ok && !std::strcmp(buf, "simt")) {
        executor = gpu::kHostSimt;
      } else {
        type_error(env, op, "host must be a boolean or \"simt\"");
        return nullptr;
      }
    }
  } else if (t != napi_undefined) {
    type_error(env, op, "options must be an object");
    return nullptr;
  }
  if (executor == gpu::kDevice && !kCudaBuild) {
    fail(env, op, kNoCuda);
    return nullptr;
  }
  return guarded(env, op, [&]() -> napi_value {
    std::unique_ptr<Handle> h(new Handle);
    h->c = c;
    h->trainer.reset(gpu::new_trainer(c, precision, executor));
    return owning_external(env, h.release(), finalize, kHandleTag);
  });
}

// gpuRelease(handle): frees the model's memory now instead of when the handle is collected.
napi_value GpuRelease(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!arguments(env, info, 1, 1, argv, "vit_kernels.gpuRelease expects (handle)")) return nullptr;
  Handle* h = handle(env, argv[0], "gpuRelease", true);
  if (!h) return nullptr;
  return guarded(env, "gpuRelease", [&]() -> napi_value {
    h->trainer.reset();
    return nullptr;
  });
}

// gpuSetWeights(handle, weights: Float32Array[]) in layout order.
napi_value GpuSetWeights(napi_env env, napi_callback_info info) {
  const char* op = "gpuSetWeights";
  napi_value argv[2];
  if (!arguments(env, info, 2, 2, argv, "vit_kernels.gpuSetWeights expects (handle, weights)")) return nullptr;
  Handle* h = handle(env, argv[0], op);
  if (!h) return nullptr;
  std::vector<float*> W;
  const Config& c = h->c;
  if (!arrays(env, argv[1], op, "weight", param_count(c), [&](size_t i) { return param_size(c, (int)i); }, &W)) return nullptr;
  return guarded(env, op, [&]() -> napi_value {
    h->trainer->set_weights(W.data());
    return nullptr;
  });
}

// gpuGetWeights(handle) / gpuGetGrads(handle) -> Float32Array[] in layout order.
napi_value download(napi_env env, napi_callback_info info, const char* op, bool grads) {
  napi_value argv[1];
  if (!arguments(env, info, 1, 1, argv, grads ? "vit_kernels.gpuGetGrads expects (handle)" : "vit_kernels.gpuGetWeights expects (handle)"))
    return nullptr;
  Handle* h = handle(env, argv[0], op);
  if (!h) return nullptr;
  const Config& c = h->c;
  std::vector<float*> out;
  napi_value arr = new_arrays(env, param_count(c), [&](size_t i) { return param_size(c, (int)i); }, &out);
  if (!arr) return nullptr;
  return guarded(env, op, [&]() -> napi_value {
    if (grads) h->trainer->get_grads(out.data());
    else h->trainer->get_weights(out.data());
    return arr;
  });
}
napi_value GpuGetWeights(napi_env env, napi_callback_info info) { return download(env, info, "gpuGetWeights", false); }
napi_value GpuGetGrads(napi_env env, napi_callback_info info) { return download(env, info, "gpuGetGrads", true); }

// gpuSetOptimizer(handle, { name, beta1, beta2, eps, weightDecay, momentum }, decays: Uint8Array):
// the optimizer's constant settings (optimize()'s, less lr and step) and which weights decay;
// zeroes the optimizer state.
napi_value GpuSetOptimizer(napi_env env, napi_callback_info info) {
  const char* op = "gpuSetOptimizer";
  napi_value argv[3];
  if (!arguments(env, info, 3, 3, argv, "vit_kernels.gpuSetOptimizer expects (handle, settings, decays)")) return nullptr;
  Handle* h = handle(env, argv[0], op);
  if (!h) return nullptr;
  OptimizerParams p{};
  const uint8_t* data;
  if (!read_optimizer(env, argv[1], std::string("vit_kernels.") + op, false, &p) || !decays(env, argv[2], op, param_count(h->c), &data))
    return nullptr;
  return guarded(env, op, [&]() -> napi_value {
    h->trainer->set_optimizer(p, data);
    h->slotsPerWeight = p.kind == kSgd ? 1 : 2;
    return nullptr;
  });
}

// The slots' count and sizes: per weight [m, v] (Adam, AdamW) or [buffer] (SGD); false with a JS
// error before gpuSetOptimizer.
bool slot_layout(napi_env env, Handle* h, const char* op, size_t* count) {
  if (!h->slotsPerWeight) {
    fail(env, op, "optimizer slots before gpuSetOptimizer");
    return false;
  }
  *count = (size_t)h->slotsPerWeight * param_count(h->c);
  return true;
}

// gpuSetSlots(handle, slots: Float32Array[]) as OptimizerState.slots.
napi_value GpuSetSlots(napi_env env, napi_callback_info info) {
  const char* op = "gpuSetSlots";
  napi_value argv[2];
  if (!arguments(env, info, 2, 2, argv, "vit_kernels.gpuSetSlots expects (handle, slots)")) return nullptr;
  Handle* h = handle(env, argv[0], op);
  size_t count;
  if (!h || !slot_layout(env, h, op, &count)) return nullptr;
  const int per = h->slotsPerWeight;
  std::vector<float*> S;
  if (!arrays(env, argv[1], op, "slot", count, [&](size_t i) { return param_size(h->c, (int)(i / per)); }, &S)) return nullptr;
  return guarded(env, op, [&]() -> napi_value {
    h->trainer->set_slots(S.data());
    return nullptr;
  });
}

// gpuGetSlots(handle) -> Float32Array[] as OptimizerState.slots.
napi_value GpuGetSlots(napi_env env, napi_callback_info info) {
  const char* op = "gpuGetSlots";
  napi_value argv[1];
  if (!arguments(env, info, 1, 1, argv, "vit_kernels.gpuGetSlots expects (handle)")) return nullptr;
  Handle* h = handle(env, argv[0], op);
  size_t count;
  if (!h || !slot_layout(env, h, op, &count)) return nullptr;
  const int per = h->slotsPerWeight;
  std::vector<float*> S;
  napi_value arr = new_arrays(env, count, [&](size_t i) { return param_size(h->c, (int)(i / per)); }, &S);
  if (!arr) return nullptr;
  return guarded(env, op, [&]() -> napi_value {
    h->trainer->get_slots(S.data());
    return arr;
  });
}

// gpuStep(handle, images [B, H, W, C], targets [B, classes], batch, seed, clipNorm)
//   -> { loss, correct, gradNorm }: forward, loss, backward and clipping (clipNorm 0: none; the norm
//   is taken before clipping); seed < 0: no dropout. The gradients stay on the executor.
napi_value GpuStep(napi_env env, napi_callback_info info) {
  const char* op = "gpuStep";
  napi_value argv[6];
  if (!arguments(env, info, 6, 6, argv, "vit_kernels.gpuStep expects (handle, images, targets, batch, seed, clipNorm)")) return nullptr;
  Handle* h = handle(env, argv[0], op);
  if (!h) return nullptr;
  const Config& c = h->c;
  double batch, seed, clipNorm;
  if (!integer(env, argv[3], op, "batch", 1, h->trainer->maxBatch(), &batch)) return nullptr;
  const float *images, *targets;
  if (!input(env, argv[1], op, "images", (size_t)batch * c.image * c.image * c.channels, &images) ||
      !input(env, argv[2], op, "targets", (size_t)batch * c.classes, &targets) || !number(env, argv[4], op, "seed", &seed) ||
      !number(env, argv[5], op, "clipNorm", &clipNorm))
    return nullptr;
  if (clipNorm < 0) {
    range_error(env, op, "clipNorm must be >= 0");
    return nullptr;
  }
  const DropoutSpec drop = dropout_spec(c, seed);  // as run() draws them (addon.cc)
  return guarded(env, op, [&]() -> napi_value {
    const gpu::StepResult r = h->trainer->step((int)batch, images, targets, drop, clipNorm);
    napi_value out;
    CHECK(napi_create_object(env, &out));
    CHECK(napi_set_named_property(env, out, "loss", num(env, r.loss)));
    CHECK(napi_set_named_property(env, out, "correct", num(env, r.correct)));
    CHECK(napi_set_named_property(env, out, "gradNorm", num(env, r.gradNorm)));
    return out;
  });
}

// gpuUpdate(handle, lr, step): one optimizer update with the last step's gradients; step from 1.
napi_value GpuUpdate(napi_env env, napi_callback_info info) {
  const char* op = "gpuUpdate";
  napi_value argv[3];
  if (!arguments(env, info, 3, 3, argv, "vit_kernels.gpuUpdate expects (handle, lr, step)")) return nullptr;
  Handle* h = handle(env, argv[0], op);
  if (!h) return nullptr;
  double lr, step;
  if (!number(env, argv[1], op, "lr", &lr) || !integer(env, argv[2], op, "step", 1, 2147483647.0, &step)) return nullptr;
  if (!h->slotsPerWeight) {
    fail(env, op, "update before gpuSetOptimizer");
    return nullptr;
  }
  return guarded(env, op, [&]() -> napi_value {
    h->trainer->update(lr, (int)step);
    return nullptr;
  });
}

// gpuForward(handle, images [n, H, W, C], n, wantAttention) -> { logits [n, classes], attention?
// [depth, n, heads, T, T] }: eval mode, any n (run in pieces of the handle's batch).
napi_value GpuForward(napi_env env, napi_callback_info info) {
  const char* op = "gpuForward";
  napi_value argv[4];
  if (!arguments(env, info, 4, 3, argv, "vit_kernels.gpuForward expects (handle, images, n, wantAttention?)")) return nullptr;
  Handle* h = handle(env, argv[0], op);
  if (!h) return nullptr;
  const Config& c = h->c;
  double n;
  const float* images;
  if (!integer(env, argv[2], op, "n", 1, 1e9, &n) ||
      !input(env, argv[1], op, "images", (size_t)n * c.image * c.image * c.channels, &images))
    return nullptr;
  bool wantAttention = false;
  napi_valuetype t;
  CHECK(napi_typeof(env, argv[3], &t));
  if (t != napi_undefined && napi_get_value_bool(env, argv[3], &wantAttention) != napi_ok) {
    type_error(env, op, "wantAttention must be a boolean");
    return nullptr;
  }
  const size_t T = (size_t)(c.image / c.patch) * (c.image / c.patch) + 1;
  napi_value out;
  float *logits, *attention = nullptr;
  CHECK(napi_create_object(env, &out));
  napi_value l = newFloat32(env, (size_t)n * c.classes, &logits);
  if (!l) return nullptr;
  CHECK(napi_set_named_property(env, out, "logits", l));
  if (wantAttention) {
    napi_value a = newFloat32(env, (size_t)c.depth * (size_t)n * c.heads * T * T, &attention);
    if (!a) return nullptr;
    CHECK(napi_set_named_property(env, out, "attention", a));
  }
  return guarded(env, op, [&]() -> napi_value {
    h->trainer->forward((int)n, images, logits, attention);
    return out;
  });
}

}  // namespace

bool register_gpu(napi_env env, napi_value exports) {
  const ExportedFn fns[] = {{"gpuInfo", GpuInfo},         {"gpuCreate", GpuCreate},       {"gpuRelease", GpuRelease},
             {"gpuSetWeights", GpuSetWeights}, {"gpuGetWeights", GpuGetWeights}, {"gpuGetGrads", GpuGetGrads},
             {"gpuSetOptimizer", GpuSetOptimizer}, {"gpuSetSlots", GpuSetSlots}, {"gpuGetSlots", GpuGetSlots},
             {"gpuStep", GpuStep},         {"gpuUpdate", GpuUpdate},       {"gpuForward", GpuForward}};
  return export_functions(env, exports, fns, sizeof fns / sizeof fns[0]);
}

}  // namespace tfpipe
