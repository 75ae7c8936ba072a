#pragma once
// VRAM tracking: how much memory each GPU has, uses and has free, and who uses it.
// Backends: NvmlVram (libnvidia-ml.so.1 via dlopen, no CUDA at build time), NvidiaSmiVram
// (CSV queries of the nvidia-smi binary), SimVram (GPUs declared in config, memory charged
// by the agent's ledger), NoVram (no GPUs). OpenVram picks one.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace gpuq::gpu {

struct ProcessMemory {
  int pid = 0;                     // host pid
  std::optional<int> used_mb;      // nullopt when the driver does not say
};

struct GpuMemory {
  int index = 0;      // the backend's index (NVML / nvidia-smi order; sim: as configured)
  std::string name;   // "NVIDIA H100 80GB HBM3", "sim"
  std::string uuid;   // "GPU-8a3f..."; sim: "SIM-<index>"
  int total_mb = 0;
  int used_mb = 0;
  int free_mb = 0;
  bool processes_known = false;        // whether `processes` is a real list
  std::vector<ProcessMemory> processes;
};

// Thread-safety: every method may be called from any thread.
class VramBackend {
 public:
  virtual ~VramBackend() = default;

  // "nvml", "nvidia-smi", "sim" or "none", as /gpu/status shows it.
  virtual std::string Name() const = 0;

  // Every GPU the backend sees, in index order. kUnavailable when the driver cannot be
  // reached (the message says why: "NVML: Driver Not Loaded").
  virtual Result<std::vector<GpuMemory>> Query() = 0;

  // The ledger of the sim backend; real backends measure and ignore these.
  // Charge: instance `key` ("comfyui@0") holds `mb` on `gpu` (a second Charge of the same key
  // replaces the figure, e.g. when a health reply reports the real use). Discharge: the
  // instance's process or container is gone; its memory is free again.
  virtual void Charge(int gpu, const std::string& key, int pid, int mb) {}
  virtual void Discharge(const std::string& key) {}
  virtual bool Simulated() const { return false; }
};

struct SimGpu {
  int index = 0;
  std::string name = "sim";
  int total_mb = 24576;
};

struct VramOptions {
  std::string backend = "auto";  // auto | nvml | nvidia-smi | sim | none
  std::vector<SimGpu> sim_gpus;  // for sim
  std::string nvml_library = "libnvidia-ml.so.1";  // dlopen name or path (tests: a fake)
  std::string nvidia_smi = "nvidia-smi";           // looked up in PATH unless a path
  bool gpu_services_configured = false;            // auto with nothing found: error vs none
};

// auto = nvml, then nvidia-smi, then: none when no GPU-managed (process/docker) service is
// configured, else kUnavailable saying what was tried and why each failed.
// An explicit backend that cannot start is kUnavailable with its reason.
Result<std::unique_ptr<VramBackend>> OpenVram(const VramOptions& options);

}  // namespace gpuq::gpu
