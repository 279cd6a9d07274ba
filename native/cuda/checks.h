// Checks of the device executor that the standalone bench runs on a GPU (gpu_bench.cc).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "api.h"

namespace tfpipe {
namespace gpu {

struct GemmCheck {
  std::string label;
  double maxRelErr;  // against host_gemm in fp32, relative to the largest reference value
};

// cuBLASLt through the executor's row-major mapping (every transpose pair, batched, beta 1,
// padded strides) against the host reference.
std::vector<GemmCheck> device_gemm_checks(Precision p);

// GPU milliseconds per operation name since the last call (TFPIPE_CUDA_PROFILE=1), then reset.
std::map<std::string, double> device_profile_take();

}  // namespace gpu
}  // namespace tfpipe
