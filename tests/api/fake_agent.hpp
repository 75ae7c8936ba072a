#pragma once
// The agent's side of the GPU protocol, as small as a test needs: it heartbeats a GPU report
// into the store (PutAgent) and, once Serve() is called, answers the commands the API posts
// (TakeCommands / ReplyCommand) on a thread of its own with a handler the test gives. The
// real store path is exercised end to end; no GPU manager is involved.
#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "core/gpu_status.hpp"
#include "store/store.hpp"

namespace gpuq::api::testing {

// A GPU with the given services (name -> state), 24576 MB, `used_mb` used.
inline GpuStatus MakeGpu(std::string host, int index,
                         std::vector<std::pair<std::string, ServiceState>> services,
                         int used_mb = 0) {
  GpuStatus gpu;
  gpu.host = std::move(host);
  gpu.index = index;
  gpu.name = "Sim GPU";
  gpu.total_mb = 24576;
  gpu.used_mb = used_mb;
  gpu.free_mb = gpu.total_mb - used_mb;
  gpu.reserve_mb = 512;
  for (auto& [name, state] : services) {
    ServiceInstanceStatus s;
    s.state = state;
    s.vram_mb_declared = 4000;
    s.port = 8100 + index;
    if (IsResident(state)) s.pid = 4242 + index;
    if (state == ServiceState::kBusy) s.active_runs = 1;
    gpu.services.emplace(name, s);
  }
  return gpu;
}

class FakeAgent {
 public:
  using Handler = std::function<Json(const store::Command&)>;

  FakeAgent(store::Store& store, std::string id, std::vector<GpuStatus> gpus) : store_(store) {
    report_.agent = std::move(id);
    report_.backend = "sim";
    report_.gpus = std::move(gpus);
    Heartbeat();
  }
  ~FakeAgent() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  const std::string& id() const { return report_.agent; }
  AgentGpuReport& report() { return report_; }

  // Publishes the report (PutAgent), as the agent does every ~2 s.
  void Heartbeat() {
    auto put = store_.PutAgent(report_.agent, ToJson(report_));
    ASSERT_TRUE(put) << put.error().message;
  }

  // Starts answering commands with `handler` (its reply is sent as is).
  void Serve(Handler handler) {
    handler_ = std::move(handler);
    thread_ = std::thread([this] {
      while (!stop_) {
        auto commands = store_.TakeCommands(report_.agent, 10, std::chrono::milliseconds(50));
        if (!commands) {
          ADD_FAILURE() << commands.error().message;
          return;
        }
        for (const auto& command : commands.value()) {
          {
            std::lock_guard lock(mutex_);
            received_.push_back(command);
          }
          auto replied = store_.ReplyCommand(command.id, handler_(command));
          if (!replied) ADD_FAILURE() << replied.error().message;
        }
      }
    });
  }

  // Every command answered so far, oldest first.
  std::vector<store::Command> received() {
    std::lock_guard lock(mutex_);
    return received_;
  }

 private:
  store::Store& store_;
  AgentGpuReport report_;
  Handler handler_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<store::Command> received_;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace gpuq::api::testing
