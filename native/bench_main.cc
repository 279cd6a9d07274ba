// Standalone benchmark of the native kernels, without Node: forward+backward ("train") and
// forward-only ("infer") images per second of the ViT shapes tfpipe's bench uses, for every
// kernel variant this CPU runs, at each thread count; one JSON line per case. Also checks every
// variant against the baseline one on odd sizes, and measures the FMA peak of 1 and N threads
// running at once (how far the hardware lets extra threads scale). Build: sh native/build-bench.sh
//
//   vit_bench [--models small,default,cpu_hour] [--threads 1,2] [--steps 5] [--batch 128]
//             [--isa avx2,baseline] [--activation gelu|gelu_tanh] [--no-check] [--no-peak] [--profile]
//   vit_bench --device cuda|host ...   the GPU model's checks and bench (gpu_bench.cc, --help)
// --profile adds milliseconds per training step by section (TFPIPE_PROFILE_CLOCK=wall for wall time).
// --dump FILE writes the check problem's logits and gradients (first variant run, float32);
// --compare FILE compares this machine's with such a dump from another one (another ISA or CPU).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "src/api.h"
#include "src/dispatch.h"
#include "src/profile.h"
#include "bench_problem.h"

using namespace tfpipe;
using namespace tfpipe::bench;

namespace {

struct ModelShape {
  const char* label;
  int patch, dim, depth, heads, mlp;
};
const ModelShape kModels[] = {{"small", 4, 64, 4, 4, 128}, {"default", 4, 128, 6, 4, 256}, {"cpu_hour", 4, 64, 6, 4, 256}, {"cifar_vit", 4, 384, 7, 12, 384}};



}  // namespace

