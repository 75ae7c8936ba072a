// Against the real NVIDIA driver of this machine. Without one, every test is skipped with the
// reason, and CTest reports it as not run (SKIP_REGULAR_EXPRESSION from gtest_discover_tests).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "gpu/vram/nvidia_smi_vram.hpp"
#include "gpu/vram/nvml_vram.hpp"

namespace gpuq::gpu {
namespace {

using ::testing::AnyOf;
using ::testing::StartsWith;

// The real NVML with at least one GPU, or a skip that says why not.
#define OPEN_REAL_NVML_OR_SKIP(vram)                                                      \
  auto vram##_opened = NvmlVram::Open("libnvidia-ml.so.1");                               \
  if (!vram##_opened) {                                                                   \
    GTEST_SKIP() << "not run: no NVIDIA GPU (" << vram##_opened.error().message << ")";   \
  }                                                                                       \
  auto vram = std::move(vram##_opened).value();                                           \
  {                                                                                       \
    auto probe = vram->Query();                                                           \
    ASSERT_TRUE(probe) << probe.error().message;                                          \
    if (probe.value().empty()) GTEST_SKIP() << "not run: no NVIDIA GPU (NVML sees none)"; \
  }

TEST(NvmlVramDevice, ReportsEveryGpuWithConsistentFigures) {
  OPEN_REAL_NVML_OR_SKIP(vram);

  auto gpus = vram->Query();

  ASSERT_TRUE(gpus) << gpus.error().message;
  for (const auto& gpu : gpus.value()) {
    SCOPED_TRACE(gpu.uuid);
    EXPECT_FALSE(gpu.name.empty());
    EXPECT_THAT(gpu.uuid, AnyOf(StartsWith("GPU-"), StartsWith("MIG-")));
    EXPECT_GT(gpu.total_mb, 0);
    EXPECT_GE(gpu.free_mb, 0);
    EXPECT_LE(gpu.free_mb, gpu.total_mb);
    EXPECT_EQ(gpu.used_mb + gpu.free_mb, gpu.total_mb);
    for (const auto& process : gpu.processes) {
      EXPECT_GT(process.pid, 0);
      if (process.used_mb) {
        EXPECT_LE(*process.used_mb, gpu.total_mb);
      }
    }
    std::printf("gpu %d %s %s total=%d used=%d free=%d processes_known=%d processes=%zu\n",
                gpu.index, gpu.name.c_str(), gpu.uuid.c_str(), gpu.total_mb, gpu.used_mb,
                gpu.free_mb, gpu.processes_known, gpu.processes.size());
  }
}

TEST(NvmlVramDevice, ReopensAfterShutdown) {
  OPEN_REAL_NVML_OR_SKIP(vram);
  vram.reset();

  auto again = NvmlVram::Open("libnvidia-ml.so.1");

  ASSERT_TRUE(again) << again.error().message;
  auto gpus = again.value()->Query();
  ASSERT_TRUE(gpus) << gpus.error().message;
  EXPECT_FALSE(gpus.value().empty());
}

TEST(NvidiaSmiVramDevice, AgreesWithNvmlOnGpusAndTotals) {
  OPEN_REAL_NVML_OR_SKIP(vram);
  auto smi = NvidiaSmiVram::Open("nvidia-smi");
  if (!smi) GTEST_SKIP() << "not run: no nvidia-smi (" << smi.error().message << ")";

  auto from_nvml = vram->Query();
  auto from_smi = smi.value()->Query();

  ASSERT_TRUE(from_nvml) << from_nvml.error().message;
  ASSERT_TRUE(from_smi) << from_smi.error().message;
  std::map<std::string, GpuMemory> by_uuid;
  for (const auto& gpu : from_smi.value()) by_uuid[gpu.uuid] = gpu;
  for (const auto& gpu : from_nvml.value()) {
    SCOPED_TRACE(gpu.uuid);
    ASSERT_TRUE(by_uuid.count(gpu.uuid));
    const auto& other = by_uuid[gpu.uuid];
    EXPECT_EQ(other.name, gpu.name);
    // Both MiB; drivers differ on whether the reserved part counts, so within 2%.
    EXPECT_NEAR(other.total_mb, gpu.total_mb, gpu.total_mb / 50);
    // Memory can move between the two reads; the processes on a busy GPU are another's.
    EXPECT_NEAR(other.free_mb, gpu.free_mb, gpu.total_mb / 10);
  }
}

}  // namespace
}  // namespace gpuq::gpu
