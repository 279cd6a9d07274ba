// The weight gradients of a block (and of the embedding), scheduled across the threads. Every
// weight gradient sums over all R rows of the batch; the work is cut into units that each own some
// output elements (a strip of a GEMM's dW, a cache line of a layer norm's gain and bias, a token's
// position embedding) and sum over the rows in order 0..R-1, so neither the thread count nor the way
// the units are shared out changes the rounding. Included by model.cc inside its variant's
// namespace; compiled once per variant.
#pragma once
#include <math.h>

#include "gemm.h"

namespace tfpipe {
namespace TFPIPE_ISA {

struct DwJob {
  enum Kind { kGemm, kNorm, kPos } kind;
  int R;
  // kGemm: dW[I, O] (ldw) += X[R, I]^T DY[R, O]; db[O] += column sums of DY (optional).
  // kNorm: dW = gain gradient sum(DY * X), db = bias gradient sum(DY), over columns [0, O).
  // kPos:  DY = [B, T, O] input gradient of the tokens; dW[T, O] += sum over B (learned positions,
  //        optional); db (class token, optional) += t = 0's.
  int I, O;
  const float *X, *DY;
  int ldx, ldy;
  float* dW;
  int ldw;
  float* db;
  int T;

  // Columns per kNorm unit: a cache line.
  static constexpr int kNormCols = 16;
  int units() const {
    if (kind == kGemm) return dw_strip_count(I);
    if (kind == kNorm) return (O + kNormCols - 1) / kNormCols;
    return dW ? T : 1;
  }
  // Multiply-adds per unit (a kNorm unit reads two floats per multiply-add: weigh it double).
  double unit_cost() const {
    if (kind == kGemm) return (double)R * kMR * O;
    if (kind == kNorm) return 4.0 * R * kNormCols;
    return (double)R / T * O;
  }

  void run(int u0, int u1, float* pack) const {
    if (kind == kGemm) {
      dw_strips(R, I, O, X, ldx, DY, ldy, dW, ldw, u0 == 0 ? db : nullptr, u0, u1, pack);
    } else if (kind == kNorm) {
      for (int c0 = u0 * kNormCols; c0 < imin(O, u1 * kNormCols); c0 += kLanes) {
        const int n = imin(kLanes, O - c0);
        vf g = load_n(dW + c0, n), b = load_n(db + c0, n);
        for (int r = 0; r < R; r++) {
          const vf dy = load_n(DY + (size_t)r * ldy + c0, n);
          g += dy * load_n(X + (size_t)r * ldx + c0, n);
          b += dy;
        }
        store_n(dW + c0, g, n);
        store_n(db + c0, b, n);
      }
    } else {
      const int B = R / T;
      for (int t = u0; t < u1; t++)
        for (int c0 = 0; c0 < O; c0 += kLanes) {
          const int n = imin(kLanes, O - c0);
          vf s{};
          for (int b = 0; b < B; b++) s += load_n(DY + ((size_t)b * T + t) * ldy + c0, n);
          if (dW) store_n(dW + (size_t)t * ldw + c0, load_n(dW + (size_t)t * ldw + c0, n) + s, n);
          if (t == 0 && db) store_n(db + c0, load_n(db + c0, n) + s, n);
        }
    }
  }
};

inline DwJob gemm_job(int R, int I, int O, const float* X, const float* DY, int ldy, float* dW, float* db) {
  return {DwJob::kGemm, R, I, O, X, DY, I, ldy, dW, O, db, 0};
}
inline DwJob norm_job(int R, int D, const float* xhat, const float* dy, float* dg, float* db) {
  return {DwJob::kNorm, R, 0, D, xhat, dy, D, D, dg, D, db, 0};
}

// Runs the jobs' units across the threads: the units, in job order, are cut into one contiguous
// share per thread of about equal cost. A unit's result does not depend on the share it lands in.
// The threads' packing buffers come from workspace slot `packSlot`.
inline void run_dw_jobs(Workspace* ws, int packSlot, const DwJob* jobs, int n) {
  double total = 0;
  for (int j = 0; j < n; j++) total += jobs[j].units() * jobs[j].unit_cost();
  const int shares = imax(1, get_threads());
  size_t per = 0;
  for (int j = 0; j < n; j++) per = per > dw_pack_floats(jobs[j].I, jobs[j].O) ? per : dw_pack_floats(jobs[j].I, jobs[j].O);
  float* pack = workspace_take(ws, packSlot, per * parallel_chunk_count(shares, 1));
  parallel_for_chunk(shares, [&](int chunk, int c0, int c1) {
    for (int c = c0; c < c1; c++) {
      const double lo = total * c / shares, hi = total * (c + 1) / shares;
      double start = 0;
      for (int j = 0; j < n; j++) {
        const DwJob& job = jobs[j];
        const double w = job.unit_cost();
        const int units = job.units();
        // Unit u belongs to the share holding its midpoint start + (u + 0.5) w.
        const int u0 = imax(0, imin(units, (int)ceil((lo - start) / w - 0.5)));
        const int u1 = imax(0, imin(units, (int)ceil((hi - start) / w - 0.5)));
        if (u0 < u1) job.run(u0, u1, pack + per * chunk);
        start += units * w;
      }
    }
  });
}

}  // namespace TFPIPE_ISA
}  // namespace tfpipe
