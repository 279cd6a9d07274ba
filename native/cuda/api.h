// The GPU model as the N-API glue (native/src/addon_gpu.cc) and the standalone bench see it: a
// ViT whose weights, gradients, optimizer state and activations stay in one executor's memory
// between steps. Batches go in, metrics come out; weights come out only when asked (checkpoints).
// Plain C++: no CUDA header is needed to call it, and a build without nvcc still links (the
// device executor then reports why it is missing).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "../src/api.h"
#include "../src/optimizer.h"

namespace tfpipe {
namespace gpu {

// How the matrix products treat their fp32 inputs: fp32 exactly, TF32 tensor cores, or bf16
// tensor cores (inputs rounded to bf16, products accumulated in fp32). Everything else (layer
// norms, softmax, GELU, loss, optimizer, the weights themselves) stays fp32 in every mode.
enum Precision : int32_t { kFp32 = 0, kTf32 = 1, kBf16 = 2 };
const char* precision_name(Precision p);
// False for an unknown name.
bool parse_precision(const char* name, Precision* out);

// The CUDA device and cuBLASLt, probed once per process (device 0, or TFPIPE_CUDA_DEVICE).
struct DeviceInfo {
  bool ok = false;
  std::string error;  // why not, when !ok (the device's problem first, else cuBLASLt's)
  std::string name;   // e.g. "NVIDIA H200"
  int ccMajor = 0, ccMinor = 0, sms = 0;
  int driver = 0, runtime = 0;  // CUDA versions, 13000 = 13.0
  size_t memory = 0;            // bytes
  std::string cublasLt;         // the library file loaded
  size_t cublasLtVersion = 0;   // cublasLtGetVersion(), 130100 = 13.1.0
  std::string cublasLtError;    // why cuBLASLt did not load or start (where it looked)
};
const DeviceInfo& device_info();

struct StepResult {
  double loss;
  int correct;
  double gradNorm;  // global L2 norm before clipping
};

// A ViT resident on one executor. Arrays passed in or out are in layout order (api.h), each of
// the size the layout gives. Methods throw std::runtime_error with the failing operation named.
class Trainer {
 public:
  virtual ~Trainer() {}
  virtual void set_weights(const float* const* W) = 0;
  virtual void get_weights(float* const* W) = 0;
  // The gradients of the last step (clipped when it clipped).
  virtual void get_grads(float* const* G) = 0;
  // The optimizer's constant settings (all but lr and step) and which weights decay; zeroes the
  // state. Must come before update().
  virtual void set_optimizer(const OptimizerParams& p, const uint8_t* decays) = 0;
  // Optimizer state as OptimizerState.slots: per weight [m, v] (Adam, AdamW) or [buffer] (SGD).
  virtual void set_slots(const float* const* slots) = 0;
  virtual void get_slots(float* const* slots) = 0;
  // Forward, loss, backward and clipping (clipNorm 0: none) of a batch of at most maxBatch()
  // images [B, H, W, C] against soft targets [B, classes]; the gradients stay resident.
  virtual StepResult step(int batch, const float* images, const float* targets, const DropoutSpec& drop, double clipNorm) = 0;
  // One optimizer update with the last step's gradients; step counts from 1.
  virtual void update(double lr, int step) = 0;
  // Eval-mode logits [n, classes] of any number of images, and the post-softmax attention
  // [depth, n, heads, T, T] when attention is not null.
  virtual void forward(int n, const float* images, float* logits, float* attention) = 0;
  virtual int maxBatch() const = 0;
  // Waits until everything asked of the executor has run (the update is asynchronous).
  virtual void sync() = 0;
};

// Where a trainer runs: on the GPU; on this CPU's host executor, the same model code with plain
// loops instead of kernels and a reference GEMM instead of cuBLASLt (one lane per warp); or on
// the host with the GPU's lanes emulated, one OS thread per lane (32 per warp, their shuffles and
// barriers too), so that the lane arithmetic the GPU runs is checked without a GPU. The host
// executors are slow: for small test models only.
enum Executor : int32_t { kDevice = 0, kHost = 1, kHostSimt = 2 };
const char* executor_name(Executor e);

// Why this model cannot take c, or null: it implements the default ViT options only.
const char* unsupported(const Config& c);

// A trainer for c (c.batch = the largest batch a step takes); throws std::runtime_error with
// unsupported(c) for a config it does not implement.
Trainer* new_trainer(const Config& c, Precision p, Executor e);

// The executors' factories (host_exec.cc; device_exec.cu or, without nvcc, no_device.cc).
Trainer* new_host_trainer(const Config& c, Precision p, bool simt);
Trainer* new_device_trainer(const Config& c, Precision p);

}  // namespace gpu
}  // namespace tfpipe
