// Softmax cross-entropy against soft targets (api.h); scalar double arithmetic, compiled once.
#include <cmath>
#include <cstring>

#include "api.h"

namespace tfpipe {

void softmax_cross_entropy(int B, int K, const float* logits, const float* targets, double* loss, int* correct, float* dlogits) {
  std::memset(dlogits, 0, (size_t)B * K * sizeof(float));
  double total = 0;
  int right = 0;
  for (int b = 0; b < B; b++) {
    const float* l = logits + (size_t)b * K;
    const float* t = targets + (size_t)b * K;
    float m = l[0];
    int am = 0, at = 0;
    for (int i = 1; i < K; i++) {
      if (l[i] > m) {
        m = l[i];
        am = i;
      }
      if (t[i] > t[at]) at = i;
    }
    double s = 0;
    for (int i = 0; i < K; i++) s += std::exp((double)(l[i] - m));
    double lse = m + std::log(s);
    for (int i = 0; i < K; i++) {
      total -= t[i] * (l[i] - lse);
      dlogits[(size_t)b * K + i] = (float)((std::exp(l[i] - lse) - t[i]) / B);
    }
    if (am == at) right++;
  }
  *loss = total / B;
  *correct = right;
}

}  // namespace tfpipe
