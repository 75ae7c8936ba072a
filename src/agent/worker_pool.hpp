#pragma once
// The host's CPU worker pool: `workers` threads that claim runs of the
// service-less task types and execute them through their connectors. Claiming
// is batched: one idle worker claims in one store call for itself, every other
// idle worker, and a prefetch for the busy ones (up to 2 x workers claimed or
// running), and hands the extra leases out, so a burst of short runs costs one
// claim write per batch. Claimed runs are registered with the lease keeper at
// once. The pool holds its leases as one worker, "<agent_id>/cpu", whichever
// thread runs them. Only one worker claims
// at a time; when nothing is claimable it waits in store.WaitForWork(poll)
// while the other idle workers wait for it. Thread-safe.
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/lease_keeper.hpp"
#include "connectors/connector.hpp"
#include "store/store.hpp"

namespace gpuq::agent {

// A task type this pool runs, and the connector that runs it (both outlive the
// pool).
struct Route {
  const TaskType *type;
  connectors::Connector *connector;
};

struct WorkerPoolOptions {
  std::string agent_id;
  int workers = 4;
  std::map<std::string, Route> routes;  // by task type name
  Millis lease_ttl{10'000};
  Millis poll{200};
  std::filesystem::path data_dir;  // absolute
  Millis progress_interval{250};   // at most one progress write per run per interval
};

class WorkerPool {
 public:
  WorkerPool(store::Store &store, LeaseKeeper &keeper, WorkerPoolOptions options);
  ~WorkerPool();  // Drain(0) if still running
  WorkerPool(const WorkerPool &) = delete;
  WorkerPool &operator=(const WorkerPool &) = delete;

  void Start();

  // Stops claiming; waits up to `grace` for running runs (and runs already
  // claimed) to end; then stops the rest (they give their runs back with
  // store.Release) and joins the workers. Idempotent.
  void Drain(Millis grace);

 private:
  void WorkerLoop(int index);
  struct Claimed {
    store::Lease lease;
    std::shared_ptr<ActiveRun> active;  // registered with the keeper since the claim
  };
  std::optional<Claimed> NextLease(const std::string &worker);
  void Execute(const std::string &worker, store::Lease lease, std::shared_ptr<ActiveRun> active);

  store::Store &store_;
  LeaseKeeper &keeper_;
  const WorkerPoolOptions options_;
  std::vector<std::string> types_;
  const std::string holder_;  // the `worker` every lease of this pool names

  std::mutex mutex_;
  std::condition_variable changed_;  // queue, claimer, active count or draining changed
  std::deque<Claimed> queue_;        // claimed, not yet started
  bool claiming_ = false;            // a worker is inside Claim/WaitForWork
  bool in_claim_ = false;            // ... inside Claim itself: leases may be on their way
  int idle_waiting_ = 0;             // workers waiting for the claimer
  int active_ = 0;                   // runs being executed
  bool draining_ = false;
  std::atomic<bool> stop_all_{false};  // past the drain grace: stop every run
  std::vector<std::thread> threads_;
};

}  // namespace gpuq::agent
