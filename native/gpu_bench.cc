// vit_bench --device cuda|host|simt: the GPU model's checks and speed, standalone (the GPU host
// has no Node). host and simt are the host executors (api.h Executor): no GPU needed. One JSON
// line per result.
//   --info          the device, driver, CUDA runtime and cuBLASLt found
//   --gemm-check    cuBLASLt through the row-major mapping against the host reference
//   --parity        a training step (loss, correct, gradient norm, every gradient, clipping on),
//                   two updates of each optimizer (weights and slots) and the eval forward
//                   (logits, attention) against the CPU kernels (the best variant this CPU runs),
//                   per precision, on an odd-sized and a CIFAR-shaped problem; --small: one tiny
//                   problem (for compute-sanitizer)
//   --bench         training (forward, loss, backward, AdamW) and inference images per second per
//                   model, batch and precision; --profile adds GPU milliseconds per operation
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_problem.h"
#include "cuda/api.h"
#include "cuda/checks.h"
#include "src/dispatch.h"
#include "src/optimizer.h"

using namespace tfpipe;
using namespace tfpipe::bench;

namespace {


std::string param_name(const Config& c, int i) {
  const ParamIndex ix = param_index(c);
  for (int p = 0; p < P_STEM_COUNT; p++)
    if (ix.stem[p] == i) return kStemNames[p];
  for (int p = 0; p < H_COUNT; p++)
    if (ix.head[p] == i) return kHeadNames[p];
  return std::string("block/") + kBlockNames[(i - ix.blocks) % B_COUNT];
}

bool decays(const Config& c, int i) {
  const std::string n = param_name(c, i);
  return n.find("kernel") != std::string::npos || n.find("to_q") != std::string::npos || n.find("to_k") != std::string::npos ||
         n.find("to_v") != std::string::npos;
}

// Tolerances of the GPU path against the CPU kernels (max |difference| over the array's largest
// |value|): fp32 differs only in summation order; TF32 and bf16 round the products' inputs.
double tolerance(gpu::Precision p) { return p == gpu::kFp32 ? 1e-4 : p == gpu::kTf32 ? 1e-2 : 5e-2; }

// Largest relative difference per array name (arrays of the same name, e.g. one per block, pooled).
struct Errors {
  std::vector<std::pair<std::string, double>> rows;
  void add(const std::string& name, const std::vector<float>& got, const std::vector<float>& want) {
    const double e = max_rel_diff(got, want);
    for (auto& r : rows)
      if (r.first == name) {
        r.second = std::max(r.second, e);
        return;
      }
    rows.push_back({name, e});
  }
  void scalar(const std::string& name, double got, double want) { rows.push_back({name, std::fabs(got - want) / std::max(1e-3, std::fabs(want))}); }
  double worst() const {
    double w = 0;
    for (auto& r : rows) w = std::max(w, r.second);
    return w;
  }
  std::string json() const {
    std::string s;
    char buf[160];
    for (auto& r : rows) {
      std::snprintf(buf, sizeof buf, "%s\"%s\":%.3g", s.empty() ? "" : ",", r.first.c_str(), r.second);
      s += buf;
    }
    return "{" + s + "}";
  }
};

std::vector<float*> pointers(std::vector<std::vector<float>>& v) {
  std::vector<float*> p;
  for (auto& x : v) p.push_back(x.data());
  return p;
}

bool parity(const char* label, const Config& c, gpu::Precision prec, gpu::Executor ex, const Kernels* cpu) {
  const double clip = 0.5;
  const DropoutSpec drop = dropout(c.dropout, 1234);
  Problem p(c, 7);
  Workspace* ws = workspace_new();
  set_threads(1);
  // The CPU reference: what the addon's run() does (native/src/addon.cc), then the optimizer.
  double loss;
  int correct;
  cpu->forward(c, p.W.data(), p.images.data(), drop, ws, p.logits.data(), nullptr, nullptr);
  softmax_cross_entropy(c.batch, c.classes, p.logits.data(), p.targets.data(), &loss, &correct, p.dlogits.data());
  cpu->backward(c, p.W.data(), p.G.data(), p.dlogits.data(), drop, ws);
  double sq = 0;
  for (auto& g : p.g)
    for (float v : g) sq += (double)v * v;
  const double norm = std::sqrt(sq);
  if (norm > clip)
    for (auto& g : p.g)
      for (float& v : g) v *= (float)(clip / (norm + 1e-6));
  const int T = (c.image / c.patch) * (c.image / c.patch) + 1;
  std::vector<float> evalLogits((size_t)c.batch * c.classes), attention((size_t)c.depth * c.batch * c.heads * T * T);
  cpu->forward(c, p.W.data(), p.images.data(), dropout(0.f, 0), ws, evalLogits.data(), attention.data(), nullptr);

  Errors err;
  std::unique_ptr<gpu::Trainer> t(gpu::new_trainer(c, prec, ex));
  t->set_weights(p.W.data());
  const gpu::StepResult r = t->step(c.batch, p.images.data(), p.targets.data(), drop, clip);
  err.scalar("loss", r.loss, loss);
  err.scalar("grad_norm", r.gradNorm, norm);
  std::vector<std::vector<float>> got;
  for (auto& g : p.g) got.emplace_back(g.size());
  t->get_grads(pointers(got).data());
  for (size_t i = 0; i < got.size(); i++) err.add("grad/" + param_name(c, (int)i), got[i], p.g[i]);
  std::vector<float> gl(evalLogits.size()), ga(attention.size());
  t->forward(c.batch, p.images.data(), gl.data(), ga.data());
  err.add("eval_logits", gl, evalLogits);
  err.add("attention", ga, attention);

  std::vector<uint8_t> dec(p.w.size());
  for (size_t i = 0; i < dec.size(); i++) dec[i] = decays(c, (int)i);
  for (OptimizerKind kind : {kAdam, kAdamW, kSgd}) {
    const char* name = kind == kAdam ? "adam" : kind == kAdamW ? "adamw" : "sgd";
    OptimizerParams op{kind, 0.01, 0.9, 0.999, 1e-8, 0.05, 0.9, 1};
    std::vector<std::vector<float>> w = p.w, slots;
    for (auto& x : p.w)
      for (int s = 0; s < (kind == kSgd ? 1 : 2); s++) slots.emplace_back(x.size());
    std::vector<size_t> sizes;
    for (auto& x : w) sizes.push_back(x.size());
    // The GPU's own gradients on both sides: Adam's update g / (|g| + eps) flips with the sign of
    // gradients near zero, so rounding-level differences there would hide the optimizer's own.
    std::vector<const float*> G;
    for (auto& x : got) G.push_back(x.data());
    t->set_weights(p.W.data());
    t->set_optimizer(op, dec.data());
    for (int step = 1; step <= 2; step++) {
      op.step = step;
      op.lr = 0.01 * step;
      optimizer_update(op, (int)w.size(), pointers(w).data(), G.data(), pointers(slots).data(), sizes.data(), dec.data());
      t->update(op.lr, step);
    }
    std::vector<std::vector<float>> gw = w, gs = slots;
    t->get_weights(pointers(gw).data());
    t->get_slots(pointers(gs).data());
    for (size_t i = 0; i < w.size(); i++) err.add(std::string(name) + "/weights", gw[i], w[i]);
    for (size_t i = 0; i < slots.size(); i++) err.add(std::string(name) + "/slots", gs[i], slots[i]);
  }
  workspace_free(ws);
  const double worst = std::max(err.worst(), (double)std::abs(r.correct - correct));
  std::printf("{\"parity\":\"%s\",\"device\":\"%s\",\"precision\":\"%s\",\"against\":\"%s\",\"correct\":[%d,%d],\"max_rel_err\":%.3g,"
              "\"tolerance\":%g,\"ok\":%s,\"arrays\":%s}\n",
              label, gpu::executor_name(ex), gpu::precision_name(prec), cpu->isa, r.correct, correct, worst, tolerance(prec),
              worst <= tolerance(prec) ? "true" : "false", err.json().c_str());
  std::fflush(stdout);
  return worst <= tolerance(prec);
}

struct Shape {
  const char* label;
  int dim, depth, heads, mlp;
};
const Shape kShapes[] = {{"cifar_vit", 384, 7, 12, 384}, {"cpu_hour", 64, 6, 4, 256}, {"small", 64, 4, 4, 128}};

void run_bench(const Shape& m, int batch, gpu::Precision prec, int steps, bool profile) {
  Config c{batch, 32, 3, 10, 4, m.dim, m.depth, m.heads, m.dim / m.heads, m.mlp, 0.f, kGeluErf};
  Problem p(c, 1);
  std::unique_ptr<gpu::Trainer> t(gpu::new_trainer(c, prec, gpu::kDevice));
  t->set_weights(p.W.data());
  std::vector<uint8_t> dec(p.w.size());
  for (size_t i = 0; i < dec.size(); i++) dec[i] = decays(c, (int)i);
  t->set_optimizer({kAdamW, 1e-3, 0.9, 0.999, 1e-8, 0.05, 0, 1}, dec.data());
  const DropoutSpec off = dropout(0.f, 0);
  int step = 0;
  auto train = [&] {
    t->step(batch, p.images.data(), p.targets.data(), off, 1.0);
    t->update(1e-3, ++step);
  };
  for (int i = 0; i < 3; i++) train();
  t->sync();
  gpu::device_profile_take();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; i++) train();
  t->sync();
  const double trainIps = steps * batch / seconds_since(t0);
  std::string sections;
  if (profile) {
    for (const auto& kv : gpu::device_profile_take()) {
      char buf[128];
      std::snprintf(buf, sizeof buf, "%s\"%s\":%.3f", sections.empty() ? "" : ",", kv.first.c_str(), kv.second / steps);
      sections += buf;
    }
  }
  std::vector<float> logits((size_t)batch * c.classes);
  t->forward(batch, p.images.data(), logits.data(), nullptr);
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; i++) t->forward(batch, p.images.data(), logits.data(), nullptr);
  const double inferIps = steps * batch / seconds_since(t0);
  std::printf("{\"device\":\"cuda\",\"model\":\"%s\",\"dim\":%d,\"depth\":%d,\"heads\":%d,\"mlp\":%d,\"batch\":%d,\"precision\":\"%s\","
              "\"train_img_s\":%.1f,\"infer_img_s\":%.1f%s%s%s,\"note\":\"step + AdamW update, dropout 0, exact GELU\"}\n",
              m.label, m.dim, m.depth, m.heads, m.mlp, batch, gpu::precision_name(prec), trainIps, inferIps,
              profile ? ",\"profile_ms_per_step\":{" : "", sections.c_str(), profile ? "}" : "");
  std::fflush(stdout);
}

}  // namespace

