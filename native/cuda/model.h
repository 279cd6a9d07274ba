// The ViT's training step and eval forward pass for the GPU path, written once over an executor X
// that supplies memory, element and row launches (ops.h), matrix products (gemm.h) and a sum of
// squares. device_exec.cu instantiates it with CUDA kernels and cuBLASLt, host_exec.cc with plain
// loops (tests without a GPU). Same model, dropout sites and numbering as native/src/model.cc.
//
// Layout on the executor: every weight in one flat buffer (each array at a 256-byte boundary),
// gradients and optimizer slots in buffers of the same layout, so clipping and the update are one
// pass each. Each block keeps what its backward reads; the rest is scratch shared by all blocks.
// Attention runs one (sample, head) per GPU block (ops_attention.h), kAttentionWarps warps each.
#pragma once
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "api.h"
#include "gemm.h"
#include "ops_attention.h"
#include "ops_train.h"

namespace tfpipe {
namespace gpu {

constexpr int kAttentionWarps = 8;

template <class X>
class Model final : public Trainer {
 public:
  Model(const Config& c, Precision p) : ex_(p), c_(c), ix_(param_index(c)), half_(p == kBf16) {
    if (c.image % c.patch) throw std::runtime_error("patch must divide image");
    grid_ = c.image / c.patch;
    N_ = grid_ * grid_;
    T_ = N_ + 1;
    Tp_ = (T_ + 3) / 4 * 4;
    B_ = c.batch;
    D_ = c.dim;
    PD_ = c.channels * c.patch * c.patch;
    H_ = c.heads;
    dh_ = c.dimHead;
    IN_ = H_ * dh_;
    M_ = c.mlp;
    C_ = c.classes;
    size_t at = 0;
    for (int i = 0; i < param_count(c); i++) {
      off_.push_back(at);
      len_.push_back(param_size(c, i));
      at += (len_.back() + 63) / 64 * 64;
    }
    P_ = at;
    W_ = f(P_);
    G_ = f(P_);
    S1_ = f(P_);
    S2_ = f(P_);
    W16_ = half_ ? h(P_) : nullptr;
    decay_ = (uint8_t*)ex_.alloc(P_);
    sc_ = (Scalars*)ex_.alloc(sizeof(Scalars));
    std::memset(&host_, 0, sizeof host_);
    const size_t R = (size_t)B_ * T_, RI = R * IN_, BHT = (size_t)B_ * H_ * T_ * Tp_;
    img_ = f((size_t)B_ * c.image * c.image * c.channels);
    tgt_ = f((size_t)B_ * C_);
    patches_ = act((size_t)B_ * N_ * PD_);
    x_ = f(R * D_);
    tmp_ = f(R * D_);
    hid_ = f(R * M_);
    for (int l = 0; l < c.depth; l++) {
      Blk k;
      k.xhat1 = f(R * D_), k.rstd1 = f(R), k.y1 = act(R * D_), k.qkv = f(3 * RI), k.P = f(BHT);
      k.o = act(RI), k.xhat2 = f(R * D_), k.rstd2 = f(R), k.y2 = act(R * D_), k.hgrad = f(R * M_), k.g = act(R * M_);
      blk_.push_back(k);
    }
    hxhat_ = f((size_t)B_ * D_), hrstd_ = f(B_), hy_ = f((size_t)B_ * D_), logits_ = f((size_t)B_ * C_);
    dlogits_ = f((size_t)B_ * C_), dhy_ = f((size_t)B_ * D_);
    lossRow_ = (double*)ex_.alloc(sizeof(double) * B_);
    right_ = (int*)ex_.alloc(sizeof(int) * B_);
    dx_ = f(R * D_), dx16_ = half_ ? h(R * D_) : nullptr, dr_ = act(R * D_), dy_ = f(R * D_), dO_ = f(RI);
    // The attention backward keeps dS and the dropped P in shared memory when they fit, else here.
    staged_ = AttentionBwd::smem_floats(T_, dh_, Tp_, true) * sizeof(float) <= ex_.max_smem();
    attnScratch_ = staged_ ? nullptr : f(2 * BHT);
    dhid_ = act(R * M_), dqkv_ = act(3 * RI), demb_ = act((size_t)B_ * N_ * D_, true);
    const size_t widest = (size_t)(2 * D_ > M_ ? 2 * D_ : M_);
    size_t part = col_chunks(R) * widest;
    if (col_chunks(B_) * T_ * D_ > part) part = col_chunks(B_) * T_ * D_;
    if (col_chunks(B_) * C_ > part) part = col_chunks(B_) * C_;
    part_ = f(part);
  }

