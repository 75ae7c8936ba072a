// `slot`: a VRAM reservation with nothing to run. The work that uses it (a container per run)
// starts and ends with each run; the slot only makes placement keep its memory free meanwhile.
#include <fmt/format.h>

#include <atomic>

#include "gpu/runtime/runtime.hpp"

namespace gpuq::gpu {

namespace {

class SlotRuntime final : public ServiceRuntime {
 public:
  explicit SlotRuntime(InstanceSpec spec) : spec_(std::move(spec)) {}

  Result<bool> Adopt() override { return false; }  // a reservation does not survive the agent
  Result<void> Start() override {
    running_ = true;
    return Ok();
  }
  Result<void> Stop(Millis, bool) override {
    running_ = false;
    return Ok();
  }
  bool Running() override { return running_; }
  std::vector<int> Pids() override { return {}; }
  std::string Describe() const override {
    return fmt::format("slot of {} MB", spec_.service.vram_mb);
  }

 private:
  InstanceSpec spec_;
  std::atomic<bool> running_ = false;
};

}  // namespace

std::unique_ptr<ServiceRuntime> MakeSlotRuntime(InstanceSpec spec) {
  return std::make_unique<SlotRuntime>(std::move(spec));
}

}  // namespace gpuq::gpu
