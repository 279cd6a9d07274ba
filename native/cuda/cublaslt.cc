// Finding and loading cuBLASLt (cublaslt.h). ldconfig rarely knows it: CUDA toolkits keep it
// under /usr/local/cuda*/, PyTorch's pip wheels under site-packages/nvidia/cu13/lib. The loader
// tries TFPIPE_CUBLASLT, then the dynamic linker's search (LD_LIBRARY_PATH, ldconfig), then
// those folders.
#include "cublaslt.h"

#include <dlfcn.h>
#include <glob.h>

#include <mutex>
#include <vector>

namespace tfpipe {
namespace gpu {
namespace lt {
namespace {

std::vector<std::string> candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("TFPIPE_CUBLASLT")) {
    if (*env) out.push_back(env);
    return out;  // named explicitly: nothing else
  }
  for (const char* name : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}) out.push_back(name);
  const char* patterns[] = {
      "/usr/local/cuda/lib64/libcublasLt.so.1[23]",
      "/usr/local/cuda/targets/*/lib/libcublasLt.so.1[23]",
      "/usr/local/cuda-1[23]*/targets/*/lib/libcublasLt.so.1[23]",
      "/usr/lib/*-linux-gnu/libcublasLt.so.1[23]",
      "/opt/*/.venv/lib/python3*/site-packages/nvidia/cu1[23]/lib/libcublasLt.so.1[23]",
      "/opt/*/lib/python3*/site-packages/nvidia/cu1[23]/lib/libcublasLt.so.1[23]",
      "/usr/local/lib/python3*/dist-packages/nvidia/cu1[23]/lib/libcublasLt.so.1[23]",
      "/usr/local/lib/python3*/dist-packages/nvidia/cublas/lib/libcublasLt.so.1[23]",
  };
  for (const char* p : patterns) {
    glob_t g;
    if (glob(p, 0, nullptr, &g) == 0)
      for (size_t i = 0; i < g.gl_pathc; i++) out.push_back(g.gl_pathv[i]);
    globfree(&g);
  }
  return out;
}

template <class F>
bool sym(void* lib, const char* name, F* out, std::string* missing) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  if (!*out) *missing = name;
  return *out != nullptr;
}

bool open(const std::string& path, Api* api, std::string* why) {
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* e = dlerror();
    *why = e ? e : "dlopen failed";
    return false;
  }
  size_t (*version)() = nullptr;
  std::string missing;
  const bool ok = sym(lib, "cublasLtGetVersion", &version, &missing) && sym(lib, "cublasLtCreate", &api->create, &missing) &&
                  sym(lib, "cublasLtDestroy", &api->destroy, &missing) && sym(lib, "cublasLtMatmulDescCreate", &api->descCreate, &missing) &&
                  sym(lib, "cublasLtMatmulDescDestroy", &api->descDestroy, &missing) &&
                  sym(lib, "cublasLtMatmulDescSetAttribute", &api->descSet, &missing) &&
                  sym(lib, "cublasLtMatrixLayoutCreate", &api->layoutCreate, &missing) &&
                  sym(lib, "cublasLtMatrixLayoutDestroy", &api->layoutDestroy, &missing) &&
                  sym(lib, "cublasLtMatrixLayoutSetAttribute", &api->layoutSet, &missing) &&
                  sym(lib, "cublasLtMatmulPreferenceCreate", &api->prefCreate, &missing) &&
                  sym(lib, "cublasLtMatmulPreferenceDestroy", &api->prefDestroy, &missing) &&
                  sym(lib, "cublasLtMatmulPreferenceSetAttribute", &api->prefSet, &missing) &&
                  sym(lib, "cublasLtMatmulAlgoGetHeuristic", &api->heuristic, &missing) && sym(lib, "cublasLtMatmul", &api->matmul, &missing);
  if (!ok) {
    *why = "no symbol " + missing;
    dlclose(lib);
    return false;
  }
  api->version = version();
  if (api->version < 120000) {
    *why = "version " + std::to_string(api->version) + " is older than 12.0";
    dlclose(lib);
    return false;
  }
  char resolved[4096] = {0};
  api->path = path;
  if (path.find('/') == std::string::npos && dlinfo(lib, RTLD_DI_ORIGIN, resolved) == 0) api->path = std::string(resolved) + "/" + path;
  return true;  // the library stays loaded for the process's life
}

}  // namespace

const Api* load(std::string* error) {
  static std::once_flag once;
  static Api api;
  static const Api* loaded = nullptr;
  static std::string failure;
  std::call_once(once, [] {
    std::string tried;
    for (const std::string& path : candidates()) {
      std::string why;
      if (open(path, &api, &why)) {
        loaded = &api;
        return;
      }
      tried += (tried.empty() ? "" : "; ") + path + ": " + why;
    }
    failure = "cuBLASLt not found (set TFPIPE_CUBLASLT to libcublasLt.so.13); tried " + (tried.empty() ? std::string("nothing") : tried);
  });
  if (!loaded && error) *error = failure;
  return loaded;
}

const char* status_name(Status s) {
  switch (s) {
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_(unknown)";
  }
}

}  // namespace lt
}  // namespace gpu
}  // namespace tfpipe