  int maxBatch() const override { return B_; }
  void sync() override { ex_.sync(); }

  void set_weights(const float* const* W) override {
    for (size_t i = 0; i < off_.size(); i++) ex_.upload(W_ + off_[i], W[i], len_[i] * sizeof(float));
    if (half_) ex_.each("weights_bf16", P_, ToBf16{W_, W16_});
  }
  void get_weights(float* const* W) override { download_arrays(W_, W); }
  void get_grads(float* const* G) override { download_arrays(G_, G); }

  void set_optimizer(const OptimizerParams& p, const uint8_t* decays) override {
    opt_ = p;
    haveOpt_ = true;
    std::vector<uint8_t> flags(P_, 0);
    for (size_t i = 0; i < off_.size(); i++) std::memset(flags.data() + off_[i], decays[i] ? 1 : 0, len_[i]);
    ex_.upload(decay_, flags.data(), P_);
    ex_.zero(S1_, P_ * sizeof(float));
    ex_.zero(S2_, P_ * sizeof(float));
  }
  void set_slots(const float* const* slots) override {
    const int per = slotsPerWeight();
    for (size_t i = 0; i < off_.size(); i++)
      for (int s = 0; s < per; s++) ex_.upload((s ? S2_ : S1_) + off_[i], slots[per * i + s], len_[i] * sizeof(float));
  }
  void get_slots(float* const* slots) override {
    const int per = slotsPerWeight();
    for (size_t i = 0; i < off_.size(); i++)
      for (int s = 0; s < per; s++) ex_.download(slots[per * i + s], (s ? S2_ : S1_) + off_[i], len_[i] * sizeof(float));
  }

  StepResult step(int b, const float* images, const float* targets, const DropoutSpec& drop, double clipNorm) override {
    if (b < 1 || b > B_) throw std::runtime_error("batch " + std::to_string(b) + " outside 1.." + std::to_string(B_));
    if (drop.active && c_.dropout <= 0) throw std::runtime_error("dropout asked of a model built without it");
    ex_.upload(img_, images, (size_t)b * c_.image * c_.image * c_.channels * sizeof(float));
    ex_.upload(tgt_, targets, (size_t)b * C_ * sizeof(float));
    host_.dropout = drop.active;
    host_.seed = drop.seed;
    host_.threshold = drop.threshold;
    host_.keep = drop.keep;
    host_.clipNorm = clipNorm;
    ex_.upload(sc_, &host_, sizeof host_);
    forward_pass(b);
    ex_.each("cross_entropy", b, CrossEntropy{logits_, tgt_, dlogits_, lossRow_, right_, C_, b});
    ex_.each("loss_total", 1, LossTotal{lossRow_, right_, sc_, b});
    backward_pass(b);
    ex_.sumsq("grad_norm", G_, P_, &sc_->gradSq);
    if (clipNorm > 0) ex_.each("clip", P_, Clip{G_, sc_});
    Scalars out;
    ex_.download(&out, sc_, sizeof out);
    return {out.loss, out.correct, std::sqrt(out.gradSq)};
  }

  void update(double lr, int step) override {
    if (!haveOpt_) throw std::runtime_error("update() before set_optimizer()");
    const OptimizerParams& p = opt_;
    const float wd = (float)p.weightDecay;
    host_.lr = (float)lr;
    host_.step = step;
    host_.bc1 = (float)(1.0 - std::pow(p.beta1, step));
    host_.bc2 = (float)(1.0 - std::pow(p.beta2, step));
    host_.shrink = p.kind == kAdamW && wd > 0 ? (float)(1.0 - lr * wd) : 1.f;
    ex_.upload(sc_, &host_, sizeof host_);
    if (p.kind == kSgd) {
      ex_.each("sgd", P_, SgdStep{W_, S1_, W16_, G_, decay_, sc_, (float)p.momentum, wd});
    } else {
      ex_.each("adam", P_,
               AdamStep{W_, S1_, S2_, W16_, G_, decay_, sc_, (float)p.beta1, (float)p.beta2, (float)(1.0 - p.beta1), (float)(1.0 - p.beta2),
                        (float)p.eps, wd, p.kind == kAdam});
    }
  }

