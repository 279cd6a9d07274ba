// N-API helpers shared by the addon's glue units (addon.cc: the CPU kernels; addon_optimizer.cc:
// the CPU optimizer; addon_gpu.cc: the GPU model). Baseline translation units only; definitions in
// napi_util.cc (the templates here).
#pragma once
#include <node_api.h>

#include <cstddef>
#include <string>
#include <vector>

#include <mutex>

#include "api.h"
#include "optimizer.h"

// Returns null from the calling N-API callback, with a JS error, when an N-API call fails.
#define CHECK(call)                                                              \
  do {                                                                           \
    if ((call) != napi_ok) {                                                     \
      napi_throw_error(env, nullptr, "vit_kernels: N-API call failed: " #call); \
      return nullptr;                                                            \
    }                                                                            \
  } while (0)

namespace tfpipe {
namespace napi {

napi_value str(napi_env env, const std::string& s);
napi_value num(napi_env env, double x);
napi_value strings(napi_env env, const char* const* names, int n);

// A Float32Array's data and length; false when v is not one.
bool float32(napi_env env, napi_value v, float** data, size_t* len);
// A new zeroed Float32Array of n floats (null on failure).
napi_value newFloat32(napi_env env, size_t n, float** data);

// The call's first n arguments into argv (undefined past those passed); false with a JS TypeError
// giving the signature when fewer than `required` were passed.
bool arguments(napi_env env, napi_callback_info info, size_t n, size_t required, napi_value* argv, const char* signature);

// Reads obj.<key> as a number; false (with a JS TypeError thrown) when missing or not a number.
bool field(napi_env env, napi_value obj, const char* key, double* out);

// The model config by name (batch, imageSize, ..., dropout, activation); false with a JS error.
bool read_config(napi_env env, napi_value obj, Config* c);

// Reads an array of Float32Arrays; false with a JS TypeError thrown otherwise.
// A JS function exported by the addon: its name on the exports object and its callback.
struct ExportedFn {
  const char* name;
  napi_callback cb;
};
// Sets every function of fns[0..n) on exports; false when N-API refuses one.
bool export_functions(napi_env env, napi_value exports, const ExportedFn* fns, size_t n);

bool float32s(napi_env env, napi_value arr, const char* what, std::vector<float*>* data, std::vector<size_t>* sizes);

// JS errors that name the call: "vit_kernels.<op>: <what>".
void fail(napi_env env, const char* op, const std::string& what);
void type_error(napi_env env, const char* op, const std::string& what);
void range_error(napi_env env, const char* op, const std::string& what);

// A number argument that must be an integer in [lo, hi]; false with a JS error.
bool integer(napi_env env, napi_value v, const char* op, const char* what, double lo, double hi, double* out);
// A finite number argument; false with a JS error.
bool number(napi_env env, napi_value v, const char* op, const char* what, double* out);
// A Float32Array of exactly n floats; false with a JS error.
bool input(napi_env env, napi_value v, const char* op, const char* what, size_t n, const float** out);

// count Float32Arrays, array i of size(i) floats; false with a JS error.
template <class Size>
bool arrays(napi_env env, napi_value v, const char* op, const char* what, size_t count, const Size& size, std::vector<float*>* out) {
  bool is = false;
  uint32_t n = 0;
  if (napi_is_array(env, v, &is) != napi_ok || !is || napi_get_array_length(env, v, &n) != napi_ok) {
    type_error(env, op, std::string(what) + "s must be an array of Float32Arrays");
    return false;
  }
  if (n != count) {
    range_error(env, op, "expected " + std::to_string(count) + " " + what + " arrays, got " + std::to_string(n));
    return false;
  }
  out->resize(count);
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    size_t len;
    if (napi_get_element(env, v, i, &e) != napi_ok || !float32(env, e, &(*out)[i], &len)) {
      type_error(env, op, std::string(what) + " " + std::to_string(i) + " must be a Float32Array");
      return false;
    }
    if (len != size(i)) {
      range_error(env, op, std::string(what) + " " + std::to_string(i) + " has " + std::to_string(len) + " values, expected " +
                               std::to_string(size(i)));
      return false;
    }
  }
  return true;
}

// count new Float32Arrays, array i of size(i) floats, their data pointers in *data.
template <class Size>
napi_value new_arrays(napi_env env, size_t count, const Size& size, std::vector<float*>* data) {
  napi_value arr;
  CHECK(napi_create_array_with_length(env, count, &arr));
  data->resize(count);
  for (size_t i = 0; i < count; i++) {
    napi_value a = newFloat32(env, size(i), &(*data)[i]);
    if (!a) return nullptr;
    CHECK(napi_set_element(env, arr, (uint32_t)i, a));
  }
  return arr;
}

// The data of the external v if it carries `tag`; null with a JS TypeError ("the first argument
// must be a handle from <maker>") naming op otherwise.
void* tagged_external(napi_env env, napi_value v, const napi_type_tag& tag, const char* op, const char* maker);

// A JS handle owning data: an external carrying `tag` whose finalizer deletes it. Takes ownership
// of data in every case (when the external cannot be made, finalize runs at once); null with a JS
// exception pending on failure.
napi_value owning_external(napi_env env, void* data, napi_finalize finalize, const napi_type_tag& tag);

napi_value boolean(napi_env env, bool b);
napi_value null(napi_env env);
napi_value str_or_null(napi_env env, const std::string& s);

// An optimizer's settings object: its name and constant settings (beta1, beta2, eps, weightDecay,
// momentum), and with `withStep` also lr and step, as src/ml/optim.ts names them. False with a JS
// error whose message starts with `prefix` ("vit_kernels" or "vit_kernels.<op>").
bool read_optimizer(napi_env env, napi_value obj, const std::string& prefix, bool withStep, OptimizerParams* p);

// A Uint8Array of exactly n values (which weights decay); false with a JS error naming op.
bool decays(napi_env env, napi_value v, const char* op, size_t n, const uint8_t** out);

}  // namespace napi

// One call into the CPU kernels or the optimizer at a time per process (addon.cc): the pool, the
// workspace and the profile are process-wide, and Node worker threads that load the addon share them.
std::mutex& kernels_mutex();

// Adds the CPU optimizer's functions (addon_optimizer.cc) to the addon's exports; false on failure.
bool register_optimizer(napi_env env, napi_value exports);

// Adds the GPU model's functions (addon_gpu.cc) to the addon's exports; false on failure.
bool register_gpu(napi_env env, napi_value exports);

}  // namespace tfpipe
