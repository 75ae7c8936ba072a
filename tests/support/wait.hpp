#pragma once
// Waiting for a condition with a poll interval and a generous deadline: never a fixed sleep.
#include <chrono>
#include <functional>
#include <thread>

namespace gpuq::testing {

// Deadlines are generous: tests run under ASan on a busy 2-core machine.
inline constexpr std::chrono::seconds kDefaultDeadline{60};

// Polls `done` every `interval` until it returns true (-> true) or `deadline` passes (-> false).
inline bool WaitUntil(const std::function<bool()>& done,
                      std::chrono::milliseconds deadline = kDefaultDeadline,
                      std::chrono::milliseconds interval = std::chrono::milliseconds(10)) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(interval);
  }
}

}  // namespace gpuq::testing