// vit_bench --device cuda|host: the GPU model's checks and bench (gpu_bench.cc).
int gpu_main(int argc, char** argv);

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++)
    if (!std::strcmp(argv[i], "--device")) return gpu_main(argc, argv);
  std::string models = "small,default,cpu_hour", threads = "1,2", isas, dump, compare;
  int steps = 5, batch = 128, activation = kGeluErf;
  bool check = true, peak = true, profile = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--models") models = next();
    else if (a == "--threads") threads = next();
    else if (a == "--steps") steps = std::atoi(next().c_str());
    else if (a == "--batch") batch = std::atoi(next().c_str());
    else if (a == "--isa") isas = next();
    else if (a == "--activation") activation = next() == "gelu_tanh" ? kGeluTanh : kGeluErf;
    else if (a == "--no-check") check = false;
    else if (a == "--profile") {
      profile = true;
      profile_enable(true);
    }
    else if (a == "--dump") dump = next();
    else if (a == "--compare") compare = next();
    else if (a == "--no-peak") peak = false;
    else {
      std::fprintf(stderr,
                   "usage: vit_bench [--models small,default,cpu_hour,cifar_vit] [--threads 1,2] [--steps 5] [--batch 128]\n"
                   "                 [--isa avx512,avx2,baseline] [--activation gelu|gelu_tanh] [--no-check] [--no-peak] [--profile]\n"
                   "                 [--dump FILE] [--compare FILE]\n"
                   "TFPIPE_NATIVE_ISA=<variant> runs only that variant (an error if this CPU cannot).\n");
      return a == "--help" ? 0 : 2;
    }
  }
  const std::string cpu = json_escape(cpu_model());
  std::vector<const Kernels*> run;
  const char* forced = std::getenv("TFPIPE_NATIVE_ISA");
  if (forced && *forced) {
    std::string error;
    const Kernels* k = select_kernels(forced, &error);
    if (!k) {
      std::fprintf(stderr, "%s\n", error.c_str());
      return 1;
    }
    run.push_back(k);
  } else {
    std::vector<std::string> want = split_list(isas);
    for (const auto& v : variants()) {
      bool named = want.empty();
      for (const auto& w : want) named = named || w == v.name;
      if (!named) continue;
      if (v.supported) run.push_back(v.kernels);
      else std::printf("{\"cpu\":\"%s\",\"isa\":\"%s\",\"note\":\"this CPU lacks %s\"}\n", cpu.c_str(), v.name, v.requires);
    }
  }
  const unsigned hw = std::thread::hardware_concurrency();
  std::printf("{\"cpu\":\"%s\",\"features\":\"%s\",\"hardware_threads\":%u}\n", cpu.c_str(), json_escape(cpu_features()).c_str(), hw);
  std::fflush(stdout);

  if (check) {
    // Every variant against the baseline one (or the last variant) on odd sizes: tails everywhere.
    const Kernels* ref = variants().back().kernels;
    Config c{7, 20, 3, 5, 4, 40, 2, 3, 12, 72, 0.2f, kGeluErf};
    for (const Kernels* k : run) {
      Problem a(c, 3), b(c, 3);
      Workspace *wa = workspace_new(), *wb = workspace_new();
      set_threads(2);
      a.train_step(k, wa, dropout(0.2f, 42));
      b.train_step(ref, wb, dropout(0.2f, 42));
      double worst = max_rel_diff(a.logits, b.logits);
      for (size_t i = 0; i < a.g.size(); i++) worst = std::max(worst, max_rel_diff(a.g[i], b.g[i]));
      std::printf("{\"cpu\":\"%s\",\"check\":\"%s vs %s\",\"max_rel_diff\":%.3g,\"ok\":%s}\n", cpu.c_str(), k->isa, ref->isa, worst,
                  worst < 1e-4 ? "true" : "false");
      workspace_free(wa);
      workspace_free(wb);
    }
    std::fflush(stdout);
  }

  if ((!dump.empty() || !compare.empty()) && !run.empty()) {
    Config c{7, 20, 3, 5, 4, 40, 2, 3, 12, 72, 0.2f, kGeluErf};
    Problem a(c, 3);
    Workspace* ws = workspace_new();
    a.train_step(run.front(), ws, dropout(0.2f, 42));
    workspace_free(ws);
    std::vector<float> all(a.logits);
    for (auto& g : a.g) all.insert(all.end(), g.begin(), g.end());
    if (!dump.empty()) {
      FILE* f = std::fopen(dump.c_str(), "wb");
      if (!f || std::fwrite(all.data(), sizeof(float), all.size(), f) != all.size()) {
        std::fprintf(stderr, "cannot write %s\n", dump.c_str());
        return 1;
      }
      std::fclose(f);
    }
    if (!compare.empty()) {
      std::vector<float> other(all.size());
      FILE* f = std::fopen(compare.c_str(), "rb");
      size_t got = f ? std::fread(other.data(), sizeof(float), other.size() + 1, f) : 0;
      if (f) std::fclose(f);
      if (got != all.size()) {
        std::fprintf(stderr, "%s is not a dump of this check problem\n", compare.c_str());
        return 1;
      }
      // Array by array (logits, then each gradient), each relative to its own largest value.
      double worst = 0;
      size_t at = 0;
      auto segment = [&](size_t n) {
        std::vector<float> x(all.begin() + at, all.begin() + at + n), y(other.begin() + at, other.begin() + at + n);
        worst = std::max(worst, max_rel_diff(x, y));
        at += n;
      };
      segment(a.logits.size());
      for (auto& g : a.g) segment(g.size());
      std::printf("{\"cpu\":\"%s\",\"compare\":\"%s vs %s\",\"max_rel_diff\":%.3g,\"ok\":%s}\n", cpu.c_str(), run.front()->isa,
                  json_escape(compare).c_str(), worst, worst < 1e-4 ? "true" : "false");
    }
  }

  if (peak) {
    // FMA throughput of one thread, then of N threads at once: the ceiling for N-thread speed-ups.
    const Kernels* k = run.empty() ? nullptr : run.front();
    for (const std::string& t : split_list(threads)) {
      int n = std::atoi(t.c_str());
      if (!k || n < 1) continue;
      std::vector<double> each(n);
      std::vector<std::thread> pool;
      for (int i = 0; i < n; i++) pool.emplace_back([&, i] { each[i] = k->peakGflops(1.0); });
      for (auto& th : pool) th.join();
      double total = 0;
      for (double e : each) total += e;
      std::printf("{\"cpu\":\"%s\",\"isa\":\"%s\",\"peak_threads\":%d,\"peak_gflops_total\":%.1f,\"peak_gflops_per_thread\":%.1f}\n", cpu.c_str(),
                  k->isa, n, total, total / n);
      std::fflush(stdout);
    }
  }

  for (const Kernels* k : run) {
    for (const std::string& label : split_list(models)) {
      const ModelShape* m = nullptr;
      for (const auto& s : kModels)
        if (label == s.label) m = &s;
      if (!m) {
        std::fprintf(stderr, "unknown model %s\n", label.c_str());
        return 2;
      }
      Config c{batch, 32, 3, 10, m->patch, m->dim, m->depth, m->heads, m->dim / m->heads, m->mlp, 0.1f, activation};
      for (const std::string& t : split_list(threads)) {
        Problem p(c, 1);
        Workspace* ws = workspace_new();
        set_threads(std::atoi(t.c_str()));
        p.train_step(k, ws, dropout(0.1f, 0));  // warm-up: workspace, pool
        profile_take();
        auto t0 = std::chrono::steady_clock::now();
        for (int s = 0; s < steps; s++) p.train_step(k, ws, dropout(0.1f, s + 1));
        double train = steps * batch / seconds_since(t0);
        std::string sections;
        for (const auto& kv : profile_take()) {
          char buf[96];
          std::snprintf(buf, sizeof buf, "%s\"%s\":%.2f", sections.empty() ? "" : ",", kv.first.c_str(), kv.second / steps);
          sections += buf;
        }
        t0 = std::chrono::steady_clock::now();
        for (int s = 0; s < 2 * steps; s++) k->forward(p.c, p.W.data(), p.images.data(), dropout(0.f, 0), ws, p.logits.data(), nullptr, nullptr);
        double infer = 2 * steps * batch / seconds_since(t0);
        std::printf(
            "{\"cpu\":\"%s\",\"isa\":\"%s\",\"lanes\":%d,\"tile\":[%d,%d],\"model\":\"%s\",\"dim\":%d,\"depth\":%d,\"heads\":%d,\"mlp\":%d,"
            "\"activation\":\"%s\",\"batch\":%d,\"threads\":%s,\"train_img_s\":%.1f,\"infer_img_s\":%.1f,%s\"note\":\"forward+loss+backward, no optimizer\"}\n",
            cpu.c_str(), k->isa, k->lanes, k->tileRows, k->tileCols, m->label, m->dim, m->depth, m->heads, m->mlp, activation == kGeluErf ? "gelu" : "gelu_tanh", batch, t.c_str(), train,
            infer, profile ? ("\"profile_ms_per_step\":{" + sections + "},").c_str() : "");
        std::fflush(stdout);
        workspace_free(ws);
      }
    }
  }
  return 0;
}
