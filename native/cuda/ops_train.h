// The training-only arithmetic of the GPU model: loss, deterministic column sums (bias, norm and
// position gradients), gradient clipping and the optimizers. Functors as in ops.h; every sum is
// taken in a fixed order of fixed pieces, so a step gives the same bits every time it runs.
#pragma once
#include "ops.h"

namespace tfpipe {
namespace gpu {

// Mean softmax cross-entropy against soft targets, one sample per call, in double as
// native/src/loss.cc: loss[b], right[b] (argmax of logits == argmax of targets) and dlogits =
// (softmax - t) / B.
struct CrossEntropy {
  const float *logits, *targets;
  float* dlogits;
  double* loss;
  int* right;
  int C, B;
  TFP_HD void operator()(size_t b) const {
    const float* l = logits + b * C;
    const float* t = targets + b * C;
    float m = l[0];
    int am = 0, at = 0;
    for (int i = 1; i < C; i++) {
      if (l[i] > m) {
        m = l[i];
        am = i;
      }
      if (t[i] > t[at]) at = i;
    }
    double s = 0;
    for (int i = 0; i < C; i++) s += exp((double)(l[i] - m));
    const double lse = m + log(s);
    double total = 0;
    for (int i = 0; i < C; i++) {
      total -= t[i] * (l[i] - lse);
      dlogits[b * C + i] = (float)((exp(l[i] - lse) - t[i]) / B);
    }
    loss[b] = total;
    right[b] = am == at;
  }
};

// One thread: the batch's mean loss and correct count, summed in sample order.
struct LossTotal {
  const double* loss;
  const int* right;
  Scalars* s;
  int B;
  TFP_HD void operator()(size_t) const {
    double total = 0;
    int n = 0;
    for (int b = 0; b < B; b++) {
      total += loss[b];
      n += right[b];
    }
    s->loss = total / B;
    s->correct = n;
  }
};

// Column sums over rows (bias, norm and position gradients) in two passes, so that thousands of
// threads share the rows: partial sums over fixed chunks of kColChunk rows (one thread per chunk
// and column: a warp reads consecutive columns of a row), then the chunks' sums in order. The
// partial pass is also where an elementwise step that feeds the sum runs (dropout, GELU), so the
// data is read once.
constexpr int kColChunk = 64;

inline size_t col_chunks(size_t rows) { return (rows + kColChunk - 1) / kColChunk; }

TFP_HD void chunk_rows(size_t k, size_t rows, size_t* r0, size_t* r1) {
  *r0 = k * kColChunk;
  *r1 = *r0 + kColChunk < rows ? *r0 + kColChunk : rows;
}

// part[k][c] = the sum over chunk k of value(e), e = r cols + c, each value also written to out
// (when out has somewhere to write): the elementwise step that feeds a bias gradient, and the sum.
template <class Value>
struct ColPartial {
  Value value;
  Out out;
  float* part;
  size_t rows;
  int cols;
  TFP_HD void operator()(size_t i) const {
    const int c = (int)(i % cols);
    size_t r0, r1;
    chunk_rows(i / cols, rows, &r0, &r1);
    float s = 0.f;
    TFP_UNROLL
    for (size_t r = r0; r < r1; r++) {
      const size_t e = r * cols + c;
      const float v = value(e);
      out.put(e, v);
      s += v;
    }
    part[i] = s;
  }
};

// The values: an array as it is, behind dropout (in x mask), and back through the MLP's hidden
// dropout and GELU (dh x mask x gelu'(h)).
struct Read {
  const float* a;
  TFP_HD float operator()(size_t e) const { return a[e]; }
};
struct Dropped {
  const float* in;
  Drop drop;
  TFP_HD float operator()(size_t e) const { return in[e] * drop(e); }
};
struct GeluBack {
  const float *dh, *hgrad;
  Drop drop;
  TFP_HD float operator()(size_t e) const { return dh[e] * drop(e) * hgrad[e]; }
};

// A layer norm's gain and bias gradients: part[k][c] = sum dy xhat, part[k][cols + c] = sum dy.
struct NormPartial {
  const float *dy, *xhat;
  float* part;
  size_t rows;
  int cols;
  TFP_HD void operator()(size_t i) const {
    const size_t k = i / cols;
    const int c = (int)(i % cols);
    size_t r0, r1;
    chunk_rows(k, rows, &r0, &r1);
    float g = 0.f, b = 0.f;
    TFP_UNROLL
    for (size_t r = r0; r < r1; r++) {
      const float d = dy[r * cols + c];
      g += d * xhat[r * cols + c];
      b += d;
    }
    part[k * 2 * cols + c] = g;
    part[k * 2 * cols + cols + c] = b;
  }
};

// out[c] (c < cols) = sum over chunks of part[k][c]; with out2, part rows are 2 cols wide and
// out2[c] gets the second half's sums.
struct ColFinal {
  const float* part;
  float *out, *out2;
  size_t chunks;
  int cols;
  TFP_HD void operator()(size_t c) const {
    const int width = out2 ? 2 * cols : cols;
    const size_t col = c % cols;
    float s = 0.f;
    for (size_t k = 0; k < chunks; k++) s += part[k * width + c];
    (c < (size_t)cols ? out : out2)[col] = s;
  }
};

// dst[i] = src[i].
struct Copy {
  const float* src;
  float* dst;
  TFP_HD void operator()(size_t i) const { dst[i] = src[i]; }
};

// The patch tokens' rows of x [B, T, D] as one matrix [B N, D].
struct GatherPatches {
  const float* x;
  Out out;
  int N, T, D;
  TFP_HD void operator()(size_t i) const {
    const size_t bp = i / D;
    const int d = (int)(i % D);
    const size_t b = bp / N, p = bp % N;
    out.put(i, x[(b * T + 1 + p) * D + d]);
  }
};

// Scales every gradient so that their global L2 norm is at most clipNorm (api.h's rule).
struct Clip {
  float* g;
  const Scalars* s;
  TFP_HD void operator()(size_t i) const {
    const double norm = sqrt(s->gradSq);
    if (s->clipNorm > 0 && norm > s->clipNorm) g[i] *= (float)(s->clipNorm / (norm + 1e-6));
  }
};

// Adam and AdamW (native/src/optimizer.cc, torch semantics): Adam adds wd w to g, AdamW shrinks w
// by 1 - lr wd; both only for weights whose decay flag is set. Rounded step by step as the CPU
// rounds (mul_rn, add_rn): the same gradients give the same weights, bit for bit.
struct AdamStep {
  float *w, *m, *v;
  bf16* w16;  // the weights' bf16 copy, when the products take bf16
  const float* g;
  const uint8_t* decay;
  const Scalars* s;
  float b1, b2, ob1, ob2, eps, wd;
  bool coupled;  // Adam (true) or AdamW (false)
  TFP_HD void operator()(size_t i) const {
    const bool dec = decay[i] && wd > 0;
    const float shrink = dec ? s->shrink : 1.f;
    const float gi = dec && coupled ? add_rn(g[i], mul_rn(w[i], wd)) : g[i];
    const float m1 = add_rn(mul_rn(m[i], b1), mul_rn(gi, ob1));
    const float v1 = add_rn(mul_rn(v[i], b2), mul_rn(mul_rn(gi, gi), ob2));
    m[i] = m1;
    v[i] = v1;
    const float mhat = m1 / s->bc1, vhat = v1 / s->bc2;
    const float next = add_rn(mul_rn(w[i], shrink), -mul_rn(mhat / add_rn(sqrtf(vhat), eps), s->lr));
    w[i] = next;
    if (w16) w16[i] = to_bf16(next);
  }
};

// SGD with momentum (coupled weight decay), torch semantics: the buffer starts as the first
// gradient.
struct SgdStep {
  float *w, *buf;
  bf16* w16;
  const float* g;
  const uint8_t* decay;
  const Scalars* s;
  float momentum, wd;
  TFP_HD void operator()(size_t i) const {
    const bool dec = decay[i] && wd > 0;
    const float gi = dec ? add_rn(g[i], mul_rn(w[i], wd)) : g[i];
    float next = gi;
    if (momentum > 0) {
      next = s->step == 1 ? gi : add_rn(mul_rn(buf[i], momentum), gi);
      buf[i] = next;
    }
    const float updated = add_rn(w[i], -mul_rn(next, s->lr));
    w[i] = updated;
    if (w16) w16[i] = to_bf16(updated);
  }
};

}  // namespace gpu
}  // namespace tfpipe