  void forward(int n, const float* images, float* logits, float* attention) override {
    const size_t img = (size_t)c_.image * c_.image * c_.channels, TT = (size_t)T_ * T_;
    host_.dropout = 0;
    ex_.upload(sc_, &host_, sizeof host_);
    std::vector<float> P;
    for (int b0 = 0; b0 < n; b0 += B_) {
      const int b = n - b0 < B_ ? n - b0 : B_;
      ex_.upload(img_, images + b0 * img, b * img * sizeof(float));
      forward_pass(b);
      ex_.download(logits + (size_t)b0 * C_, logits_, (size_t)b * C_ * sizeof(float));
      if (!attention) continue;
      // [depth, n, heads, T, T] from each block's [b heads, T, Tp].
      P.resize((size_t)b * H_ * T_ * Tp_);
      for (int l = 0; l < c_.depth; l++) {
        ex_.download(P.data(), blk_[l].P, P.size() * sizeof(float));
        float* dst = attention + ((size_t)l * n + b0) * H_ * TT;
        for (size_t row = 0; row < (size_t)b * H_ * T_; row++) std::memcpy(dst + row * T_, P.data() + row * Tp_, T_ * sizeof(float));
      }
    }
  }

 private:
  struct Blk {
    float *xhat1, *rstd1, *qkv, *P, *xhat2, *rstd2, *hgrad;
    Out y1, o, y2, g;  // what feeds products (bf16 in the bf16 precision)
  };

  float* f(size_t n) { return (float*)ex_.alloc(n * sizeof(float)); }
  bf16* h(size_t n) { return (bf16*)ex_.alloc(n * sizeof(bf16)); }
  // An activation that feeds products: fp32, or bf16 in the bf16 precision (and fp32 too when
  // something else reads it).
  Out act(size_t n, bool alsoFp32 = false) { return half_ ? Out{alsoFp32 ? f(n) : nullptr, h(n)} : Out{f(n), nullptr}; }
  // Weight i as a product's operand.
  In Wop(int i) const { return In(W_ + off_[i], W16_ ? W16_ + off_[i] : nullptr); }
  In wop(int l, int i) const { return Wop(ix_.blocks + B_COUNT * l + i); }
  float* W(int i) const { return W_ + off_[i]; }
  float* G(int i) const { return G_ + off_[i]; }
  float* w(int l, int i) const { return W(ix_.blocks + B_COUNT * l + i); }
  float* g(int l, int i) const { return G(ix_.blocks + B_COUNT * l + i); }
  float* SW(int p) const { return W(ix_.stem[p]); }
  float* SG(int p) const { return G(ix_.stem[p]); }
  float* HW(int i) const { return W(ix_.head[i]); }
  float* HG(int i) const { return G(ix_.head[i]); }
  Drop drop(int site) const { return Drop{sc_, site}; }
  static int site(int l, BlockSite s) { return 1 + kSitesPerBlock * l + s; }
  int slotsPerWeight() const {
    if (!haveOpt_) throw std::runtime_error("optimizer slots before set_optimizer()");
    return opt_.kind == kSgd ? 1 : 2;
  }
  void download_arrays(const float* flat, float* const* out) {
    for (size_t i = 0; i < off_.size(); i++) ex_.download(out[i], flat + off_[i], len_[i] * sizeof(float));
  }

  // Column sums, partial pass p over (chunk, column) items, then the chunks in order (ops_train.h).
  template <class Partial>
  void column_sums(const char* what, size_t rows, int cols, const Partial& p, float* out, float* out2 = nullptr) {
    const size_t chunks = col_chunks(rows);
    ex_.each(what, chunks * cols, p);
    ex_.each(what, out2 ? 2 * cols : cols, ColFinal{part_, out, out2, chunks, cols});
  }
  // out[c] = the column sums of v(e) over rows x cols, each value also written to copy.
  template <class Value>
  void colsum(const char* what, const Value& v, size_t rows, int cols, float* out, Out copy = Out{nullptr, nullptr}) {
    column_sums(what, rows, cols, ColPartial<Value>{v, copy, part_, rows, cols}, out);
  }
  // A layer norm's gain and bias gradients from its output gradient dy and xhat [rows, D].
  void norm_grads(const char* what, const float* dy, const float* xhat, size_t rows, float* dg, float* db) {
    column_sums(what, rows, D_, NormPartial{dy, xhat, part_, rows, D_}, dg, db);
  }
  // dr = dx x mask of `site` with its column sums into db; without dropout dr is dx itself (and
  // its bf16 copy for the products, in the bf16 precision).
  In dropout_bwd(const char* what, int site, size_t rows, float* db) {
    if (!host_.dropout) {
      colsum(what, Read{dx_}, rows, D_, db, Out{nullptr, dx16_});
      return In(dx_, dx16_);
    }
    colsum(what, Dropped{dx_, drop(site)}, rows, D_, db, dr_);
    return dr_;
  }