int gpu_main(int argc, char** argv) {
  std::string device, models = "cifar_vit,cpu_hour", batches = "128,512", precisions = "fp32,tf32,bf16";
  bool info = false, gemmCheck = false, doParity = false, small = false, doBench = false, profile = false;
  int steps = 20;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--device") device = next();
    else if (a == "--info") info = true;
    else if (a == "--gemm-check") gemmCheck = true;
    else if (a == "--parity") doParity = true;
    else if (a == "--small") small = true;
    else if (a == "--bench") doBench = true;
    else if (a == "--profile") profile = true;
    else if (a == "--models") models = next();
    else if (a == "--batches") batches = next();
    else if (a == "--precisions") precisions = next();
    else if (a == "--steps") steps = std::atoi(next().c_str());
    else {
      std::fprintf(stderr,
                   "usage: vit_bench --device cuda|host|simt [--info] [--gemm-check] [--parity [--small]] [--bench [--profile]]\n"
                   "                 [--models cifar_vit,cpu_hour,small] [--batches 128,512] [--precisions fp32,tf32,bf16] [--steps 20]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  const gpu::Executor ex = device == "host" ? gpu::kHost : device == "simt" ? gpu::kHostSimt : gpu::kDevice;
  const bool host = ex != gpu::kDevice;
  if (!host && device != "cuda") {
    std::fprintf(stderr, "--device must be cuda, host or simt\n");
    return 2;
  }
  std::vector<gpu::Precision> precs;
  for (const auto& s : split_list(precisions)) {
    gpu::Precision p;
    if (!gpu::parse_precision(s.c_str(), &p)) {
      std::fprintf(stderr, "unknown precision %s\n", s.c_str());
      return 2;
    }
    precs.push_back(p);
  }
  int failures = 0;
  try {
    if (info || !host) {
      const gpu::DeviceInfo& d = gpu::device_info();
      std::printf("{\"gpu\":\"%s\",\"ok\":%s,\"error\":\"%s\",\"compute_capability\":\"%d.%d\",\"sms\":%d,\"memory_gib\":%.1f,\"driver\":%d,"
                  "\"runtime\":%d,\"cublaslt\":\"%s\",\"cublaslt_version\":%zu,\"cublaslt_error\":\"%s\",\"cpu\":\"%s\"}\n",
                  json_escape(d.name).c_str(), d.ok ? "true" : "false", json_escape(d.error).c_str(), d.ccMajor, d.ccMinor, d.sms, d.memory / 1073741824.0, d.driver,
                  d.runtime, json_escape(d.cublasLt).c_str(), d.cublasLtVersion, json_escape(d.cublasLtError).c_str(), json_escape(cpu_model()).c_str());
      std::fflush(stdout);
      if (!host && !d.ok) return 1;
    }
    if (gemmCheck && !host)
      for (gpu::Precision p : precs)
        for (const auto& g : gpu::device_gemm_checks(p)) {
          const bool ok = g.maxRelErr <= tolerance(p);
          failures += !ok;
          std::printf("{\"gemm_check\":\"%s\",\"precision\":\"%s\",\"max_rel_err\":%.3g,\"ok\":%s}\n", g.label.c_str(), gpu::precision_name(p),
                      g.maxRelErr, ok ? "true" : "false");
          std::fflush(stdout);
        }
    if (doParity) {
      std::string error;
      const Kernels* cpu = select_kernels(nullptr, &error);
      if (!cpu) throw std::runtime_error(error);
      const Config tiny{3, 8, 3, 4, 4, 12, 1, 2, 12, 20, 0.2f, kGeluErf};  // dimHead 12: 3 groups of 4, not a power of two
      const Config odd{7, 20, 3, 5, 4, 40, 2, 3, 12, 72, 0.2f, kGeluErf};
      const Config cifar{16, 32, 3, 10, 4, 64, 2, 4, 16, 128, 0.f, kGeluTanh};  // no dropout: the paths that skip the masks
      // 257 tokens: the attention backward's dS does not fit in shared memory (scratch path).
      const Config wide{2, 32, 3, 10, 2, 16, 1, 2, 8, 24, 0.1f, kGeluErf};
      for (gpu::Precision p : precs) {
        if (small) {
          failures += !parity("tiny", tiny, p, ex, cpu);
          continue;
        }
        failures += !parity("odd", odd, p, ex, cpu);
        failures += !parity("cifar", cifar, p, ex, cpu);
        failures += !parity("wide", wide, p, ex, cpu);
      }
    }
    if (doBench && !host)
      for (const auto& label : split_list(models)) {
        const Shape* m = nullptr;
        for (const auto& s : kShapes)
          if (label == s.label) m = &s;
        if (!m) throw std::runtime_error("unknown model " + label);
        for (const auto& b : split_list(batches))
          for (gpu::Precision p : precs) run_bench(*m, std::atoi(b.c_str()), p, steps, profile);
      }
  } catch (const std::exception& e) {
    std::printf("{\"error\":\"%s\"}\n", json_escape(e.what()).c_str());
    return 1;
  }
  return failures ? 1 : 0;
}
