// The device half of the GPU path: the CUDA executor's probe of the device and cuBLASLt, the
// trainer's factory and the per-operation profile. The executor itself is device_exec.cuh; the
// check of cuBLASLt through the row-major mapping is gemm_check.cu.
#include <cuda_runtime.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

#include "checks.h"
#include "device_exec.cuh"

namespace tfpipe {
namespace gpu {

std::mutex g_profileMutex;
std::map<std::string, double> g_profile;

int device_index() {
  const char* e = std::getenv("TFPIPE_CUDA_DEVICE");
  return e && *e ? std::atoi(e) : 0;
}

namespace {

__global__ void probe_kernel(int* out) { *out = 42; }

// The device (a kernel must run on it) and cuBLASLt (it must load and create a handle). Both are
// looked at even when one fails, so that the log says everything that is missing at once.
DeviceInfo probe() {
  DeviceInfo info;
  std::string why;
  const lt::Api* api = lt::load(&why);
  if (api) {
    info.cublasLt = api->path;
    info.cublasLtVersion = api->version;
  } else {
    info.cublasLtError = why;
  }
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  const int dev = device_index();
  cudaDeviceProp p;
  if (e != cudaSuccess) {
    info.error = std::string("no usable CUDA driver or device (") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e) + ")";
  } else if (count == 0 || dev < 0 || dev >= count) {
    info.error = "no CUDA device " + std::to_string(dev) + " (" + std::to_string(count) + " found)";
  } else if ((e = cudaGetDeviceProperties(&p, dev)) != cudaSuccess || (e = cudaSetDevice(dev)) != cudaSuccess) {
    info.error = "CUDA device " + std::to_string(dev) + ": " + cudaGetErrorString(e);
  } else {
    info.name = p.name;
    info.ccMajor = p.major;
    info.ccMinor = p.minor;
    info.sms = p.multiProcessorCount;
    info.memory = p.totalGlobalMem;
    cudaDriverGetVersion(&info.driver);
    cudaRuntimeGetVersion(&info.runtime);
    // A launch proves that this build holds code the device runs (it fails on a too-old GPU).
    int* d = nullptr;
    int got = 0;
    if ((e = cudaMalloc(&d, sizeof(int))) == cudaSuccess) {
      probe_kernel<<<1, 1>>>(d);
      e = cudaGetLastError();
      if (e == cudaSuccess) e = cudaMemcpy(&got, d, sizeof(int), cudaMemcpyDeviceToHost);
      cudaFree(d);
    }
    if (e != cudaSuccess || got != 42)
      info.error = "cannot run a kernel on " + info.name + " (compute capability " + std::to_string(p.major) + "." + std::to_string(p.minor) +
                   "): " + (e != cudaSuccess ? cudaGetErrorString(e) : "wrong result");
  }
  if (info.error.empty() && api) {
    lt::Handle h = nullptr;
    const lt::Status s = api->create(&h);
    if (s == 0) api->destroy(h);
    else info.cublasLtError = "cublasLtCreate failed (" + std::string(lt::status_name(s)) + ") with " + api->path;
  }
  info.ok = info.error.empty() && info.cublasLtError.empty();
  if (info.error.empty()) info.error = info.cublasLtError;
  return info;
}

}  // namespace

const DeviceInfo& device_info() {
  static std::once_flag once;
  static DeviceInfo info;
  std::call_once(once, [] { info = probe(); });
  return info;
}

Trainer* new_device_trainer(const Config& c, Precision p) { return new Model<DeviceExec>(c, p); }

std::map<std::string, double> device_profile_take() {
  std::lock_guard<std::mutex> lock(g_profileMutex);
  std::map<std::string, double> out;
  out.swap(g_profile);
  return out;
}

}  // namespace gpu
}  // namespace tfpipe
