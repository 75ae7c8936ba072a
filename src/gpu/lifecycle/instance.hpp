#pragma once
// One service instance (a service on one GPU) and its life cycle:
//   stopped -> starting -> ready <-> busy -> stopping -> stopped, and error.
// `starting` lasts from launch until the first healthy reply; `error` means it failed to start
// or its process or container went away unexpectedly; the next use starts it again.
// The sim ledger charges the instance from launch until its process or container is gone.
//
// Thread-safety: Start, Stop and Adopt are called by one thread at a time (the manager holds
// the GPU's switch mutex); the rest may be called from any thread.
#include <memory>
#include <mutex>
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

struct InstanceOptions {
  InstanceSpec spec;            // templates filled for this GPU
  std::string base_url;         // what connectors talk to: "http://127.0.0.1:8188"
  std::string health_url;       // filled
  std::string evict_url;        // filled evict_api, empty when none
  Millis health_interval{250};  // longest interval between health polls
};

class ServiceInstance {
 public:
  ServiceInstance(InstanceOptions options, std::unique_ptr<ServiceRuntime> runtime,
                  VramBackend& vram, Clock& clock);
  ServiceInstance(const ServiceInstance&) = delete;
  ServiceInstance& operator=(const ServiceInstance&) = delete;

  const ServiceSpec& spec() const { return options_.spec.service; }
  const std::string& name() const { return options_.spec.service.name; }
  int gpu() const { return options_.spec.gpu; }
  const std::string& base_url() const { return options_.base_url; }
  const std::string& key() const { return options_.spec.key; }
  bool external() const { return spec().kind == ServiceKind::kExternal; }
  bool slot() const { return spec().kind == ServiceKind::kSlot; }

  // Takes over an instance that is already running and healthy (after an agent restart).
  // External instances are always "adopted". true when it is now ready.
  bool Adopt();

  // Launches the instance and waits until it is healthy (health polled with a short,
  // growing interval; the deadline is the service's health_timeout; a process that exits
  // first fails at once). On failure the instance is stopped again and left in `error`.
  Result<void> Start(std::stop_token stop);

  // Stops the instance (evict_api first when set) and returns once its process or
  // container is gone. Refuses (kConflict) while it serves runs unless `force`.
  Result<void> Stop(bool force);

  // A run starts using the instance: ready/busy with room (active < max_concurrency).
  bool TryAcquire();
  void ReleaseRun();

  // Notices an unexpected exit: a resident instance whose process or container is gone
  // becomes `error` (and is discharged). Returns false when that happened now.
  bool CheckAlive();

  ServiceState state() const;
  int active_runs() const;
  int planning_mb() const;  // measured when known, else declared
  void SetMeasured(int mb);
  std::vector<int> Pids();

  // The policy's view, with the queue's pending work for this service.
  ServiceSlot Slot(int pending_runs, int pending_max_priority) const;
  ServiceInstanceStatus Status() const;

 private:
  void SetState(ServiceState state, std::string error = {});
  void Charge(int mb);
  void Discharge();

  const InstanceOptions options_;
  std::unique_ptr<ServiceRuntime> runtime_;
  VramBackend& vram_;
  Clock& clock_;

  mutable std::mutex mutex_;
  ServiceState state_ = ServiceState::kStopped;
  std::string error_;
  int active_ = 0;
  std::optional<int> measured_mb_;
  bool charged_ = false;
  Millis reload_time_;
  TimePoint last_used_{};
};

}  // namespace gpuq::gpu
