// The worker pool behind parallel_chunks (api.h). Compiled once, with baseline flags.
//
// Worker threads are kept for the life of the process: a parallel region wakes them instead of
// creating threads, which cost tens of microseconds each over the ~150 regions of a training
// step. Never destroyed: workers are detached and simply end with the process.
//
// Every hand-over is a condition-variable wait whose predicate is re-checked under m_, and every
// change of a predicate's inputs is published under m_ (or, for the last finisher, followed by
// taking m_ before notifying), so no wake-up can be lost whatever the scheduling. The spins in
// front of the waits are short and bounded by time; they only save the futex round trip when the
// other side is running on another core at that moment.
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "api.h"

namespace tfpipe {
namespace {

struct Region {
  ChunkFn fn;
  void* ctx;
  int n, align, per;
  void run(int i) const {
    int b = i * per * align, e = std::min(n, (i + 1) * per * align);
    fn(ctx, i, b, e);
  }
};

class Pool {
 public:
  Pool() {
    cpu_set_t set;
    CPU_ZERO(&set);
    cpus_ = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)std::thread::hardware_concurrency();
  }

  // Runs region.run(i) for i in [0, t): i = 0 on the calling thread, the rest on workers.
  // own_end (optional) receives the time the caller finished its own chunk.
  void run(int t, const Region& region, double* own_end = nullptr) {
    grow(t - 1);
    {
      std::lock_guard<std::mutex> lk(m_);
      region_ = &region;
      active_ = t;
      // More threads than CPUs (a pinned process): the peer a spinner waits for may need this
      // very core, so spinning only delays it; go straight to sleep.
      spin_us_ = cpus_ >= t ? kSpinMicros : 0;
      pending_.store(t - 1);
      generation_.store(generation_.load() + 1);
    }
    work_.notify_all();
    in_job = true;
    region.run(0);
    in_job = false;
    if (own_end) *own_end = wall_seconds();
    auto finished = [&] { return pending_.load() == 0; };
    // The caller spins longer than the workers: its peers started later (woken from sleep) and
    // it holds its own core anyway.
    if (!spin(finished, kCallerSpin * spin_us_)) {
      std::unique_lock<std::mutex> lk(m_);
      done_.wait(lk, finished);
    }
  }

  // True on a thread that is inside a job: a nested region there runs serially (re-entering
  // run() would overwrite the region in flight).
  static thread_local bool in_job;

 private:
  // Spinning longer only pays when regions follow each other within this time; the serial code
  // between the regions of a training step mostly takes longer. No sched_yield(): on a loaded
  // machine it hands the core to another process for a whole time slice.
  static constexpr int kSpinMicros = 20, kCallerSpin = 5;

  template <class P>
  static bool spin(P ready, int us) {
    if (us <= 0) return ready();
    const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    for (;;) {
      for (int i = 0; i < 16; i++) {
        if (ready()) return true;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
      if (std::chrono::steady_clock::now() >= end) return ready();
    }
  }
  void grow(int n) {
    while (count_ < n) {
      int index = 1 + count_++;
      // The generation before this run's increment: the new worker must not miss this run.
      unsigned seen = generation_.load();
      std::thread([this, index, seen] { work(index, seen); }).detach();
    }
  }
  void work(int index, unsigned seen) {
    in_job = true;
    profile_mark_worker();
    int spin_us = 0;
    for (;;) {
      spin([&] { return generation_.load() != seen; }, spin_us);
      const Region* region;
      int active;
      {
        std::unique_lock<std::mutex> lk(m_);
        work_.wait(lk, [&] { return generation_.load() != seen; });
        // Region, size and generation change together under the lock: take them all at once.
        seen = generation_.load();
        region = region_;
        active = active_;
        spin_us = spin_us_;
      }
      if (index >= active) continue;
      region->run(index);
      if (pending_.fetch_sub(1) == 1) {
        // The caller checks pending_ under m_ before it sleeps: taking m_ here orders this
        // notify after that check or after it is already waiting, never in between.
        std::lock_guard<std::mutex> lk(m_);
        done_.notify_all();
      }
    }
  }
  std::mutex m_;
  std::condition_variable work_, done_;
  std::atomic<unsigned> generation_{0};
  std::atomic<int> pending_{0};
  const Region* region_ = nullptr;
  int active_ = 0;
  int spin_us_ = 0;  // written under m_; read by the caller, which wrote it
  int count_ = 0;    // workers started; only the calling thread touches it
  int cpus_ = 1;     // CPUs this process may run on
};

thread_local bool Pool::in_job = false;

Pool& pool() {
  static Pool* p = new Pool();
  return *p;
}

int g_threads = 1;

// Chunk layout for n items in blocks of `align`: `per` blocks per chunk, `t` chunks, all
// non-empty (e.g. 4 blocks on 3 threads: 2 + 2, not 2 + 2 + 0).
void layout(int n, int align, int* t, int* per) {
  int blocks = (n + align - 1) / align;
  int threads = std::min(g_threads, blocks);
  if (threads <= 1 || Pool::in_job) {
    *t = 1;
    *per = std::max(blocks, 1);
    return;
  }
  *per = (blocks + threads - 1) / threads;
  *t = (blocks + *per - 1) / *per;
}

}  // namespace

void set_threads(int threads) { g_threads = std::max(1, threads); }
int get_threads() { return g_threads; }

int parallel_chunk_count(int n, int align) {
  int t, per;
  layout(n, align, &t, &per);
  return t;
}

void parallel_chunks(int n, int align, ChunkFn fn, void* ctx) {
  int t, per;
  layout(n, align, &t, &per);
  if (t <= 1) {
    fn(ctx, 0, 0, n);
    return;
  }
  Region region{fn, ctx, n, align, per};
  if (!profile_enabled()) {
    pool().run(t, region);
    return;
  }
  // For the profile: how many regions, how long they took, and how long the caller waited for
  // the others after its own chunk (imbalance and hand-over); the rest of a step is serial.
  const double t0 = wall_seconds();
  double own_end = t0;
  pool().run(t, region, &own_end);
  const double t1 = wall_seconds();
  profile_add("pool_regions", 1);
  profile_add("pool_region_wall", (t1 - t0) * 1e3);
  profile_add("pool_wait_wall", (t1 - own_end) * 1e3);
}

}  // namespace tfpipe
