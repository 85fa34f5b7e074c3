// Copyright 2026 The mcdrop Authors.

#ifndef MCDROP_CORE_THREAD_POOL_H_
#define MCDROP_CORE_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace mcdrop {

// A fixed set of worker threads running tasks in FIFO order.
//
// Thread-safe: Schedule may be called from any thread, including from a task.
// The destructor runs every task already scheduled, then joins the threads;
// scheduling from outside the pool during destruction is not allowed.
class ThreadPool {
 public:
  // Starts `num_threads` (>= 1) worker threads.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Queues `task` to run on some worker thread.
  void Schedule(std::function<void()> task);

  int size() const { return static_cast<int>(threads_.size()); }
  // Workers running a task at this instant (a gauge for monitoring).
  int busy() const { return busy_.load(std::memory_order_relaxed); }
  // Tasks waiting for a worker at this instant.
  int queued() const;

  // The index in [0, size()) of the calling thread when it is one of this
  // pool's workers, else -1.
  int CurrentThreadIndex() const;

 private:
  void WorkerLoop(int index);

  // Standard primitives so that ThreadSanitizer sees the synchronisation
  // (Debian's abseil carries no TSan annotations).
  mutable std::mutex mu_;
  std::condition_variable work_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int> busy_{0};
  std::vector<std::thread> threads_;
};

}  // namespace mcdrop

#endif  // MCDROP_CORE_THREAD_POOL_H_
