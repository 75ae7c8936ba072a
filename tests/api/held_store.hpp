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
  Result<std::vector<store::PendingRun>> PendingRuns(const std::vector<std::string>& types,
                                                     int limit) override {
    return inner_.PendingRuns(types, limit);
  }
  Result<std::optional<store::Lease>> ClaimRun(std::string_view id, std::string_view worker,
                                               std::string_view gpu, Millis lease_ttl) override {
    return inner_.ClaimRun(id, worker, gpu, lease_ttl);
  }
  Result<void> SetWaitingReason(std::string_view id,
                                const std::optional<std::string>& reason) override {
    return inner_.SetWaitingReason(id, reason);
  }
  Result<std::map<std::string, store::PendingStats>> PendingByType() override {
    return inner_.PendingByType();
  }
  Result<store::NamedLease> AcquireLease(std::string_view name, std::string_view holder,
                                         Millis ttl) override {
    return inner_.AcquireLease(name, holder, ttl);
  }
  Result<void> RenewLease(std::string_view name, long long token, Millis ttl) override {
    return inner_.RenewLease(name, token, ttl);
  }
  Result<void> ReleaseLease(std::string_view name, long long token) override {
    return inner_.ReleaseLease(name, token);
  }
  Result<bool> ForceReleaseLease(std::string_view name) override {
    return inner_.ForceReleaseLease(name);
  }
  Result<std::optional<store::NamedLease>> GetLease(std::string_view name) override {
    return inner_.GetLease(name);
  }
  Result<void> PutAgent(std::string_view id, const Json& state) override {
    return inner_.PutAgent(id, state);
  }
  Result<std::vector<store::AgentRecord>> ListAgents(Millis max_age) override {
    return inner_.ListAgents(max_age);
  }
  Result<std::string> PostCommand(std::string_view agent, std::string_view kind, const Json& args,
                                  TimePoint deadline) override {
    return inner_.PostCommand(agent, kind, args, deadline);
  }
  Result<std::vector<store::Command>> TakeCommands(std::string_view agent, int max,
                                                   Millis max_wait) override {
    return inner_.TakeCommands(agent, max, max_wait);
  }
  Result<void> ReplyCommand(std::string_view id, const Json& reply) override {
    return inner_.ReplyCommand(id, reply);
  }
  Result<std::optional<Json>> WaitReply(std::string_view id, Millis max_wait) override {
    return inner_.WaitReply(id, max_wait);
  }
  std::string Describe() const override { return inner_.Describe(); }
  Result<void> Ping() override { return inner_.Ping(); }

 private:
  store::Store& inner_;
  std::mutex mutex_;
  std::vector<std::pair<store::NewRun, SubmitCallback>> held_;  // guarded by mutex_
  std::vector<std::thread> callers_;                            // guarded by mutex_
};

}  // namespace gpuq::api::testing
