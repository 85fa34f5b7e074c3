// Copyright 2026 The mcdrop Authors.
//
// The server's memory as the allocator sees it, and the policy that keeps its
// resident size tracking what is live. glibc's malloc, left to itself, holds
// freed pages: its mmap and trim thresholds only ever rise, and a block still
// in use near the top of an arena keeps every free page below it resident.
// Under steady load the server's RSS then climbs in steps of a few hundred kB
// with the live heap flat, which a leak check on RSS cannot tell from a leak.
// PinAllocatorPolicy fixes the thresholds; a MemoryReturner gives free pages
// back to the system on a period (malloc_trim), so RSS follows the live heap.

#ifndef MCDROP_SERVER_MEMORY_H_
#define MCDROP_SERVER_MEMORY_H_

#include <cstdint>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace mcdrop::server {

struct MemoryUsage {
  int64_t resident_bytes = 0;  // the process's RSS (/proc/self/statm)
  int64_t heap_in_use = 0;     // bytes malloc has handed out and not had back
  int64_t heap_held = 0;       // bytes malloc holds from the system, in use
                               // or free (arenas and mmapped blocks)
};

// A snapshot. Under a sanitizer (which replaces malloc) the heap figures are
// glibc's, not the sanitizer allocator's.
MemoryUsage ReadMemoryUsage();

// Fixed mmap (128 kB) and trim (256 kB) thresholds instead of glibc's rising
// ones, and at most one arena per core (at least 2). Call once, early in
// main, before other threads start.
void PinAllocatorPolicy();

// Gives the free pages of every arena back to the system (malloc_trim(0)).
// Returns true if any memory was released.
bool ReturnFreeMemory();

// Calls ReturnFreeMemory every `period` on a thread of its own, from
// construction until destruction (which joins it). A zero or negative period
// starts no thread.
class MemoryReturner {
 public:
  explicit MemoryReturner(absl::Duration period);
  ~MemoryReturner();
  MemoryReturner(const MemoryReturner&) = delete;
  MemoryReturner& operator=(const MemoryReturner&) = delete;

 private:
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace mcdrop::server

#endif  // MCDROP_SERVER_MEMORY_H_
