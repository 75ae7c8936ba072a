#pragma once
// How one service instance (a service on one GPU) is started and stopped:
// ProcessRuntime (fork/exec of an argv in its own process group, pid file, signals to the
// group, never kill by name), DockerRuntime (Docker Engine API over its unix socket) and
// ExternalRuntime (someone else runs it: health only). Health checking lives in health.hpp.
//
// Thread-safety: one instance's runtime is driven by one thread at a time (its lifecycle
// holds a mutex); Running()/Pids() may be called from a status thread concurrently.
#include <filesystem>
#include <map>
#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/result.hpp"
#include "core/service.hpp"

namespace gpuq::http {
class DockerClient;
}

namespace gpuq::gpu {

// A service placed on one GPU, with its templates filled.
struct InstanceSpec {
  ServiceSpec service;           // argv, env, container, stop_argv, url already filled
  int gpu = 0;                   // host GPU index; CUDA_VISIBLE_DEVICES for the instance
  std::string gpu_uuid;          // when the backend knows it (preferred for CUDA_VISIBLE_DEVICES)
  int port = 0;                  // base_port + gpu (0 when the service has no base_port)
  std::filesystem::path log_file;  // <data_dir>/services/<name>/gpu<N>.log
  std::filesystem::path pid_file;  // process: where the pid is kept (adoption after a restart)
  std::string key;               // "comfyui@0": the VRAM ledger key and log name
  bool die_with_parent = false;  // process: PR_SET_PDEATHSIG (tests and the demo's fakes)
};

class ServiceRuntime {
 public:
  virtual ~ServiceRuntime() = default;

  // Finds an instance that is already running (a live pid from the pid file whose process
  // group is its own; a running container). true when adopted; false when there is none.
  virtual Result<bool> Adopt() = 0;

  // Launches the instance and returns without waiting for health. process: fork/exec with
  // CUDA_VISIBLE_DEVICES, PORT and env set, stdout+stderr appended to log_file, pid file
  // written. docker: start the existing container (304 = already running is success).
  // external: nothing.
  virtual Result<void> Start() = 0;

  // Stops the instance and returns once it is gone (process reaped / container not running):
  // stop_argv or stop_signal to the group (docker: stop with stop_timeout), SIGKILL / kill
  // after `grace`. `force`: SIGKILL / kill at once. external: nothing.
  virtual Result<void> Stop(Millis grace, bool force) = 0;

  // Whether the process or container is still there (reaps a child that exited).
  // external: always true.
  virtual bool Running() = 0;

  // Host pids of the instance (the process group's members / the container's processes),
  // to attribute per-process VRAM. Empty when unknown.
  virtual std::vector<int> Pids() = 0;

  // "pid 1234", "container mcn_cosyvoice (3f2a...)", "external http://...", for status/logs.
  virtual std::string Describe() const = 0;
  virtual std::optional<int> Pid() const { return std::nullopt; }
  virtual std::string Container() const { return {}; }
};

// process: Start() from a thread that lives as long as the instance should when
// die_with_parent is set: PR_SET_PDEATHSIG fires when the *thread* that forked exits, not the
// process. Start() while running and Stop() while stopped do nothing. Adopt() takes the pid
// file's pid when it is alive and its own process-group leader; an adopted instance is watched
// through /proc (not waitpid: it is not our child). When the leader exits, whatever is left of
// its group is SIGKILLed; Stop() returns once the group is empty. The pid file is removed once
// the instance is gone. The destructor leaves a running instance running.
std::unique_ptr<ServiceRuntime> MakeProcessRuntime(InstanceSpec spec);
// `docker` outlives the runtime.
std::unique_ptr<ServiceRuntime> MakeDockerRuntime(InstanceSpec spec, http::DockerClient& docker);
std::unique_ptr<ServiceRuntime> MakeExternalRuntime(InstanceSpec spec);
// slot: nothing runs; "running" from Start() until Stop(). Never adopted.
std::unique_ptr<ServiceRuntime> MakeSlotRuntime(InstanceSpec spec);

}  // namespace gpuq::gpu
