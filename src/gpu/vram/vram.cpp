#include "gpu/vram/vram.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "gpu/vram/nvidia_smi_vram.hpp"
#include "gpu/vram/nvml_vram.hpp"
#include "gpu/vram/sim_vram.hpp"

namespace gpuq::gpu {

namespace {

// An explicit backend that opened but sees no GPU is still that backend (a driver may be
// loaded with every GPU gone); only `auto` moves on, because "no GPU here" is what it probes.
Result<std::unique_ptr<VramBackend>> OpenAuto(const VramOptions& options) {
  std::vector<std::string> tried;
  auto nvml = NvmlVram::Open(options.nvml_library);
  if (nvml) {
    auto gpus = nvml.value()->Query();
    if (gpus && !gpus.value().empty()) return std::unique_ptr<VramBackend>(std::move(nvml).value());
    tried.push_back(gpus ? "nvml: no GPU" : "nvml: " + gpus.error().message);
  } else {
    tried.push_back("nvml: " + nvml.error().message);
  }
  auto smi = NvidiaSmiVram::Open(options.nvidia_smi);
  if (smi) {
    auto gpus = smi.value()->Query();
    if (gpus && !gpus.value().empty()) return std::unique_ptr<VramBackend>(std::move(smi).value());
    tried.push_back(gpus ? "nvidia-smi: no GPU" : "nvidia-smi: " + gpus.error().message);
  } else {
    tried.push_back("nvidia-smi: " + smi.error().message);
  }
  if (!options.gpu_services_configured) return std::unique_ptr<VramBackend>(new NoVram());
  return Error{Errc::kUnavailable,
               fmt::format("no VRAM backend for the GPU services configured (tried {})",
                           fmt::join(tried, "; "))};
}

}  // namespace

Result<std::unique_ptr<VramBackend>> OpenVram(const VramOptions& options) {
  const std::string& backend = options.backend;
  if (backend == "auto") return OpenAuto(options);
  if (backend == "none") return std::unique_ptr<VramBackend>(new NoVram());
  if (backend == "sim") {
    if (options.sim_gpus.empty()) {
      return Error{Errc::kInvalidArgument, "vram backend sim needs at least one GPU"};
    }
    return std::unique_ptr<VramBackend>(new SimVram(options.sim_gpus));
  }
  if (backend == "nvml") {
    auto nvml = NvmlVram::Open(options.nvml_library);
    if (!nvml) return nvml.error();
    return std::unique_ptr<VramBackend>(std::move(nvml).value());
  }
  if (backend == "nvidia-smi") {
    auto smi = NvidiaSmiVram::Open(options.nvidia_smi);
    if (!smi) return smi.error();
    return std::unique_ptr<VramBackend>(std::move(smi).value());
  }
  return Error{
      Errc::kInvalidArgument,
      fmt::format("unknown vram backend '{}' (auto, nvml, nvidia-smi, sim, none)", backend)};
}

}  // namespace gpuq::gpu
