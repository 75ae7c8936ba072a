#include "agent/worker_pool.hpp"

#include <fmt/format.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include "agent/run_executor.hpp"

namespace gpuq::agent {

WorkerPool::WorkerPool(store::Store &store, LeaseKeeper &keeper, WorkerPoolOptions options)
    : store_(store),
      keeper_(keeper),
      options_(std::move(options)),
      holder_(options_.agent_id + "/cpu") {
  for (const auto &[name, route] : options_.routes) types_.push_back(name);
}

WorkerPool::~WorkerPool() { Drain(Millis(0)); }

void WorkerPool::Start() {
  if (types_.empty()) return;  // nothing to run: no thread would ever claim
  for (int i = 0; i < options_.workers; ++i) {
    threads_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

void WorkerPool::Drain(Millis grace) {
  std::unique_lock lock(mutex_);
  draining_ = true;
  changed_.notify_all();
  changed_.wait_for(lock, grace, [this] { return active_ == 0 && queue_.empty() && !in_claim_; });
  lock.unlock();

  // Set before StopAll: a run registered after StopAll's sweep sees the flag
  // itself.
  stop_all_ = true;
  keeper_.StopAll(StopReason::kDrain);
  for (auto &thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();

  lock.lock();
  std::deque<Claimed> unstarted = std::move(queue_);
  queue_.clear();
  lock.unlock();
  for (const auto &[lease, active] : unstarted) {
    keeper_.Unregister(lease.run.id);
    auto released = store_.Release(lease.run.id, lease.token);
    if (!released) {
      spdlog::warn("release failed run={} error={}", lease.run.id, released.error().message);
    }
  }
}

void WorkerPool::WorkerLoop(int index) {
  std::string worker = fmt::format("{}/cpu{}", options_.agent_id, index);
  std::string thread_name = fmt::format("gpuq-cpu{}", index).substr(0, 15);
  pthread_setname_np(pthread_self(), thread_name.c_str());
  while (auto claimed = NextLease(worker)) {
    Execute(worker, std::move(claimed->lease), std::move(claimed->active));
    std::lock_guard lock(mutex_);
    --active_;
    changed_.notify_all();
  }
}

std::optional<WorkerPool::Claimed> WorkerPool::NextLease(const std::string &worker) {
  std::unique_lock lock(mutex_);
  while (true) {
    // Claimed runs are started even while draining: they are ours already. Past
    // the grace they are stopped at once and released (Execute sees stop_all_).
    if (!queue_.empty()) {
      Claimed claimed = std::move(queue_.front());
      queue_.pop_front();
      ++active_;
      return claimed;
    }
    if (draining_) return std::nullopt;
    if (claiming_) {
      ++idle_waiting_;
      changed_.wait(lock);
      --idle_waiting_;
      continue;
    }
    // This worker claims for itself, every worker waiting behind it, and as many again for
    // the busy ones to take when they finish: short runs then cost a claim per 2x workers,
    // not per idle worker. Claimed runs are registered with the lease keeper at once, so a
    // run that waits in the queue behind long ones keeps its lease.
    claiming_ = true;
    in_claim_ = true;
    int want = std::max(1, 2 * options_.workers - active_ - static_cast<int>(queue_.size()));
    lock.unlock();
    auto claimed = store_.Claim(store::ClaimRequest{
        .worker = holder_, .types = types_, .lease_ttl = options_.lease_ttl, .max_runs = want});
    std::vector<Claimed> ready;
    if (claimed) {
      for (auto &lease : claimed.value()) {
        std::optional<SteadyTime> deadline;  // counted from the claim, as started_at is
        if (lease.run.timeout_s > 0) {
          deadline = std::chrono::steady_clock::now() + std::chrono::seconds(lease.run.timeout_s);
        }
        auto active = std::make_shared<ActiveRun>(lease.run.id, lease.token, deadline,
                                                  options_.progress_interval);
        keeper_.Register(active);
        ready.push_back(Claimed{std::move(lease), std::move(active)});
      }
    }
    lock.lock();
    in_claim_ = false;
    bool got_work = !ready.empty();
    if (got_work) {
      for (auto &c : ready) queue_.push_back(std::move(c));
    } else {
      if (!claimed) {
        spdlog::warn("claim failed worker={} error={}", worker, claimed.error().message);
      }
      lock.unlock();
      store_.WaitForWork(options_.poll);
      lock.lock();
    }
    claiming_ = false;
    changed_.notify_all();  // hand out the leases, or let another worker claim
  }
}

void WorkerPool::Execute(const std::string &worker, store::Lease lease,
                         std::shared_ptr<ActiveRun> active) {
  const Run &run = lease.run;
  auto route = options_.routes.find(run.type);
  if (route == options_.routes.end()) {  // Claim only returns our types: a store bug
    keeper_.Unregister(run.id);
    (void)store_.Fail(run.id, lease.token, fmt::format("no connector for task type {}", run.type),
                      false);
    return;
  }
  // `active` is co-owned by the lease keeper while registered (since the claim).
  if (stop_all_) active->Stop(StopReason::kDrain);
  spdlog::info("run claimed run={} type={} worker={} attempt={}", run.id, run.type, worker,
               run.attempts);
  auto outcome = RunAttempt(store_, Attempt{.worker = worker,
                                            .run = run,
                                            .active = *active,
                                            .type = *route->second.type,
                                            .connector = *route->second.connector,
                                            .data_dir = options_.data_dir});
  keeper_.Unregister(run.id);
  FinishAttempt(store_, worker, run, *active, std::move(outcome));
}

}  // namespace gpuq::agent
