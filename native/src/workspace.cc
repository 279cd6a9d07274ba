// Buffers kept between calls (api.h). Compiled once, with baseline flags.
#include <cstdlib>
#include <cstring>
#include <vector>

#include "api.h"

namespace tfpipe {

struct Workspace {
  struct Buffer {
    float* data = nullptr;
    size_t size = 0;
  };
  std::vector<Buffer> slots;
};

Workspace* workspace_new() { return new Workspace(); }

void workspace_free(Workspace* ws) {
  for (auto& b : ws->slots) std::free(b.data);
  delete ws;
}

float* workspace_take(Workspace* ws, int slot, size_t n) {
  if ((size_t)slot >= ws->slots.size()) ws->slots.resize(slot + 1);
  Workspace::Buffer& b = ws->slots[slot];
  if (b.size < n) {
    std::free(b.data);
    // 64-byte alignment: whole cache lines, aligned vector loads on every ISA. 64 floats of slack
    // after the end: a kernel may read (never use) one vector past the last element of a row.
    size_t bytes = (((n + 64) * sizeof(float)) + 63) / 64 * 64;
    b.data = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!b.data) std::abort();
    b.size = n;
  }
  return b.data;
}

}  // namespace tfpipe
