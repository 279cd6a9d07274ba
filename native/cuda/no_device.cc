// The device half of the GPU path in a build made without nvcc: it says so, and everything else
// (the host executor, the CPU kernels) works as usual.
#include <stdexcept>

#include "api.h"
#include "checks.h"

namespace tfpipe {
namespace gpu {

namespace {
const char* const kWhy = "this build has no CUDA kernels (nvcc was not found when native/ was built)";
}

const DeviceInfo& device_info() {
  static DeviceInfo info = [] {
    DeviceInfo i;
    i.error = kWhy;
    return i;
  }();
  return info;
}

Trainer* new_device_trainer(const Config&, Precision) { throw std::runtime_error(kWhy); }

std::vector<GemmCheck> device_gemm_checks(Precision) { throw std::runtime_error(kWhy); }

std::map<std::string, double> device_profile_take() { return {}; }

}  // namespace gpu
}  // namespace tfpipe
