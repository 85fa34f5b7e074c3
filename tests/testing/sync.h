// Copyright 2026 The mcdrop Authors.
//
// Notification and BlockingCounter for tests, on std::mutex and
// std::condition_variable so that ThreadSanitizer sees them (Debian's abseil,
// whose absl::Notification would do, carries no TSan annotations).

#ifndef MCDROP_TESTS_TESTING_SYNC_H_
#define MCDROP_TESTS_TESTING_SYNC_H_

#include <condition_variable>
#include <mutex>

namespace mcdrop::testing {

class Notification {
 public:
  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }
  void WaitForNotification() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return done_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

class BlockingCounter {
 public:
  explicit BlockingCounter(int count) : count_(count) {}
  void DecrementCount() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--count_ == 0) cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return count_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_;
};

}  // namespace mcdrop::testing

#endif  // MCDROP_TESTS_TESTING_SYNC_H_
