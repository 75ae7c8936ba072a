#include "agent/lease_keeper.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <vector>

namespace gpuq::agent {

LeaseKeeper::LeaseKeeper(store::Store &store, Millis heartbeat, Millis lease_ttl)
    : store_(store), heartbeat_(heartbeat), lease_ttl_(lease_ttl) {}

LeaseKeeper::~LeaseKeeper() { Stop(); }

void LeaseKeeper::Start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void LeaseKeeper::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void LeaseKeeper::Register(std::shared_ptr<ActiveRun> run) {
  bool earlier = false;
  {
    std::lock_guard lock(mutex_);
    // Wake the loop only for a deadline before its planned wake-up: at thousands of short runs
    // a second, a wake-up per run would cost a context switch each.
    earlier = run->deadline() && *run->deadline() < sleeping_until_;
    runs_[run->id()] = std::move(run);
  }
  if (earlier) wake_.notify_all();
}

void LeaseKeeper::Unregister(const std::string &id) {
  std::lock_guard lock(mutex_);
  runs_.erase(id);
}

void LeaseKeeper::StopAll(StopReason reason) {
  std::lock_guard lock(mutex_);
  for (auto &[id, run] : runs_) run->Stop(reason);
}

void LeaseKeeper::KeepNamed(const std::string &name, long long token) {
  std::lock_guard lock(mutex_);
  named_[name] = token;
}

void LeaseKeeper::ForgetNamed(const std::string &name) {
  std::lock_guard lock(mutex_);
  named_.erase(name);
}

size_t LeaseKeeper::size() const {
  std::lock_guard lock(mutex_);
  return runs_.size();
}

void LeaseKeeper::Loop() {
  pthread_setname_np(pthread_self(), "gpuq-leases");
  auto next_heartbeat = std::chrono::steady_clock::now() + heartbeat_;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    auto now = std::chrono::steady_clock::now();
    // Deadlines are checked on every wake-up; heartbeats only when due.
    for (auto &[id, run] : runs_) {
      if (run->deadline() && now >= *run->deadline() && run->reason() == StopReason::kNone) {
        run->Stop(StopReason::kTimedOut);
      }
    }
    if (now >= next_heartbeat) {
      lock.unlock();
      Tick();
      lock.lock();
      next_heartbeat = std::chrono::steady_clock::now() + heartbeat_;
      continue;  // re-check stopping_ and deadlines
    }
    auto wake_at = next_heartbeat;
    for (auto &[id, run] : runs_) {
      if (run->deadline() && run->reason() == StopReason::kNone && *run->deadline() < wake_at) {
        wake_at = *run->deadline();
      }
    }
    sleeping_until_ = wake_at;
    wake_.wait_until(lock, wake_at);
    sleeping_until_ = SteadyTime::min();  // awake: the loop rechecks deadlines anyway
  }
}

void LeaseKeeper::Tick() {
  std::vector<std::shared_ptr<ActiveRun>> runs;
  std::map<std::string, long long> named;
  {
    std::lock_guard lock(mutex_);
    runs.reserve(runs_.size());
    for (auto &[id, run] : runs_) runs.push_back(run);
    named = named_;
  }
  for (const auto &[name, token] : named) {
    auto renewed = store_.RenewLease(name, token, lease_ttl_);
    if (!renewed && renewed.error().code == Errc::kConflict) {
      spdlog::warn("lease lost lease={} error={}", name, renewed.error().message);
      std::lock_guard lock(mutex_);
      auto it = named_.find(name);
      if (it != named_.end() && it->second == token) named_.erase(it);
    }
  }
  // Store calls happen without the lock so workers can register and unregister
  // meanwhile.
  for (auto &run : runs) {
    auto status = store_.Heartbeat(run->id(), run->token(), lease_ttl_);
    if (!status) {
      if (status.error().code == Errc::kConflict || status.error().code == Errc::kNotFound) {
        spdlog::warn("lease lost run={} error={}", run->id(), status.error().message);
        run->Stop(StopReason::kLeaseLost);
      } else {
        // The lease may still be ours; the next heartbeat tries again before it
        // expires.
        spdlog::warn("heartbeat failed run={} error={}", run->id(), status.error().message);
      }
      continue;
    }
    if (status.value().cancel_requested) run->Stop(StopReason::kCancelled);
    run->FlushProgress(store_);
  }
}

}  // namespace gpuq::agent
