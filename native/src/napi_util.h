// N-API helpers shared by the addon's glue units (addon.cc: the CPU kernels; addon_gpu.cc: the GPU
// model). Baseline translation units only; declarations here, definitions in napi_util.cc.
#pragma once
#include <node_api.h>

#include <cstddef>
#include <string>
#include <vector>

#include "api.h"

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
bool float32s(napi_env env, napi_value arr, const char* what, std::vector<float*>* data, std::vector<size_t>* sizes);

}  // namespace napi

// Adds the GPU model's functions (addon_gpu.cc) to the addon's exports; false on failure.
bool register_gpu(napi_env env, napi_value exports);

}  // namespace tfpipe
