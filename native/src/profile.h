// Reading the profile (baseline translation units only: uses std::map).
#pragma once
#include <map>
#include <string>

namespace tfpipe {
// Milliseconds per section since the last call, then reset.
std::map<std::string, double> profile_take();
}  // namespace tfpipe
