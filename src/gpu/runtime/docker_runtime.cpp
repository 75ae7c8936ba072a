// DockerRuntime: a service whose instance is an existing container, started and stopped by
// name through the Docker Engine API. The operator creates the container (docker create,
// compose) with its GPUs, ports and volumes; gpuq only starts, stops and watches it.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "gpu/runtime/runtime.hpp"
#include "http/docker_client.hpp"

namespace gpuq::gpu {
namespace {

// Stop and kill return when the engine sent the signal or saw the exit; inspect may lag behind
// (podman's cleanup), so the wait for "not running" gets its own deadline on top of the grace.
constexpr Millis kStopSettle{30'000};
constexpr Millis kPoll{50};  // inspect interval while waiting for the exit

// Every host pid below `root`: /proc/<pid>/task/<tid>/children lists each thread's children.
// A serving container's GPU memory is usually held by a worker, not its first process.
std::vector<int> ProcessTree(int root) {
  std::vector<int> out;
  std::set<int> seen;
  std::vector<int> todo{root};
  while (!todo.empty() && out.size() < 4096) {
    int pid = todo.back();
    todo.pop_back();
    if (!seen.insert(pid).second) continue;
    out.push_back(pid);
    std::error_code ec;
    auto tasks = std::filesystem::path("/proc") / std::to_string(pid) / "task";
    for (std::filesystem::directory_iterator it(tasks, ec), end; !ec && it != end;
         it.increment(ec)) {
      std::ifstream children(it->path() / "children");
      int child = 0;
      while (children >> child) todo.push_back(child);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

class DockerRuntime final : public ServiceRuntime {
 public:
  DockerRuntime(InstanceSpec spec, http::DockerClient& docker)
      : spec_(std::move(spec)), docker_(docker) {}

  Result<bool> Adopt() override {
    auto info = docker_.Inspect(Name());
    if (!info) {
      // No container: nothing to adopt; Start will say how to create it.
      if (info.error().code == Errc::kNotFound) return false;
      return info.error();
    }
    Remember(info.value());
    return info.value().running;
  }

  Result<void> Start() override {
    auto started = docker_.Start(Name());
    if (!started) {
      if (started.error().code == Errc::kNotFound) {
        return Error{Errc::kNotFound,
                     fmt::format("container {} does not exist: create it (docker create/compose) "
                                 "first",
                                 Name())};
      }
      return started.error();
    }
    // The pid is there as soon as start returned; remember it for Pids() and Describe().
    if (auto info = docker_.Inspect(Name())) Remember(info.value());
    return Ok();
  }

  Result<void> Stop(Millis grace, bool force) override {
    bool killed = force;
    if (!force) {
      // Docker's timeout is whole seconds; round up so the grace is never cut short.
      auto seconds = std::chrono::ceil<std::chrono::seconds>(std::max(grace, Millis(0)));
      auto stopped = docker_.Stop(Name(), seconds);
      if (!stopped) {
        if (stopped.error().code == Errc::kNotFound) return Gone();
        // The engine failed to stop it (or timed out answering): kill it instead.
        killed = true;
        BOOST_OUTCOME_TRY(KillNow());
      }
    } else {
      BOOST_OUTCOME_TRY(KillNow());
    }
    // Stop and kill return before the engine's own bookkeeping settles (podman passes through
    // "stopped"); the instance is gone once inspect says it is not running.
    auto waited = docker_.WaitExited(Name(), kStopSettle + grace, kPoll);
    if (!waited && waited.error().code == Errc::kTimeout && !killed) {
      BOOST_OUTCOME_TRY(KillNow());
      waited = docker_.WaitExited(Name(), kStopSettle, kPoll);
    }
    if (!waited) {
      if (waited.error().code == Errc::kNotFound) return Gone();
      return waited.error();
    }
    Remember(waited.value());
    return Ok();
  }

  bool Running() override {
    auto info = docker_.Inspect(Name());
    if (!info) {
      if (info.error().code == Errc::kNotFound) {
        running_ = false;
        pid_ = 0;
      }
      // An engine that does not answer says nothing about the container: keep the last
      // state rather than report a crash that did not happen.
      return running_;
    }
    Remember(info.value());
    return info.value().running;
  }

  std::vector<int> Pids() override {
    if (!Running()) return {};
    int pid = pid_;
    if (pid <= 0) return {};
    return ProcessTree(pid);
  }

  std::string Describe() const override {
    std::lock_guard lock(mu_);
    if (id_.empty()) return fmt::format("container {}", Name());
    return fmt::format("container {} ({})", Name(), id_.substr(0, 12));
  }

  std::optional<int> Pid() const override {
    int pid = pid_;
    if (pid <= 0) return std::nullopt;
    return pid;
  }

  std::string Container() const override { return Name(); }

 private:
  const std::string& Name() const { return spec_.service.container; }

  Result<void> KillNow() {
    auto killed = docker_.Kill(Name(), "SIGKILL");
    if (killed) return Ok();
    if (killed.error().code == Errc::kNotFound) return Ok();
    // Docker answers 409 and podman 500 for a container that is not running: that is done.
    auto info = docker_.Inspect(Name());
    if (!info && info.error().code == Errc::kNotFound) return Ok();
    if (info && !info.value().running) return Ok();
    return killed.error();
  }

  Result<void> Gone() {
    running_ = false;
    pid_ = 0;
    return Ok();
  }

  void Remember(const http::ContainerInfo& info) {
    running_ = info.running;
    pid_ = info.running ? info.pid : 0;
    std::lock_guard lock(mu_);
    if (!info.id.empty()) id_ = info.id;
  }

  const InstanceSpec spec_;
  http::DockerClient& docker_;
  // Running()/Pids() may run on a status thread while the lifecycle's thread starts or stops.
  std::atomic<bool> running_{false};
  std::atomic<int> pid_{0};
  mutable std::mutex mu_;
  std::string id_;  // guarded by mu_
};

}  // namespace

std::unique_ptr<ServiceRuntime> MakeDockerRuntime(InstanceSpec spec, http::DockerClient& docker) {
  return std::make_unique<DockerRuntime>(std::move(spec), docker);
}

}  // namespace gpuq::gpu
