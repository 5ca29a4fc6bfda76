// A fixed set of std::threads running queued jobs; the compiler service uses it to compile many
// kernel variants at once (NVRTC is safe across programs). Destroying it waits for queued jobs.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace q4jit {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Queues a job; jobs must not throw (wrap their errors into their results).
  void submit(std::function<void()> job);
  // Returns when every submitted job has finished.
  void wait();

 private:
  void work();
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<std::function<void()>> jobs_;
  int running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace q4jit
