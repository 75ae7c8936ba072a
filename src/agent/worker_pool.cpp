#include "agent/worker_pool.hpp"

#include <fmt/format.h>
#include <pthread.h>
#include <sys/stat.h>
#include <spdlog/spdlog.h>

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

namespace {

// Creates <run_dir>/logs. Two mkdir calls in the common case (runs/ exists); the general
// create_directories, which stats every level first, only when runs/ is missing.
void MakeRunDirs(const std::filesystem::path &run_dir, std::error_code &ec) {
  std::filesystem::path logs = run_dir / "logs";
  if ((::mkdir(run_dir.c_str(), 0755) == 0 || errno == EEXIST) &&
      (::mkdir(logs.c_str(), 0755) == 0 || errno == EEXIST)) {
    ec.clear();
    return;
  }
  std::filesystem::create_directories(logs, ec);
}

}  // namespace

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

  std::filesystem::path run_dir = options_.data_dir / "runs" / run.id;
  std::error_code ec;
  if (route->second.connector->UsesRunDir()) MakeRunDirs(run_dir, ec);
  Result<connectors::Outcome> outcome =
      Error{Errc::kInternal, fmt::format("cannot create {}: {}", run_dir.string(), ec.message())};
  if (!ec) {
    connectors::RunContext ctx{.run = run,
                               .task_type = *route->second.type,
                               .data_dir = options_.data_dir,
                               .run_dir = run_dir,
                               .log_file = options_.data_dir / LogPath(run),
                               .stop = active->stop_token(),
                               .report_progress = [this, &active](const Progress &p) {
                                 active->ReportProgress(store_, p);
                               }};
    try {
      outcome = route->second.connector->Execute(ctx);
    } catch (const std::exception &e) {  // a connector bug must not take the agent down
      outcome = Error{Errc::kInternal, fmt::format("connector threw: {}", e.what())};
    }
  }
  keeper_.Unregister(run.id);
  Finish(worker, run, *active, std::move(outcome));
}

void WorkerPool::Finish(const std::string &worker, const Run &run, ActiveRun &active,
                        Result<connectors::Outcome> outcome) {
  const std::string &id = run.id;
  long long token = active.token();
  auto warn_on_error = [&id](const char *what, const Error &error) {
    spdlog::warn("{} not recorded run={} error={}", what, id, error.message);
  };
  if (outcome) {
    if (auto last = active.TakePendingProgress()) (void)store_.ReportProgress(id, token, *last);
    // A run that finished before it noticed a stop is done: say so. With a lost
    // lease the store refuses the stale token and the run stays with its new
    // owner.
    auto done = store_.Complete(id, token, outcome.value().result, outcome.value().files);
    if (done) {
      spdlog::info("run completed run={} worker={}", id, worker);
    } else if (done.error().code == Errc::kConflict) {
      spdlog::info("run finished after its lease was lost run={}", id);
    } else {
      warn_on_error("completion", done.error());
    }
    return;
  }
  const Error &error = outcome.error();
  switch (active.reason()) {
    case StopReason::kCancelled: {
      auto done = store_.MarkCancelled(id, token);
      if (done) {
        spdlog::info("run cancelled run={} worker={}", id, worker);
      } else {
        warn_on_error("cancellation", done.error());
      }
      return;
    }
    case StopReason::kLeaseLost:
      // Someone else may hold it now; any write of ours would carry a stale
      // token.
      spdlog::info("run abandoned after lease loss run={} worker={}", id, worker);
      return;
    case StopReason::kDrain: {
      auto done = store_.Release(id, token);
      if (done) {
        spdlog::info("run released for drain run={} worker={}", id, worker);
      } else {
        warn_on_error("release", done.error());
      }
      return;
    }
    case StopReason::kTimedOut: {
      std::string message = fmt::format("timed out after {} s", run.timeout_s);
      auto done = store_.Fail(id, token, message, /*retryable=*/false);
      if (done) {
        spdlog::info("run failed run={} worker={} error=\"{}\"", id, worker, message);
      } else {
        warn_on_error("failure", done.error());
      }
      return;
    }
    case StopReason::kNone: {
      bool retryable = error.code == Errc::kUnavailable || error.code == Errc::kInternal;
      auto done = store_.Fail(id, token, error.message, retryable);
      if (done) {
        spdlog::info("run failed run={} worker={} retrying={} error=\"{}\"", id, worker,
                     done.value() == store::FailOutcome::kRetrying, error.message);
      } else {
        warn_on_error("failure", done.error());
      }
      return;
    }
  }
}

}  // namespace gpuq::agent
