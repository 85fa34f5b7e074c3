// Copyright 2026 The mcdrop Authors.

#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>

#include "tests/testing/sync.h"

namespace mcdrop {
namespace {

TEST(ThreadPoolTest, RunsEveryTaskOnItsThreads) {
  ThreadPool pool(3);
  EXPECT_EQ(pool.size(), 3);
  EXPECT_EQ(pool.CurrentThreadIndex(), -1);
  std::mutex mu;
  std::set<int> indices;
  std::atomic<int> ran{0};
  testing::BlockingCounter counter(200);
  for (int i = 0; i < 200; ++i) {
    pool.Schedule([&] {
      {
        std::lock_guard<std::mutex> lock(mu);
        indices.insert(pool.CurrentThreadIndex());
      }
      ++ran;
      counter.DecrementCount();
    });
  }
  counter.Wait();
  EXPECT_EQ(ran.load(), 200);
  // A worker of another pool is not one of this pool's threads.
  ThreadPool other(1);
  testing::Notification checked;
  int seen = 0;
  other.Schedule([&] {
    seen = pool.CurrentThreadIndex();
    checked.Notify();
  });
  checked.WaitForNotification();
  EXPECT_EQ(seen, -1);
  for (int i : indices) {
    EXPECT_GE(i, 0);
    EXPECT_LT(i, 3);
  }
}

TEST(ThreadPoolTest, BusyCountsRunningTasks) {
  ThreadPool pool(2);
  testing::Notification release, started1, started2;
  pool.Schedule([&] {
    started1.Notify();
    release.WaitForNotification();
  });
  pool.Schedule([&] {
    started2.Notify();
    release.WaitForNotification();
  });
  started1.WaitForNotification();
  started2.WaitForNotification();
  EXPECT_EQ(pool.busy(), 2);
  pool.Schedule([] {});
  EXPECT_EQ(pool.queued(), 1);
  release.Notify();
}

TEST(ThreadPoolTest, DestructorRunsQueuedTasks) {
  std::atomic<int> ran{0};
  {
    ThreadPool pool(1);
    for (int i = 0; i < 50; ++i) pool.Schedule([&] { ++ran; });
  }
  EXPECT_EQ(ran.load(), 50);
}

TEST(ThreadPoolTest, TasksMayScheduleTasks) {
  ThreadPool pool(2);
  testing::Notification done;
  pool.Schedule([&] { pool.Schedule([&] { done.Notify(); }); });
  done.WaitForNotification();
}

}  // namespace
}  // namespace mcdrop
