// N-API helpers shared by the addon's glue units: addon.cc, addon_optimizer.cc, addon_gpu.cc (napi_util.h).
#include "napi_util.h"

#include <cmath>
#include <cstring>

namespace tfpipe {
namespace napi {

napi_value str(napi_env env, const std::string& s) {
  napi_value v;
  napi_create_string_utf8(env, s.c_str(), s.size(), &v);
  return v;
}
napi_value num(napi_env env, double x) {
  napi_value v;
  napi_create_double(env, x, &v);
  return v;
}
napi_value strings(napi_env env, const char* const* names, int n) {
  napi_value arr;
  napi_create_array_with_length(env, n, &arr);
  for (int i = 0; i < n; i++) napi_set_element(env, arr, i, str(env, names[i]));
  return arr;
}

bool float32(napi_env env, napi_value v, float** data, size_t* len) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  void* p;
  if (napi_get_typedarray_info(env, v, &type, len, &p, &ab, &off) != napi_ok || type != napi_float32_array) return false;
  *data = static_cast<float*>(p);
  return true;
}

napi_value newFloat32(napi_env env, size_t n, float** data) {
  napi_value ab, arr;
  void* p;
  if (napi_create_arraybuffer(env, n * sizeof(float), &p, &ab) != napi_ok) return nullptr;
  if (napi_create_typedarray(env, napi_float32_array, n, ab, 0, &arr) != napi_ok) return nullptr;
  std::memset(p, 0, n * sizeof(float));
  *data = static_cast<float*>(p);
  return arr;
}

// The call's first n arguments into argv (undefined past those passed); false with a JS TypeError
// giving the signature when fewer than `required` were passed.
bool arguments(napi_env env, napi_callback_info info, size_t n, size_t required, napi_value* argv, const char* signature) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) {
    napi_throw_error(env, nullptr, "vit_kernels: N-API call failed: napi_get_cb_info");
    return false;
  }
  if (argc < required) {
    napi_throw_type_error(env, nullptr, signature);
    return false;
  }
  return true;
}

// Reads config.<key> as a number; false (with a JS TypeError thrown) when missing or not a number.
bool field(napi_env env, napi_value obj, const char* key, double* out) {
  bool has = false;
  napi_value v;
  napi_valuetype t;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has || napi_get_named_property(env, obj, key, &v) != napi_ok ||
      napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    napi_throw_type_error(env, nullptr, (std::string("vit_kernels: config.") + key + " must be a number").c_str());
    return false;
  }
  napi_get_value_double(env, v, out);
  return true;
}

// Reads config.<key> as one of `names` (the value stored is its index), or `fallback` when absent;
// false (with a JS error thrown) for anything else.
static bool choice(napi_env env, napi_value obj, const char* key, const char* const* names, int n, int32_t fallback, int32_t* out) {
  bool has = false;
  napi_value v;
  napi_valuetype t;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || napi_get_named_property(env, obj, key, &v) != napi_ok ||
      napi_typeof(env, v, &t) != napi_ok)
    return false;
  std::string all;
  for (int i = 0; i < n; i++) all += std::string(i ? ", " : "") + "\"" + names[i] + "\"";
  if (!has || t == napi_undefined) {
    *out = fallback;
    return true;
  }
  char buf[32] = {0};
  size_t len = 0;
  if (t != napi_string || napi_get_value_string_utf8(env, v, buf, sizeof buf, &len) != napi_ok) {
    napi_throw_type_error(env, nullptr, (std::string("vit_kernels: config.") + key + " must be one of " + all).c_str());
    return false;
  }
  for (int i = 0; i < n; i++)
    if (!strcmp(buf, names[i])) {
      *out = i;
      return true;
    }
  napi_throw_range_error(env, nullptr, (std::string("vit_kernels: unknown ") + key + " \"" + buf + "\" (one of " + all + ")").c_str());
  return false;
}

// Reads config.<key> as an integer in [lo, hi], or `fallback` when absent.
static bool int_option(napi_env env, napi_value obj, const char* key, int lo, int hi, int32_t fallback, int32_t* out) {
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok) return false;
  if (!has) {
    *out = fallback;
    return true;
  }
  double v;
  if (!field(env, obj, key, &v)) return false;
  if (!(v >= lo && v <= hi && v == std::floor(v))) {
    napi_throw_range_error(env, nullptr, (std::string("vit_kernels: config.") + key + " must be an integer from " + std::to_string(lo) +
                                          " to " + std::to_string(hi))
                                             .c_str());
    return false;
  }
  *out = (int32_t)v;
  return true;
}

