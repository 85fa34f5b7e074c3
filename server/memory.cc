// Copyright 2026 The mcdrop Authors.

#include "server/memory.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

namespace mcdrop::server {

MemoryUsage ReadMemoryUsage() {
  MemoryUsage u;
  std::ifstream statm("/proc/self/statm");
  int64_t size_pages = 0, resident_pages = 0;
  if (statm >> size_pages >> resident_pages) {
    u.resident_bytes = resident_pages * sysconf(_SC_PAGESIZE);
  }
  const struct mallinfo2 m = mallinfo2();
  u.heap_in_use = static_cast<int64_t>(m.uordblks + m.hblkhd);
  u.heap_held = static_cast<int64_t>(m.arena + m.hblkhd);
  return u;
}

void PinAllocatorPolicy() {
  const int cores =
      std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
  mallopt(M_ARENA_MAX, cores);
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  mallopt(M_TRIM_THRESHOLD, 256 * 1024);
}

bool ReturnFreeMemory() { return malloc_trim(0) != 0; }

MemoryReturner::MemoryReturner(absl::Duration period) {
  if (period <= absl::ZeroDuration()) return;
  thread_ = std::thread([this, period] {
    while (!stop_.WaitForNotificationWithTimeout(period)) ReturnFreeMemory();
  });
}

MemoryReturner::~MemoryReturner() {
  if (!thread_.joinable()) return;
  stop_.Notify();
  thread_.join();
}

}  // namespace mcdrop::server
