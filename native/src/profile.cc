// Milliseconds per named section (api.h), summed until read; compiled once.
#include <cstdlib>
#include <ctime>
#include <map>
#include <string>

#include "api.h"
#include "profile.h"

namespace tfpipe {
namespace {
std::map<std::string, double> g_profile;
bool g_enabled = false;
thread_local bool t_worker = false;
}  // namespace

void profile_enable(bool on) { g_enabled = on; }
bool profile_enabled() { return g_enabled && !t_worker; }
void profile_mark_worker() { t_worker = true; }

// CPU time of the calling thread, so that other load on a shared machine does not inflate it;
// with several threads it undercounts the work done by the helpers. TFPIPE_PROFILE_CLOCK=wall
// takes wall-clock time instead (to see how sections scale with threads on a quiet machine).
double profile_now_ms() {
  static const clockid_t clock = [] {
    const char* c = std::getenv("TFPIPE_PROFILE_CLOCK");
    return c && std::string(c) == "wall" ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID;
  }();
  timespec ts;
  clock_gettime(clock, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double wall_seconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

void profile_add(const char* section, double ms) { g_profile[section] += ms; }

std::map<std::string, double> profile_take() {
  std::map<std::string, double> out;
  out.swap(g_profile);
  return out;
}

}  // namespace tfpipe
