// cuBLASLt, loaded at run time with dlopen: our own declarations of the few calls and enum values
// the GPU model uses (values as in cuBLAS 12 and 13's cublasLt.h and cublas_api.h), so that no
// cuBLAS header or library is needed to build and the library can live anywhere (pip wheels of
// nvidia-cublas, a CUDA toolkit). TFPIPE_CUBLASLT names the file to load.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tfpipe {
namespace gpu {
namespace lt {

typedef int Status;  // cublasStatus_t: 0 = CUBLAS_STATUS_SUCCESS
typedef void* Handle;
typedef void* MatmulDesc;
typedef void* Layout;
typedef void* Preference;

enum : int { kOpN = 0, kOpT = 1 };                                           // cublasOperation_t
enum : int { kCompute32F = 68, kCompute32FFastTF32 = 77 };                     // cublasComputeType_t
enum : int { kR32F = 0, kR16BF = 14 };                                        // cudaDataType_t CUDA_R_32F, CUDA_R_16BF
enum : int { kDescTransA = 3, kDescTransB = 4 };                              // cublasLtMatmulDescAttributes_t (int32)
enum : int { kLayoutBatchCount = 5, kLayoutBatchStride = 6 };                 // cublasLtMatrixLayoutAttribute_t (int32, int64)
enum : int { kPrefMaxWorkspace = 1, kPrefAlignA = 5, kPrefAlignB = 6, kPrefAlignC = 7, kPrefAlignD = 8 };  // (uint64, uint32 x4)

struct Algo {
  uint64_t data[8];
};
struct HeuristicResult {
  Algo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};

struct Api {
  std::string path;
  size_t version = 0;
  Status (*create)(Handle*);
  Status (*destroy)(Handle);
  Status (*descCreate)(MatmulDesc*, int computeType, int scaleType);
  Status (*descDestroy)(MatmulDesc);
  Status (*descSet)(MatmulDesc, int attr, const void* buf, size_t size);
  Status (*layoutCreate)(Layout*, int type, uint64_t rows, uint64_t cols, int64_t ld);
  Status (*layoutDestroy)(Layout);
  Status (*layoutSet)(Layout, int attr, const void* buf, size_t size);
  Status (*prefCreate)(Preference*);
  Status (*prefDestroy)(Preference);
  Status (*prefSet)(Preference, int attr, const void* buf, size_t size);
  Status (*heuristic)(Handle, MatmulDesc, Layout A, Layout B, Layout C, Layout D, Preference, int requested, HeuristicResult* results,
                      int* returned);
  Status (*matmul)(Handle, MatmulDesc, const void* alpha, const void* A, Layout, const void* B, Layout, const void* beta, const void* C,
                   Layout, void* D, Layout, const Algo* algo, void* workspace, size_t workspaceBytes, void* stream);
};

// The library, loaded once: null with *error saying where it looked and why each failed.
const Api* load(std::string* error);

const char* status_name(Status s);

}  // namespace lt
}  // namespace gpu
}  // namespace tfpipe
