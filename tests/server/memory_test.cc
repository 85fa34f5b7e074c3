// Copyright 2026 The mcdrop Authors.

#include "server/memory.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "core/engine.h"
#include "server/metrics.h"

namespace mcdrop::server {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizerAllocator = true;
#else
constexpr bool kSanitizerAllocator = false;
#endif

constexpr int64_t kMiB = int64_t{1} << 20;

// 48 MiB of small blocks, touched, then freed except for one block made last
// (which keeps the top of the arena in use, so glibc's own trimming of the
// top cannot return the pages). The pages stay resident until something
// hands them back. Returns the pinning block; free it when done.
void* AllocateAndFreeBelowAPin() {
  std::vector<void*> blocks;
  for (int64_t i = 0; i < 48 * kMiB / 512; ++i) {
    void* b = std::malloc(512);
    std::memset(b, 1, 512);
    blocks.push_back(b);
  }
  void* pin = std::malloc(512);
  std::memset(pin, 1, 512);
  for (void* b : blocks) std::free(b);
  return pin;
}

TEST(MemoryTest, ReadsResidentSizeAndLiveHeap) {
  const MemoryUsage before = ReadMemoryUsage();
  EXPECT_GT(before.resident_bytes, 0);
  if (kSanitizerAllocator) GTEST_SKIP() << "malloc is the sanitizer's here";
  std::vector<char> block(64 * kMiB, 1);
  const MemoryUsage during = ReadMemoryUsage();
  EXPECT_GE(during.heap_in_use - before.heap_in_use, 64 * kMiB);
  EXPECT_GE(during.heap_held, during.heap_in_use);
  EXPECT_GE(during.resident_bytes - before.resident_bytes, 60 * kMiB);
  block = std::vector<char>();
  EXPECT_LT(ReadMemoryUsage().heap_in_use, during.heap_in_use - 60 * kMiB);
}

TEST(MemoryTest, ReturnFreeMemoryGivesFreedPagesBack) {
  if (kSanitizerAllocator) GTEST_SKIP() << "malloc is the sanitizer's here";
  const int64_t base = ReadMemoryUsage().resident_bytes;
  void* pin = AllocateAndFreeBelowAPin();
  const int64_t held = ReadMemoryUsage().resident_bytes;
  ASSERT_GE(held - base, 40 * kMiB) << "freed pages should still be resident";
  EXPECT_TRUE(ReturnFreeMemory());
  EXPECT_LT(ReadMemoryUsage().resident_bytes, held - 32 * kMiB);
  std::free(pin);
}

TEST(MemoryTest, ReturnerGivesFreedPagesBackOnItsPeriod) {
  if (kSanitizerAllocator) GTEST_SKIP() << "malloc is the sanitizer's here";
  const int64_t base = ReadMemoryUsage().resident_bytes;
  void* pin = AllocateAndFreeBelowAPin();
  const int64_t held = ReadMemoryUsage().resident_bytes;
  ASSERT_GE(held - base, 40 * kMiB) << "freed pages should still be resident";
  {
    MemoryReturner returner(absl::Milliseconds(10));
    for (int i = 0; i < 500; ++i) {
      if (ReadMemoryUsage().resident_bytes < held - 32 * kMiB) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  EXPECT_LT(ReadMemoryUsage().resident_bytes, held - 32 * kMiB);
  std::free(pin);
}

TEST(MemoryTest, ReturnerStopsWhenDestroyedWithoutWaitingAPeriod) {
  const auto start = std::chrono::steady_clock::now();
  { MemoryReturner returner(absl::Hours(1)); }
  { MemoryReturner disabled(absl::ZeroDuration()); }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST(MemoryTest, MetricsExportTheMemoryGauges) {
  Engine engine({.threads = 1});
  auto metrics = Metrics::Create("", &engine);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const std::string text = (*metrics)->Text();
  for (const char* name :
       {"process_resident_memory_bytes ", "mcdrop_heap_in_use_bytes ",
        "mcdrop_heap_held_bytes "}) {
    EXPECT_NE(text.find(std::string("\n") + name), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace mcdrop::server
