#pragma once
// One run an agent worker is executing: its lease, why it was asked to stop,
// its deadline and its throttled progress. Shared by the worker that executes
// it and the lease keeper that heartbeats it (both hold a std::shared_ptr).
// Thread-safe.
#include <atomic>
#include <chrono>
#include <mutex>
#include <utility>
#include <optional>
#include <stop_token>
#include <string>

#include "core/run.hpp"
#include "store/store.hpp"

namespace gpuq::agent {

// kRequeue: the run's service was stopped by force; the run goes back to the queue.
enum class StopReason { kNone, kCancelled, kLeaseLost, kTimedOut, kDrain, kRequeue };

using SteadyTime = std::chrono::steady_clock::time_point;

class ActiveRun {
 public:
  ActiveRun(std::string id, long long token, std::optional<SteadyTime> deadline,
            Millis progress_interval)
      : id_(std::move(id)),
        token_(token),
        deadline_(deadline),
        progress_interval_(progress_interval) {}

  const std::string &id() const { return id_; }
  long long token() const { return token_; }
  std::optional<SteadyTime> deadline() const { return deadline_; }
  std::stop_token stop_token() const { return stop_.get_token(); }

  // Asks the connector to stop. The first reason wins; later ones are ignored.
  void Stop(StopReason reason) {
    StopReason none = StopReason::kNone;
    if (reason_.compare_exchange_strong(none, reason)) stop_.request_stop();
  }
  StopReason reason() const { return reason_.load(); }

  // Writes progress at most once per interval; a newer report in between waits
  // for the next Report or FlushProgress. Store errors are ignored: progress is
  // advisory.
  void ReportProgress(store::Store &store, const Progress &progress) {
    std::lock_guard lock(progress_mutex_);
    auto now = std::chrono::steady_clock::now();
    if (last_progress_write_ && now - *last_progress_write_ < progress_interval_) {
      pending_progress_ = progress;
      return;
    }
    pending_progress_.reset();
    last_progress_write_ = now;
    (void)store.ReportProgress(id_, token_, progress);
  }

  // The last progress the throttle held back, if any: a run that finishes must not be left
  // showing an earlier step ("80%" on a completed render).
  std::optional<Progress> TakePendingProgress() {
    std::lock_guard lock(progress_mutex_);
    return std::exchange(pending_progress_, std::nullopt);
  }

  void FlushProgress(store::Store &store) {
    std::lock_guard lock(progress_mutex_);
    if (!pending_progress_) return;
    auto now = std::chrono::steady_clock::now();
    if (last_progress_write_ && now - *last_progress_write_ < progress_interval_) return;
    last_progress_write_ = now;
    (void)store.ReportProgress(id_, token_, *pending_progress_);
    pending_progress_.reset();
  }

 private:
  const std::string id_;
  const long long token_;
  const std::optional<SteadyTime> deadline_;
  const Millis progress_interval_;
  std::stop_source stop_;
  std::atomic<StopReason> reason_{StopReason::kNone};

  std::mutex progress_mutex_;
  std::optional<SteadyTime> last_progress_write_;
  std::optional<Progress> pending_progress_;
};

}  // namespace gpuq::agent
