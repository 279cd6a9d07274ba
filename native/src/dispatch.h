// Which kernel variants this build holds and which this CPU can run (baseline translation units
// only).
#pragma once
#include <string>
#include <vector>

#include "api.h"

namespace tfpipe {

struct Variant {
  const char* name;
  const Kernels* kernels;
  bool supported;        // this CPU (and OS) can run it
  const char* requires;  // what the CPU must report, for messages
};

// Every variant linked into this build, best first.
const std::vector<Variant>& variants();

// The variant named `forced` (from TFPIPE_NATIVE_ISA; null, "" or "auto" = the best this CPU
// runs). Returns null and sets *error when the name is unknown, not built or not runnable here.
const Kernels* select_kernels(const char* forced, std::string* error);

// The CPU's brand string and family/model, e.g. "AMD EPYC 9R14 (family 25, model 17)".
std::string cpu_model();

// The CPU features the dispatch looks at that this CPU has, e.g. "avx512f avx512bw ... fma".
std::string cpu_features();

}  // namespace tfpipe
