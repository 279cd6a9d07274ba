// The multiply-add throughput of one thread with this variant's vectors: the ceiling the GEMMs aim
// at, which the standalone bench prints beside their speed (native/bench_main.cc). Not part of the
// model; included by model.cc, which hands it out with the variant's kernels.
#pragma once
#include "isa.h"

namespace tfpipe {
namespace TFPIPE_ISA {

// Independent multiply-add chains in registers, enough to cover the FMA latency on every ISA here.
inline double peak_gflops(double seconds) {
  constexpr int kChains = 12;
  vf acc[kChains];
  for (int i = 0; i < kChains; i++) acc[i] = splat(1e-3f * (i + 1));
  const vf m = splat(0.999f), a = splat(1e-4f);
  const double t0 = wall_seconds();
  double t = t0;
  long rounds = 0;
  while (t - t0 < seconds) {
    for (int r = 0; r < 100000; r++) {
      for (int i = 0; i < kChains; i++) acc[i] = acc[i] * m + a;
    }
    rounds += 100000;
    t = wall_seconds();
  }
  float sink = 0;
  for (int i = 0; i < kChains; i++) sink += acc[i][0];
  volatile float keep = sink;
  (void)keep;
  return rounds * (double)kChains * kLanes * 2 / (t - t0) / 1e9;
}

}  // namespace TFPIPE_ISA
}  // namespace tfpipe
