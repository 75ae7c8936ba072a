#include "gpu/vram/nvml_vram.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "gpu/vram/fake_driver.hpp"

namespace gpuq::gpu {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Optional;

// Two GPUs: 80 GiB (512 MiB of it reserved by the driver) and 24 GiB.
std::string TwoGpus(unsigned long long free0_mb = 70000) {
  return "gpu GPU-aaaa " + std::to_string(81920 * kMiB) + " " + std::to_string(free0_mb * kMiB) +
         " " + std::to_string(512 * kMiB) +
         " NVIDIA H100 80GB HBM3\n"
         "gpu GPU-bbbb " +
         std::to_string(24576 * kMiB) + " " + std::to_string(24000 * kMiB) +
         " 0 NVIDIA GeForce RTX 4090\n";
}

// Three processes on GPU 0 (one whose memory NVML does not know), none on GPU 1.
constexpr const char* kProcesses =
    "proc 0 4242 "
    "10737418240\n"  // 10 GiB
    "proc 0 4243 na\n"
    "proc 0 4244 1\n";  // one byte rounds up to 1 MB

int Count(const std::vector<std::string>& calls, const std::string& name) {
  return static_cast<int>(std::count(calls.begin(), calls.end(), name));
}

class NvmlVramTest : public ::testing::Test {
 protected:
  std::unique_ptr<NvmlVram> OpenOk(const char* library) {
    auto vram = NvmlVram::Open(library);
    EXPECT_TRUE(vram) << vram.error().message;
    return vram ? std::move(vram).value() : nullptr;
  }
  std::vector<GpuMemory> QueryOk(NvmlVram& vram) {
    auto gpus = vram.Query();
    EXPECT_TRUE(gpus) << gpus.error().message;
    return gpus ? gpus.value() : std::vector<GpuMemory>{};
  }
  // The figures every variant must report for TwoGpus() + kProcesses.
  void ExpectTwoGpus(const std::vector<GpuMemory>& gpus) {
    ASSERT_EQ(gpus.size(), 2u);
    EXPECT_EQ(gpus[0].index, 0);
    EXPECT_EQ(gpus[0].name, "NVIDIA H100 80GB HBM3");
    EXPECT_EQ(gpus[0].uuid, "GPU-aaaa");
    EXPECT_EQ(gpus[0].total_mb, 81920);
    EXPECT_EQ(gpus[0].free_mb, 70000);
    EXPECT_EQ(gpus[0].used_mb, 11920);
    EXPECT_TRUE(gpus[0].processes_known);
    ASSERT_EQ(gpus[0].processes.size(), 3u);
    EXPECT_EQ(gpus[0].processes[0].pid, 4242);
    EXPECT_THAT(gpus[0].processes[0].used_mb, Optional(10240));
    EXPECT_EQ(gpus[0].processes[1].pid, 4243);
    EXPECT_EQ(gpus[0].processes[1].used_mb, std::nullopt);
    EXPECT_EQ(gpus[0].processes[2].pid, 4244);
    EXPECT_THAT(gpus[0].processes[2].used_mb, Optional(1));
    EXPECT_EQ(gpus[1].index, 1);
    EXPECT_EQ(gpus[1].name, "NVIDIA GeForce RTX 4090");
    EXPECT_EQ(gpus[1].uuid, "GPU-bbbb");
    EXPECT_EQ(gpus[1].total_mb, 24576);
    EXPECT_EQ(gpus[1].free_mb, 24000);
    EXPECT_EQ(gpus[1].used_mb, 576);
    EXPECT_TRUE(gpus[1].processes_known);
    EXPECT_THAT(gpus[1].processes, IsEmpty());
  }

