// `external`: someone else runs the service; gpuq only checks its health and caps its use.
#include <fmt/format.h>

#include "gpu/runtime/runtime.hpp"

namespace gpuq::gpu {

namespace {

class ExternalRuntime final : public ServiceRuntime {
 public:
  explicit ExternalRuntime(InstanceSpec spec) : spec_(std::move(spec)) {}

  Result<bool> Adopt() override { return true; }
  Result<void> Start() override { return Ok(); }
  Result<void> Stop(Millis, bool) override { return Ok(); }
  bool Running() override { return true; }
  std::vector<int> Pids() override { return {}; }
  std::string Describe() const override {
    return fmt::format("external {}",
                       spec_.service.url.empty() ? spec_.service.health_url : spec_.service.url);
  }

 private:
  InstanceSpec spec_;
};

}  // namespace

std::unique_ptr<ServiceRuntime> MakeExternalRuntime(InstanceSpec spec) {
  return std::make_unique<ExternalRuntime>(std::move(spec));
}

}  // namespace gpuq::gpu