// The ViT options (src/ml/vit/config.ts): names as there (the index of each name is its enum value,
// api.h), completeConfig's defaults when absent, and the sizes they need.
static bool read_options(napi_env env, napi_value obj, Config* c) {
  static const char* const tokenizers[] = {"patch", "conv"};
  static const char* const pools[] = {"cls", "mean", "seq"};
  static const char* const positions[] = {"learned", "sincos", "none"};
  if (!choice(env, obj, "tokenizer", tokenizers, 2, kPatchTokens, &c->tokenizer) || !choice(env, obj, "pool", pools, 3, kPoolCls, &c->pool) ||
      !choice(env, obj, "posEmbedding", positions, 3, kPosLearned, &c->posEmbedding) ||
      !int_option(env, obj, "convLayers", 1, kMaxConvLayers, 2, &c->convLayers) ||
      !int_option(env, obj, "convChannels", 1, 1 << 20, 64, &c->convChannels))
    return false;
  if (c->tokenizer == kConvTokens && c->image % (1 << c->convLayers) != 0) {
    napi_throw_range_error(env, nullptr, ("vit_kernels: a conv tokenizer of " + std::to_string(c->convLayers) + " layers needs imageSize divisible by " +
                                          std::to_string(1 << c->convLayers))
                                             .c_str());
    return false;
  }
  if (c->posEmbedding == kPosSincos && c->dim % 4 != 0) {
    napi_throw_range_error(env, nullptr, "vit_kernels: sin-cos positions need dim divisible by 4");
    return false;
  }
  return true;
}

bool read_config(napi_env env, napi_value obj, Config* c) {
  struct {
    const char* key;
    int32_t* dst;
  } ints[] = {{"batch", &c->batch},   {"imageSize", &c->image}, {"channels", &c->channels}, {"classes", &c->classes},
              {"patchSize", &c->patch}, {"dim", &c->dim},       {"depth", &c->depth},       {"heads", &c->heads},
              {"dimHead", &c->dimHead}, {"mlpDim", &c->mlp}};
  for (auto& f : ints) {
    double v;
    if (!field(env, obj, f.key, &v)) return false;
    if (!(v >= 1 && v == std::floor(v) && v < 1e9)) {
      napi_throw_range_error(env, nullptr, (std::string("vit_kernels: config.") + f.key + " must be a positive integer").c_str());
      return false;
    }
    *f.dst = (int32_t)v;
  }
  double dropout;
  if (!field(env, obj, "dropout", &dropout)) return false;
  c->dropout = (float)dropout;
  napi_value act;
  char buf[16] = {0};
  size_t len = 0;
  if (napi_get_named_property(env, obj, "activation", &act) != napi_ok ||
      napi_get_value_string_utf8(env, act, buf, sizeof buf, &len) != napi_ok) {
    napi_throw_type_error(env, nullptr, "vit_kernels: config.activation must be \"gelu\" or \"gelu_tanh\"");
    return false;
  }
  if (!strcmp(buf, "gelu")) {
    c->activation = kGeluErf;
  } else if (!strcmp(buf, "gelu_tanh")) {
    c->activation = kGeluTanh;
  } else {
    napi_throw_range_error(env, nullptr, (std::string("vit_kernels: unknown activation \"") + buf + "\"").c_str());
    return false;
  }
  if (!read_options(env, obj, c)) return false;
  if (c->tokenizer == kPatchTokens && c->image % c->patch != 0) {
    napi_throw_range_error(env, nullptr, "vit_kernels: patchSize must divide imageSize");
    return false;
  }
  if (c->depth > kMaxDepth) {
    napi_throw_range_error(env, nullptr, ("vit_kernels: depth must be at most " + std::to_string(kMaxDepth)).c_str());
    return false;
  }
  return true;
}


// Reads an array of Float32Arrays; false with a JS TypeError thrown otherwise.
bool export_functions(napi_env env, napi_value exports, const ExportedFn* fns, size_t n) {
  for (size_t i = 0; i < n; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, nullptr, &fn) != napi_ok) return false;
    if (napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok) return false;
  }
  return true;
}

bool float32s(napi_env env, napi_value arr, const char* what, std::vector<float*>* data, std::vector<size_t>* sizes) {
  uint32_t n;
  bool is;
  if (napi_is_array(env, arr, &is) != napi_ok || !is || napi_get_array_length(env, arr, &n) != napi_ok) {
    napi_throw_type_error(env, nullptr, (std::string("vit_kernels: ") + what + " must be an array of Float32Arrays").c_str());
    return false;
  }
  data->resize(n);
  sizes->resize(n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    if (napi_get_element(env, arr, i, &e) != napi_ok || !float32(env, e, &(*data)[i], &(*sizes)[i])) {
      napi_throw_type_error(env, nullptr, (std::string("vit_kernels: ") + what + " must be an array of Float32Arrays").c_str());
      return false;
    }
  }
  return true;
}

