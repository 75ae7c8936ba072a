#pragma once
// The GPU side of an agent: one worker thread per owned GPU, the command loop that serves
// the API's /gpu/* commands from the store's queue, and the reporter that publishes the GPU
// manager's state with every heartbeat (and at once after a change).
//
// A GPU worker picks the next run with core's PickNext (priority, aging, resident service
// first) among the pending runs of the task types its GPU can serve, takes it only when this
// GPU is where it fits best (or it fits here without evicting anything), claims it, holds
// the GPU lock ("lock:<host>:<gpu>") for the attempt, makes the service resident through
// the manager and runs the connector against it. A run that cannot be placed stays pending
// with a waiting_reason. Each owned GPU is held with an ownership lease
// ("owner:<host>:<gpu>"), so a second agent on the same GPUs is refused at start.
//
// Threads: workers, two command threads and the reporter are long-lived (services they start
// may die with the thread that started them: PR_SET_PDEATHSIG). Start and Drain are called
// from one thread.
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/lease_keeper.hpp"
#include "agent/worker_pool.hpp"
#include "core/placement.hpp"
#include "gpu/manager/manager.hpp"
#include "store/store.hpp"

namespace gpuq::agent {

struct GpuHostOptions {
  std::string agent_id;
  std::string host;                     // "<host>" of "host:0"
  std::map<std::string, Route> routes;  // service-bound task types, by name
  Millis lease_ttl{10'000};
  Millis heartbeat{2'000};  // report and ownership renewal interval
  Millis poll{200};
  Millis lock_ttl{10'000};
  ClaimPolicy claim;
  std::filesystem::path data_dir;
  Millis progress_interval{250};
};

class GpuHost {
 public:
  GpuHost(store::Store& store, LeaseKeeper& keeper, gpu::Manager& manager, GpuHostOptions options);
  ~GpuHost();  // Drain(0) if running
  GpuHost(const GpuHost&) = delete;
  GpuHost& operator=(const GpuHost&) = delete;

  // Takes the ownership lease of every GPU (kConflict naming the owner when another agent
  // holds one), publishes the first report and starts the threads.
  Result<void> Start();

  // Stops claiming and commands; running runs get `grace` to finish, then are stopped and
  // given back; ownership leases are released. Idempotent.
  void Drain(Millis grace);

  // Publishes the manager's report now (commands answer after this).
  void Publish();

 private:
  void WorkerLoop(int gpu);
  bool TakeOne(int gpu, const std::vector<std::string>& types);
  void RunClaimed(int gpu, store::Lease lease, const Route& route, const std::string& service);
  void CommandLoop(int index);
  Json Execute(const store::Command& command);
  void ReporterLoop();
  void RefreshPendingWork();
  void NoteWaiting(const std::string& run_id, const std::string& reason);
  std::string GpuName(int gpu) const;

  store::Store& store_;
  LeaseKeeper& keeper_;
  gpu::Manager& manager_;
  const GpuHostOptions options_;
  std::map<int, long long> owned_;  // gpu -> ownership lease token

  std::mutex mutex_;
  std::condition_variable changed_;
  bool stopping_ = false;  // no more claims or commands
  bool dirty_ = false;     // a state change waits to be published
  int active_ = 0;         // runs being executed
  std::map<std::string, std::shared_ptr<ActiveRun>> running_;  // co-owned with the keeper
  std::map<std::string, std::string> waiting_;  // run id -> last waiting_reason written
  std::mutex publish_mutex_;
  std::vector<std::thread> threads_;
  bool started_ = false;
};

}  // namespace gpuq::agent