  FakeDriver driver_;
};

TEST_F(NvmlVramTest, ModernDriverIsReadThroughTheVersionedSymbols) {
  driver_.Nvml(TwoGpus() + kProcesses);
  auto vram = OpenOk(FAKE_NVML_MODERN);
  ASSERT_TRUE(vram);

  auto gpus = QueryOk(*vram);

  ExpectTwoGpus(gpus);
  EXPECT_EQ(vram->Name(), "nvml");
  auto calls = driver_.Calls();
  EXPECT_THAT(calls, Contains("nvmlInit_v2"));
  EXPECT_THAT(calls, Contains("nvmlDeviceGetCount_v2"));
  EXPECT_THAT(calls, Contains("nvmlDeviceGetHandleByIndex_v2"));
  EXPECT_THAT(calls, Contains("nvmlDeviceGetMemoryInfo_v2"));  // its version field was right
  EXPECT_THAT(calls, Contains("nvmlDeviceGetComputeRunningProcesses_v3"));
  EXPECT_THAT(calls, Not(Contains("nvmlInit")));
  EXPECT_THAT(calls, Not(Contains("nvmlDeviceGetMemoryInfo")));
  EXPECT_THAT(calls, Not(Contains("nvmlDeviceGetComputeRunningProcesses")));
  EXPECT_THAT(calls, Not(Contains("nvmlDeviceGetComputeRunningProcesses_v2")));
}

TEST_F(NvmlVramTest, V2DriverUsesProcessesV2AndMemoryV1) {
  driver_.Nvml(TwoGpus() + kProcesses);
  auto vram = OpenOk(FAKE_NVML_V2);
  ASSERT_TRUE(vram);

  auto gpus = QueryOk(*vram);

  ExpectTwoGpus(gpus);
  auto calls = driver_.Calls();
  EXPECT_THAT(calls, Contains("nvmlDeviceGetComputeRunningProcesses_v2"));
  EXPECT_THAT(calls, Contains("nvmlDeviceGetMemoryInfo"));
  EXPECT_THAT(calls, Not(Contains("nvmlDeviceGetComputeRunningProcesses")));
}

TEST_F(NvmlVramTest, LegacyDriverIsReadThroughUnversionedSymbolsAndV1Structs) {
  driver_.Nvml(TwoGpus() + kProcesses);
  auto vram = OpenOk(FAKE_NVML_LEGACY);
  ASSERT_TRUE(vram);

  auto gpus = QueryOk(*vram);

  ExpectTwoGpus(gpus);  // three 16-byte entries read back intact
  auto calls = driver_.Calls();
  EXPECT_THAT(calls, Contains("nvmlInit"));
  EXPECT_THAT(calls, Contains("nvmlDeviceGetCount"));
  EXPECT_THAT(calls, Contains("nvmlDeviceGetHandleByIndex"));
  EXPECT_THAT(calls, Contains("nvmlDeviceGetMemoryInfo"));
  EXPECT_THAT(calls, Contains("nvmlDeviceGetComputeRunningProcesses"));
}

TEST_F(NvmlVramTest, MemoryV2VersionMismatchFallsBackToV1) {
  driver_.Nvml(TwoGpus() + kProcesses + "memory_v2 25\n");
  auto vram = OpenOk(FAKE_NVML_MODERN);
  ASSERT_TRUE(vram);

  auto gpus = QueryOk(*vram);

  ExpectTwoGpus(gpus);
  EXPECT_THAT(driver_.Calls(), Contains("nvmlDeviceGetMemoryInfo"));
}

TEST_F(NvmlVramTest, SeesMemoryChangeBetweenQueries) {
  driver_.Nvml(TwoGpus(70000));
  auto vram = OpenOk(FAKE_NVML_MODERN);
  ASSERT_TRUE(vram);
  auto before = QueryOk(*vram);

  driver_.Nvml(TwoGpus(50000) + "proc 0 99 " + std::to_string(20000 * kMiB) + "\n");
  auto after = QueryOk(*vram);

  ASSERT_EQ(before.size(), 2u);
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(before[0].free_mb, 70000);
  EXPECT_THAT(before[0].processes, IsEmpty());
  EXPECT_EQ(after[0].free_mb, 50000);
  EXPECT_EQ(after[0].used_mb, 31920);
  ASSERT_EQ(after[0].processes.size(), 1u);
  EXPECT_THAT(after[0].processes[0].used_mb, Optional(20000));
}

TEST_F(NvmlVramTest, ProcessListThatGrowsBetweenCallsIsReadWhole) {
  std::string many;
  for (int pid = 1000; pid < 1030; ++pid) many += "proc 0 " + std::to_string(pid) + " 1048576\n";
  driver_.Nvml(TwoGpus() + many + "understate 25\n");  // the probe says 5, there are 30
  auto vram = OpenOk(FAKE_NVML_MODERN);
  ASSERT_TRUE(vram);

  auto gpus = QueryOk(*vram);

  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_TRUE(gpus[0].processes_known);
  ASSERT_EQ(gpus[0].processes.size(), 30u);
  EXPECT_EQ(gpus[0].processes[29].pid, 1029);
  // GPU 0: the probe, a list too short, the whole list; GPU 1: the probe.
  EXPECT_EQ(Count(driver_.Calls(), "nvmlDeviceGetComputeRunningProcesses_v3"), 4);
}

TEST_F(NvmlVramTest, UnsupportedProcessListLeavesProcessesUnknown) {
  driver_.Nvml(TwoGpus() + kProcesses + "processes 3\n");
  auto vram = OpenOk(FAKE_NVML_MODERN);
  ASSERT_TRUE(vram);

  auto gpus = QueryOk(*vram);

  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_FALSE(gpus[0].processes_known);
  EXPECT_THAT(gpus[0].processes, IsEmpty());
  EXPECT_EQ(gpus[0].free_mb, 70000);
}

TEST_F(NvmlVramTest, DeviceWithoutPermissionIsLeftOut) {
  driver_.Nvml(TwoGpus() + "handle 0 4\n");
  auto vram = OpenOk(FAKE_NVML_MODERN);
  ASSERT_TRUE(vram);

  auto gpus = QueryOk(*vram);

  ASSERT_EQ(gpus.size(), 1u);
  EXPECT_EQ(gpus[0].index, 1);
  EXPECT_EQ(gpus[0].uuid, "GPU-bbbb");
}

TEST_F(NvmlVramTest, LostGpuIsUnavailableWithNvmlsReason) {
  driver_.Nvml(TwoGpus() + "handle 1 15\n");
  auto vram = OpenOk(FAKE_NVML_MODERN);
  ASSERT_TRUE(vram);

  auto gpus = vram->Query();

  ASSERT_FALSE(gpus);
  EXPECT_EQ(gpus.error().code, Errc::kUnavailable);
  EXPECT_EQ(gpus.error().message, "NVML: GPU 1: GPU is lost");
}

TEST_F(NvmlVramTest, InitFailureIsUnavailableWithNvmlsMessage) {
  driver_.Nvml(TwoGpus() + "init 9\n");

  auto vram = NvmlVram::Open(FAKE_NVML_MODERN);

  ASSERT_FALSE(vram);
  EXPECT_EQ(vram.error().code, Errc::kUnavailable);
  EXPECT_EQ(vram.error().message, "NVML: Driver Not Loaded");
  EXPECT_EQ(Count(driver_.Calls(), "nvmlShutdown"), 0);  // a failed init is not shut down
}

TEST_F(NvmlVramTest, MissingLibraryIsUnavailable) {
  auto vram = NvmlVram::Open("/nonexistent/libnvidia-ml.so.1");

  ASSERT_FALSE(vram);
  EXPECT_EQ(vram.error().code, Errc::kUnavailable);
  EXPECT_THAT(vram.error().message, HasSubstr("NVML unavailable"));
  EXPECT_THAT(vram.error().message, HasSubstr("/nonexistent/libnvidia-ml.so.1"));
}

TEST_F(NvmlVramTest, ALibraryWithoutNvmlIsUnavailable) {
  auto vram = NvmlVram::Open("libc.so.6");

  ASSERT_FALSE(vram);
  EXPECT_THAT(vram.error().message, HasSubstr("lacks nvmlInit"));
}

TEST_F(NvmlVramTest, ShutsDownOnceWhenDestroyed) {
  driver_.Nvml(TwoGpus());
  auto vram = OpenOk(FAKE_NVML_MODERN);
  ASSERT_TRUE(vram);
  QueryOk(*vram);
  QueryOk(*vram);

  vram.reset();

  auto calls = driver_.Calls();
  EXPECT_EQ(Count(calls, "nvmlInit_v2"), 1);
  EXPECT_EQ(Count(calls, "nvmlShutdown"), 1);
  EXPECT_EQ(calls.back(), "nvmlShutdown");
}

TEST_F(NvmlVramTest, QueriesFromManyThreadsAgree) {
  driver_.Nvml(TwoGpus() + kProcesses);
  auto vram = OpenOk(FAKE_NVML_MODERN);
  ASSERT_TRUE(vram);
  std::vector<std::thread> threads;
  std::atomic<int> good{0};

  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto gpus = vram->Query();
        if (gpus && gpus.value().size() == 2 && gpus.value()[0].processes.size() == 3) ++good;
      }
    });
  }
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(good.load(), 80);
}

}  // namespace
}  // namespace gpuq::gpu
