#pragma once
// A Store that forwards to a real one but holds every SubmitAsync until ReleaseSubmits(), then runs
// the submit and calls back on a thread of its own, as a store's writer thread would. For
// tests of what the server does while a submit is in flight.
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "store/store.hpp"

namespace gpuq::api::testing {

class HeldSubmitStore final : public store::Store {
 public:
  explicit HeldSubmitStore(store::Store& inner) : inner_(inner) {}
  ~HeldSubmitStore() override {
    for (auto& thread : callers_) thread.join();
  }

  void SubmitAsync(store::NewRun run, SubmitCallback done) override {
    std::lock_guard lock(mutex_);
    held_.emplace_back(std::move(run), std::move(done));
  }

  size_t held() {
    std::lock_guard lock(mutex_);
    return held_.size();
  }

  // Submits every held run on a new thread and calls its callback there.
  void ReleaseSubmits() {
    std::lock_guard lock(mutex_);
    for (auto& [run, done] : held_) {
      callers_.emplace_back([this, run = std::move(run), done = std::move(done)] {
        done(inner_.Submit(run));
      });
    }
    held_.clear();
  }

  Result<store::Submitted> Submit(const store::NewRun& run) override { return inner_.Submit(run); }
  Result<Run> Get(std::string_view id) override { return inner_.Get(id); }
  Result<store::RunPage> List(const store::RunFilter& filter) override {
    return inner_.List(filter);
  }
  Result<std::vector<store::Lease>> Claim(const store::ClaimRequest& request) override {
    return inner_.Claim(request);
  }
  Result<store::LeaseStatus> Heartbeat(std::string_view id, long long token, Millis ttl) override {
    return inner_.Heartbeat(id, token, ttl);
  }
  Result<void> ReportProgress(std::string_view id, long long token,
                              const Progress& progress) override {
    return inner_.ReportProgress(id, token, progress);
  }
  Result<void> Complete(std::string_view id, long long token, const Json& result,
                        const std::vector<std::string>& files) override {
    return inner_.Complete(id, token, result, files);
  }
  Result<store::FailOutcome> Fail(std::string_view id, long long token, std::string error,
                                  bool retryable) override {
    return inner_.Fail(id, token, std::move(error), retryable);
  }
  Result<void> MarkCancelled(std::string_view id, long long token) override {
    return inner_.MarkCancelled(id, token);
  }
  Result<void> Release(std::string_view id, long long token) override {
    return inner_.Release(id, token);
  }
  Result<Run> Cancel(std::string_view id) override { return inner_.Cancel(id); }
  Result<Run> Retry(std::string_view id) override { return inner_.Retry(id); }
  Result<int> RequeueExpired() override { return inner_.RequeueExpired(); }
  Result<int> RequeueHeldBy(std::string_view worker_prefix) override {
    return inner_.RequeueHeldBy(worker_prefix);
  }
  Result<std::vector<std::string>> PurgeFinishedBefore(TimePoint cutoff) override {
    return inner_.PurgeFinishedBefore(cutoff);
  }
  void WaitForWork(Millis max_wait) override { inner_.WaitForWork(max_wait); }
  std::string Describe() const override { return inner_.Describe(); }
  Result<void> Ping() override { return inner_.Ping(); }

 private:
  store::Store& inner_;
  std::mutex mutex_;
  std::vector<std::pair<store::NewRun, SubmitCallback>> held_;  // guarded by mutex_
  std::vector<std::thread> callers_;                            // guarded by mutex_
};

}  // namespace gpuq::api::testing
