#pragma once
// VRAM measured by running the nvidia-smi binary with CSV queries: the fallback where NVML
// cannot be loaded. Each Query runs it twice (GPUs, then compute processes); that costs tens
// to hundreds of milliseconds, so prefer NVML for polling.
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "gpu/vram/vram.hpp"

namespace gpuq::gpu {

// The two queries NvidiaSmiVram runs, as argv tails (after the program).
inline constexpr std::string_view kSmiGpuQuery =
    "--query-gpu=index,name,uuid,memory.total,memory.used,memory.free";
inline constexpr std::string_view kSmiAppsQuery = "--query-compute-apps=gpu_uuid,pid,used_memory";
inline constexpr std::string_view kSmiFormat = "--format=csv,noheader,nounits";

// Pure: parses the output of the two queries above (values in MiB, fields split on ',' and
// trimmed; bracketed tokens such as "[N/A]" or "[Not Supported]" mean unknown). A GPU line is
// "index, name, uuid, total, used, free" (a name with commas is rejoined); an unknown used or
// free is derived from the other two, and when both are unknown the GPU counts as full
// (used = total, free = 0). An apps line is "gpu_uuid, pid, used_memory"; a line whose pid is
// unknown is skipped, an unknown used_memory is nullopt, and a process on a uuid no GPU has is
// dropped. Every GPU gets processes_known = true. Blank lines are ignored. kUnavailable
// "nvidia-smi: cannot parse ..." for a GPU line with too few fields or no index or total.
Result<std::vector<GpuMemory>> ParseNvidiaSmi(std::string_view gpus_csv, std::string_view apps_csv);

class NvidiaSmiVram final : public VramBackend {
 public:
  // `program` is a path or a name looked up in PATH. Runs one Query to check that it works:
  // kUnavailable when it cannot be executed, exits non-zero ("nvidia-smi exited with 9: <its
  // output>"), runs past `timeout` (it is killed) or prints what cannot be parsed.
  static Result<std::unique_ptr<NvidiaSmiVram>> Open(
      std::string program, std::chrono::milliseconds timeout = std::chrono::seconds(5));

  std::string Name() const override { return "nvidia-smi"; }
  // Runs the two queries, each with the timeout; fails as Open does. Thread-safe: each call
  // runs its own processes.
  Result<std::vector<GpuMemory>> Query() override;

 private:
  NvidiaSmiVram(std::string program, std::chrono::milliseconds timeout)
      : program_(std::move(program)), timeout_(timeout) {}

  std::string program_;
  std::chrono::milliseconds timeout_;
};

}  // namespace gpuq::gpu
