#include "gpu/vram/sim_vram.hpp"

#include <algorithm>

namespace gpuq::gpu {

SimVram::SimVram(std::vector<SimGpu> gpus) : gpus_(std::move(gpus)) {
  std::sort(gpus_.begin(), gpus_.end(),
            [](const SimGpu& a, const SimGpu& b) { return a.index < b.index; });
}

Result<std::vector<GpuMemory>> SimVram::Query() {
  std::vector<GpuMemory> out;
  out.reserve(gpus_.size());
  std::lock_guard lock(mutex_);
  for (const auto& gpu : gpus_) {
    GpuMemory memory;
    memory.index = gpu.index;
    memory.name = gpu.name;
    memory.uuid = "SIM-" + std::to_string(gpu.index);
    memory.total_mb = gpu.total_mb;
    memory.processes_known = true;
    for (const auto& [key, charged] : ledger_) {
      if (charged.gpu != gpu.index) continue;
      memory.used_mb += charged.mb;
      memory.processes.push_back(ProcessMemory{.pid = charged.pid, .used_mb = charged.mb});
    }
    // Used stays as charged, past total if need be: over-commit must show, not be clipped.
    memory.free_mb = std::max(0, memory.total_mb - memory.used_mb);
    out.push_back(std::move(memory));
  }
  return out;
}

void SimVram::Charge(int gpu, const std::string& key, int pid, int mb) {
  std::lock_guard lock(mutex_);
  ledger_[key] = Charged{.gpu = gpu, .pid = pid, .mb = mb};
}

void SimVram::Discharge(const std::string& key) {
  std::lock_guard lock(mutex_);
  ledger_.erase(key);
}

}  // namespace gpuq::gpu
