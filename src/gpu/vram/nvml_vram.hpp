#pragma once
// VRAM measured through NVML: libnvidia-ml.so.1 loaded with dlopen at run time, so neither the
// build nor a machine without a GPU needs CUDA or the NVIDIA driver.
#include <memory>
#include <mutex>
#include <string>

#include "gpu/vram/vram.hpp"

namespace gpuq::gpu {

// Figures: total_mb and free_mb are the device's bytes / 1 MiB rounded down; used_mb is
// total_mb - free_mb (so it includes memory the driver reserves); a process's used_mb is
// rounded up, and nullopt when NVML says NOT_AVAILABLE. processes_known is false when the
// driver will not list processes (not supported, no permission). Devices the caller has no
// permission to open are left out; their indexes are skipped.
// Thread-safety: every call into NVML is serialized by one mutex.
class NvmlVram final : public VramBackend {
 public:
  // dlopens `library` (a soname or a path), resolves the symbols (preferring the versioned
  // ones, see protocols.md section 7) and calls nvmlInit. kUnavailable when the library cannot
  // be loaded ("NVML unavailable: <dlerror>"), lacks a required symbol, or init fails
  // ("NVML: Driver Not Loaded").
  static Result<std::unique_ptr<NvmlVram>> Open(const std::string& library);
  ~NvmlVram() override;  // nvmlShutdown once, then dlclose
  NvmlVram(const NvmlVram&) = delete;
  NvmlVram& operator=(const NvmlVram&) = delete;

  std::string Name() const override { return "nvml"; }
  // kUnavailable "NVML: GPU <i>: <reason>" when a device cannot be read (e.g. GPU is lost).
  Result<std::vector<GpuMemory>> Query() override;

 private:
  struct Api;  // the resolved function pointers; defined in the .cpp

  NvmlVram(void* handle, std::unique_ptr<Api> api);

  std::mutex mutex_;
  void* handle_;  // from dlopen
  std::unique_ptr<Api> api_;
};

}  // namespace gpuq::gpu