  void forward_pass(int b) {
    const size_t R = (size_t)b * T_;
    ex_.each("patchify", (size_t)b * N_ * PD_, Patchify{img_, patches_, N_, PD_, grid_, c_.patch, c_.image, c_.channels});
    ex_.gemm("patch_embedding", mm(false, false, b * N_, D_, PD_, patches_, PD_, Wop(ix_.stem[P_PATCH_W]), D_, tmp_, D_));
    ex_.each("embed", R * D_, Embed{tmp_, SW(P_PATCH_B), SW(P_CLS), SW(P_POS), x_, drop(kSiteEmbedding), T_, N_, D_});
    for (int l = 0; l < c_.depth; l++) block_forward(l, b);
    ex_.rows("head_norm", b, LnFwd{x_, HW(H_LN_G), HW(H_LN_B), hxhat_, Out{hy_, nullptr}, hrstd_, D_, T_});
    ex_.gemm("head", mm(false, false, b, C_, D_, hy_, D_, HW(H_W), C_, logits_, C_));
    ex_.each("head_bias", (size_t)b * C_, AddBias{logits_, HW(H_B), C_});
  }

  void block_forward(int l, int b) {
    const Blk& k = blk_[l];
    const int R = b * T_, BH = b * H_;
    const size_t RI = (size_t)R * IN_;
    ex_.rows("ln1", R, LnFwd{x_, w(l, B_LN1_G), w(l, B_LN1_B), k.xhat1, k.y1, k.rstd1, D_, 1});
    for (int j = 0; j < 3; j++) ex_.gemm("qkv", mm(false, false, R, IN_, D_, k.y1, D_, wop(l, B_Q + j), IN_, k.qkv + j * RI, IN_));
    ex_.blocks("attention", BH, kAttentionWarps, AttentionFwd::smem_floats(T_, dh_, kAttentionWarps),
               AttentionFwd{k.qkv, k.P, k.o, drop(site(l, S_ATTN_WEIGHTS)), RI, T_, H_, dh_, IN_, Tp_, 1.f / std::sqrt((float)dh_)});
    ex_.gemm("attention_out", mm(false, false, R, D_, IN_, k.o, IN_, wop(l, B_OUT_W), D_, tmp_, D_));
    ex_.each("attention_residual", (size_t)R * D_, BiasDropAdd{tmp_, w(l, B_OUT_B), x_, drop(site(l, S_ATTN_OUT)), D_});
    ex_.rows("ln2", R, LnFwd{x_, w(l, B_LN2_G), w(l, B_LN2_B), k.xhat2, k.y2, k.rstd2, D_, 1});
    ex_.gemm("fc1", mm(false, false, R, M_, D_, k.y2, D_, wop(l, B_FC1_W), M_, hid_, M_));
    ex_.each("gelu", (size_t)R * M_, BiasGelu{hid_, w(l, B_FC1_B), k.g, k.hgrad, drop(site(l, S_MLP_HIDDEN)), M_, c_.activation});
    ex_.gemm("fc2", mm(false, false, R, D_, M_, k.g, M_, wop(l, B_FC2_W), D_, tmp_, D_));
    ex_.each("mlp_residual", (size_t)R * D_, BiasDropAdd{tmp_, w(l, B_FC2_B), x_, drop(site(l, S_MLP_OUT)), D_});
  }

  void backward_pass(int b) {
    const size_t R = (size_t)b * T_;
    // Head: logits = LN(x[:, 0]) W + bias.
    ex_.gemm("head_dw", mm(true, false, D_, C_, b, hy_, D_, dlogits_, C_, HG(H_W), C_));
    colsum("head_db", Read{dlogits_}, b, C_, HG(H_B));
    ex_.gemm("head_dx", mm(false, true, b, D_, C_, dlogits_, C_, HW(H_W), C_, dhy_, D_));
    ex_.zero(dx_, R * D_ * sizeof(float));
    ex_.rows("head_norm_bwd", b, LnBwd{hxhat_, hrstd_, HW(H_LN_G), dhy_, dx_, D_, T_});
    norm_grads("head_norm_grads", dhy_, hxhat_, b, HG(H_LN_G), HG(H_LN_B));
    for (int l = c_.depth - 1; l >= 0; l--) block_backward(l, b);
    // Embedding: x0 = dropout([cls; patches W + bias] + pos).
    if (host_.dropout) ex_.each("embed_dropout_bwd", R * D_, DropMul{dx_, dx_, drop(kSiteEmbedding)});
    colsum("pos_grad", Read{dx_}, b, T_ * D_, SG(P_POS));
    ex_.each("cls_grad", D_, Copy{SG(P_POS), SG(P_CLS)});
    ex_.each("gather_patches", (size_t)b * N_ * D_, GatherPatches{dx_, demb_, N_, T_, D_});
    ex_.gemm("patch_dw", mm(true, false, PD_, D_, b * N_, patches_, PD_, demb_, D_, SG(P_PATCH_W), D_));
    colsum("patch_db", Read{demb_.f}, (size_t)b * N_, D_, SG(P_PATCH_B));
  }

