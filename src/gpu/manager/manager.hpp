#pragma once
// The GPU manager of one agent: every service instance on every GPU it owns, the VRAM
// tracker, and the placement policy of core/placement.hpp applied to live snapshots.
// It makes a service resident on a GPU (stopping idle services to make room, never a busy
// one, never starting what would not fit), serves the API's commands (start, stop, phase,
// release all), notices crashed instances, stops idle ones after their idle TTL, and
// reports its state for the agent's heartbeat.
//
// Thread-safety: every method may be called from any thread. Switches on one GPU are
// serialised by that GPU's mutex; switches on different GPUs run in parallel.
// Process services started with die_with_parent die when the *thread* that started them
// exits (PR_SET_PDEATHSIG), so callers that start services must be long-lived threads.
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/gpu_status.hpp"
#include "core/placement.hpp"
#include "core/result.hpp"
#include "core/service.hpp"
#include "gpu/runtime/runtime.hpp"
#include "gpu/vram/vram.hpp"

namespace gpuq::gpu {

class ServiceInstance;

struct ManagerOptions {
  std::string host;       // "host-a": GPUs are "host-a:0"
  std::vector<int> gpus;  // owned GPU indexes; empty = every GPU seen
  int reserve_mb = 512;
  Millis memory_wait{30'000};  // after stops: longest wait for the memory
  Millis health_interval{250};
  std::filesystem::path data_dir;  // services/<name>/gpu<N>.log and .pid
  bool die_with_parent = false;
  std::map<std::string, ServiceSpec> services;
  std::map<int, std::string> phases;
};

// Queued work that needs a service (from the store's pending runs per task type).
struct PendingWork {
  int runs = 0;
  int max_priority = 0;
};

// Makes the runtime of one instance (process/docker/external, or a fake in tests).
using RuntimeFactory = std::function<std::unique_ptr<ServiceRuntime>(const InstanceSpec&)>;

// A run's hold on a resident service (DESIGN.md's Acquire guard): the instance stays busy
// until the lease is destroyed. Move-only.
class ServiceLease {
 public:
  ServiceLease() = default;
  ServiceLease(ServiceLease&& other) noexcept;
  ServiceLease& operator=(ServiceLease&& other) noexcept;
  ~ServiceLease();

  const std::string& base_url() const { return base_url_; }
  int gpu() const { return gpu_; }
  // The GPU's UUID when it is a real one ("GPU-..."); empty on the sim backend.
  const std::string& gpu_uuid() const { return gpu_uuid_; }

 private:
  friend class Manager;
  class Manager* manager_ = nullptr;
  ServiceInstance* instance_ = nullptr;
  std::string base_url_;
  std::string gpu_uuid_;
  int gpu_ = -1;
  long long hold_id_ = 0;
};

struct CommandOutcome {
  bool success = true;
  std::vector<std::string> started;
  std::vector<std::string> stopped;
  std::vector<std::string> kept_busy;
  std::vector<std::string> requeued;  // run ids stopped by a forced stop
  std::optional<int> gpu;
  bool busy = false;  // a stop refused because the service serves runs
  std::string error;
};

class Manager {
 public:
  Manager(VramBackend& vram, RuntimeFactory runtimes, Clock& clock, ManagerOptions options);
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Queries the tracker, checks the owned GPUs exist, creates every instance and adopts the
  // ones already running. kInvalidArgument for a missing GPU, kUnavailable for the tracker.
  Result<void> Start();

  // Owned GPU indexes, in order.
  std::vector<int> Gpus() const;

  // Where a run of `service` with `priority` would go now (ChooseGpu over every owned GPU).
  Placement Place(const std::string& service, int priority) const;
  // The same on one GPU (PlanOnGpu).
  Placement PlaceOn(int gpu, const std::string& service, int priority) const;

  // Makes `service` resident on `gpu` and holds it for one run: evicts per the policy, waits
  // for the memory, starts it and waits for health. kResourceExhausted (message = the
  // waiting reason) when it cannot fit now; kUnavailable/kTimeout when it failed to start;
  // kNotFound for a service not allowed on that GPU. `on_forced_stop` is called (from
  // another thread) when a forced stop of the service must end this run.
  Result<ServiceLease> Acquire(const std::string& service, int gpu, int priority,
                               std::stop_token stop, std::string run_id = {},
                               std::function<void()> on_forced_stop = {});

  // The API's commands, answered once the state has settled.
  CommandOutcome StartService(const std::string& service);
  CommandOutcome StopService(const std::string& service, bool force);
  CommandOutcome PreparePhase(int phase);
  CommandOutcome ReleaseAll();

  // Services allowed on `gpu` (an instance exists for each).
  std::vector<std::string> ServicesOn(int gpu) const;

  // Services resident (starting/ready/busy) on `gpu`.
  std::vector<std::string> ResidentServices(int gpu) const;

  // Queued work per service, for the policy (a service's priority protects it).
  void SetPendingWork(std::map<std::string, PendingWork> pending);

  // Periodic upkeep: crashed instances -> error, idle TTLs, measured VRAM. Never blocks on a
  // GPU that is switching.
  void Tick();

  // The heartbeat's report (lock fields left for the agent to fill).
  AgentGpuReport Report() const;

  // Called after any instance state change (so the agent can publish at once).
  void OnChange(std::function<void()> callback);

 private:
  struct Gpu;
  friend class ServiceLease;
  void ReleaseHold(ServiceInstance* instance, long long hold_id);
  Gpu* FindGpu(int index) const;
  GpuSnapshot Snapshot(const Gpu& gpu, const std::vector<GpuMemory>* memory) const;
  std::vector<GpuMemory> QueryMemory() const;
  Result<void> MakeResident(Gpu& gpu, ServiceInstance& instance, int priority,
                            std::stop_token stop);
  Result<void> StopSet(Gpu& gpu, const std::vector<std::string>& names, bool force,
                       std::vector<std::string>* requeued);
  Result<void> WaitForMemory(const Gpu& gpu, int need_mb, const std::vector<int>& gone_pids);
  void Changed();

  VramBackend& vram_;
  RuntimeFactory runtimes_;
  Clock& clock_;
  const ManagerOptions options_;
  std::vector<std::unique_ptr<Gpu>> gpus_;

  mutable std::mutex mutex_;  // pending_, holds_, on_change_
  std::map<std::string, PendingWork> pending_;
  long long next_hold_ = 1;
  struct Hold {
    ServiceInstance* instance;
    std::string run_id;
    std::function<void()> on_forced_stop;
  };
  std::map<long long, Hold> holds_;
  std::function<void()> on_change_;
};

}  // namespace gpuq::gpu