void fail(napi_env env, const char* op, const std::string& what) {
  napi_throw_error(env, nullptr, ("vit_kernels." + std::string(op) + ": " + what).c_str());
}
void type_error(napi_env env, const char* op, const std::string& what) {
  napi_throw_type_error(env, nullptr, ("vit_kernels." + std::string(op) + ": " + what).c_str());
}
void range_error(napi_env env, const char* op, const std::string& what) {
  napi_throw_range_error(env, nullptr, ("vit_kernels." + std::string(op) + ": " + what).c_str());
}

bool integer(napi_env env, napi_value v, const char* op, const char* what, double lo, double hi, double* out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_double(env, v, out) != napi_ok || !(*out >= lo) ||
      !(*out <= hi) || *out != std::floor(*out)) {
    range_error(env, op, std::string(what) + " must be an integer in " + std::to_string((long long)lo) + ".." + std::to_string((long long)hi));
    return false;
  }
  return true;
}

bool number(napi_env env, napi_value v, const char* op, const char* what, double* out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_double(env, v, out) != napi_ok || !std::isfinite(*out)) {
    type_error(env, op, std::string(what) + " must be a finite number");
    return false;
  }
  return true;
}

bool input(napi_env env, napi_value v, const char* op, const char* what, size_t n, const float** out) {
  float* p;
  size_t len;
  if (!float32(env, v, &p, &len)) {
    type_error(env, op, std::string(what) + " must be a Float32Array");
    return false;
  }
  if (len != n) {
    range_error(env, op, std::string(what) + " has " + std::to_string(len) + " values, expected " + std::to_string(n));
    return false;
  }
  *out = p;
  return true;
}

napi_value owning_external(napi_env env, void* data, napi_finalize finalize, const napi_type_tag& tag) {
  napi_value ext;
  if (napi_create_external(env, data, finalize, nullptr, &ext) != napi_ok) {
    finalize(env, data, nullptr);
    napi_throw_error(env, nullptr, "vit_kernels: N-API call failed: napi_create_external");
    return nullptr;
  }
  if (napi_type_tag_object(env, ext, &tag) != napi_ok) {
    napi_throw_error(env, nullptr, "vit_kernels: N-API call failed: napi_type_tag_object");
    return nullptr;  // the external still owns data and frees it when collected
  }
  return ext;
}

void* tagged_external(napi_env env, napi_value v, const napi_type_tag& tag, const char* op, const char* maker) {
  napi_valuetype t;
  bool tagged = false;
  void* p = nullptr;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_check_object_type_tag(env, v, &tag, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, v, &p) != napi_ok || !p) {
    type_error(env, op, std::string("the first argument must be a handle from ") + maker);
    return nullptr;
  }
  return p;
}

napi_value boolean(napi_env env, bool b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}
napi_value null(napi_env env) {
  napi_value v;
  napi_get_null(env, &v);
  return v;
}
napi_value str_or_null(napi_env env, const std::string& s) { return s.empty() ? null(env) : str(env, s); }

bool read_optimizer(napi_env env, napi_value obj, const std::string& prefix, bool withStep, OptimizerParams* p) {
  char name[16] = {0};
  size_t len;
  napi_value v;
  napi_valuetype t;
  if (napi_typeof(env, obj, &t) != napi_ok || t != napi_object || napi_get_named_property(env, obj, "name", &v) != napi_ok ||
      napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, nullptr, (prefix + ": settings.name must be a string").c_str());
    return false;
  }
  if (!strcmp(name, "adam")) p->kind = kAdam;
  else if (!strcmp(name, "adamw")) p->kind = kAdamW;
  else if (!strcmp(name, "sgd")) p->kind = kSgd;
  else {
    napi_throw_range_error(env, nullptr, (prefix + ": unknown optimizer \"" + name + "\"").c_str());
    return false;
  }
  double step = 0;
  if ((withStep && !field(env, obj, "lr", &p->lr)) || !field(env, obj, "beta1", &p->beta1) || !field(env, obj, "beta2", &p->beta2) ||
      !field(env, obj, "eps", &p->eps) || !field(env, obj, "weightDecay", &p->weightDecay) || !field(env, obj, "momentum", &p->momentum) ||
      (withStep && !field(env, obj, "step", &step)))
    return false;
  p->step = (int)step;
  return true;
}

bool decays(napi_env env, napi_value v, const char* op, size_t n, const uint8_t** out) {
  napi_typedarray_type type;
  size_t len, off;
  void* data;
  napi_value ab;
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is || napi_get_typedarray_info(env, v, &type, &len, &data, &ab, &off) != napi_ok ||
      type != napi_uint8_array) {
    type_error(env, op, "decays must be a Uint8Array");
    return false;
  }
  if (len != n) {
    range_error(env, op, "decays has " + std::to_string(len) + " values, expected " + std::to_string(n));
    return false;
  }
  *out = static_cast<const uint8_t*>(data);
  return true;
}

}  // namespace napi
}  // namespace tfpipe