  // dx_ holds the gradient of block l's output; leaves that of its input.
  void block_backward(int l, int b) {
    const Blk& k = blk_[l];
    const int R = b * T_, BH = b * H_;
    const size_t RI = (size_t)R * IN_;
    // x2 = x1 + dropout(fc2(dropout(gelu(fc1(ln2(x1)))))).
    In dr = dropout_bwd("mlp_dropout_bwd", site(l, S_MLP_OUT), R, g(l, B_FC2_B));
    ex_.gemm("fc2_dw", mm(true, false, M_, D_, R, k.g, M_, dr, D_, g(l, B_FC2_W), D_));
    ex_.gemm("fc2_dx", mm(false, true, R, M_, D_, dr, D_, wop(l, B_FC2_W), D_, hid_, M_));
    colsum("gelu_bwd", GeluBack{hid_, k.hgrad, drop(site(l, S_MLP_HIDDEN))}, R, M_, g(l, B_FC1_B), dhid_);
    ex_.gemm("fc1_dw", mm(true, false, D_, M_, R, k.y2, D_, dhid_, M_, g(l, B_FC1_W), M_));
    ex_.gemm("fc1_dx", mm(false, true, R, D_, M_, dhid_, M_, wop(l, B_FC1_W), M_, dy_, D_));
    ex_.rows("ln2_bwd", R, LnBwd{k.xhat2, k.rstd2, w(l, B_LN2_G), dy_, dx_, D_, 1});
    norm_grads("ln2_grads", dy_, k.xhat2, R, g(l, B_LN2_G), g(l, B_LN2_B));
    // x1 = x + dropout(out(attention(ln1(x)))).
    dr = dropout_bwd("attention_dropout_bwd", site(l, S_ATTN_OUT), R, g(l, B_OUT_B));
    ex_.gemm("out_dw", mm(true, false, IN_, D_, R, k.o, IN_, dr, D_, g(l, B_OUT_W), D_));
    ex_.gemm("out_dx", mm(false, true, R, IN_, D_, dr, D_, wop(l, B_OUT_W), D_, dO_, IN_));
    ex_.blocks("attention_bwd", BH, kAttentionWarps, AttentionBwd::smem_floats(T_, dh_, Tp_, staged_),
               AttentionBwd{k.qkv, k.P, dO_, attnScratch_, dqkv_, drop(site(l, S_ATTN_WEIGHTS)), RI, T_, H_, dh_, IN_, Tp_,
                            1.f / std::sqrt((float)dh_), staged_});
    for (int j = 0; j < 3; j++) {
      const In dq = In(dqkv_).at(j * RI);
      ex_.gemm("qkv_dw", mm(true, false, D_, IN_, R, k.y1, D_, dq, IN_, g(l, B_Q + j), IN_));
      Gemm dx = mm(false, true, R, D_, IN_, dq, IN_, wop(l, B_Q + j), IN_, dy_, D_);
      dx.beta = j ? 1.f : 0.f;
      ex_.gemm("qkv_dx", dx);
    }
    ex_.rows("ln1_bwd", R, LnBwd{k.xhat1, k.rstd1, w(l, B_LN1_G), dy_, dx_, D_, 1});
    norm_grads("ln1_grads", dy_, k.xhat1, R, g(l, B_LN1_G), g(l, B_LN1_B));
  }

  X ex_;
  Config c_;
  ParamIndex ix_;
  bool half_;  // bf16 operands for the products
  int grid_, N_, T_, Tp_, B_, D_, PD_, H_, dh_, IN_, M_, C_;
  std::vector<size_t> off_, len_;
  size_t P_;
  float *W_, *G_, *S1_, *S2_;
  bf16* W16_;
  uint8_t* decay_;
  Scalars* sc_;
  Scalars host_;
  OptimizerParams opt_{};
  bool haveOpt_ = false;
  std::vector<Blk> blk_;
  float *img_, *tgt_, *x_, *tmp_, *hid_;
  Out patches_;
  float *hxhat_, *hrstd_, *hy_, *logits_, *dlogits_, *dhy_;
  double* lossRow_;
  int* right_;
  float *dx_, *dy_, *dO_, *attnScratch_, *part_;
  bool staged_;
  bf16* dx16_;
  Out dr_, dhid_, dqkv_, demb_;
};

}  // namespace gpu
}  // namespace tfpipe
