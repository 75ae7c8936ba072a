#pragma once
// The backends that measure nothing: SimVram (GPUs declared in config, memory charged by the
// agent's ledger) and NoVram (no GPUs at all).
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "gpu/vram/vram.hpp"

namespace gpuq::gpu {

// GPUs as configured; a GPU's used memory is the sum of the ledger's charges on it.
// Query reports used_mb as charged even past total_mb (so a test can catch over-commit);
// free_mb is total_mb - used_mb, never below 0. processes_known is true and lists one entry per
// charge (its pid and mb), in key order. Thread-safe.
class SimVram final : public VramBackend {
 public:
  explicit SimVram(std::vector<SimGpu> gpus);

  std::string Name() const override { return "sim"; }
  Result<std::vector<GpuMemory>> Query() override;  // never fails
  // A charge on a GPU index that is not configured is kept but shows on no GPU.
  void Charge(int gpu, const std::string& key, int pid, int mb) override;
  void Discharge(const std::string& key) override;  // unknown key: no-op
  bool Simulated() const override { return true; }

 private:
  struct Charged {
    int gpu = 0;
    int pid = 0;
    int mb = 0;
  };
  std::vector<SimGpu> gpus_;  // sorted by index
  std::mutex mutex_;
  std::map<std::string, Charged> ledger_;  // guarded by mutex_
};

// No GPUs: Query returns an empty list. Name "none".
class NoVram final : public VramBackend {
 public:
  std::string Name() const override { return "none"; }
  Result<std::vector<GpuMemory>> Query() override { return std::vector<GpuMemory>{}; }
};

}  // namespace gpuq::gpu
