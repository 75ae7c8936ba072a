#include "gpu/vram/nvidia_smi_vram.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "gpu/vram/fake_driver.hpp"

namespace gpuq::gpu {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

constexpr const char* kGpus =
    "0, NVIDIA H100 80GB HBM3, GPU-aaaa, 81559, 1021, 80538\n"
    "1, NVIDIA GeForce RTX 4090, GPU-bbbb, 24564, 20000, 4564\n";

class NvidiaSmiVramTest : public ::testing::Test {
 protected:
  FakeDriver driver_;
};

TEST_F(NvidiaSmiVramTest, ReadsGpusAndProcessesFromTheTwoQueries) {
  driver_.Smi("gpus.csv", kGpus);
  driver_.Smi("apps.csv", "GPU-bbbb, 48213, 15872\nGPU-bbbb, 48214, [N/A]\n");
  auto vram = NvidiaSmiVram::Open(FAKE_NVIDIA_SMI);
  ASSERT_TRUE(vram) << vram.error().message;

  auto gpus = vram.value()->Query();

  ASSERT_TRUE(gpus) << gpus.error().message;
  ASSERT_EQ(gpus.value().size(), 2u);
  EXPECT_EQ(vram.value()->Name(), "nvidia-smi");
  EXPECT_EQ(gpus.value()[0].name, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(gpus.value()[0].total_mb, 81559);
  const auto& rtx = gpus.value()[1];
  EXPECT_EQ(rtx.uuid, "GPU-bbbb");
  EXPECT_EQ(rtx.used_mb, 20000);
  EXPECT_EQ(rtx.free_mb, 4564);
  ASSERT_EQ(rtx.processes.size(), 2u);
  EXPECT_THAT(rtx.processes[0].used_mb, Optional(15872));
  EXPECT_EQ(rtx.processes[1].pid, 48214);
  EXPECT_EQ(rtx.processes[1].used_mb, std::nullopt);
  // Open's check and this query, two runs each, with exactly these arguments.
  std::string gpu_args = std::string(kSmiGpuQuery) + " " + std::string(kSmiFormat) + "\n";
  std::string app_args = std::string(kSmiAppsQuery) + " " + std::string(kSmiFormat) + "\n";
  EXPECT_EQ(driver_.SmiArgs(), gpu_args + app_args + gpu_args + app_args);
}

TEST_F(NvidiaSmiVramTest, SeesMemoryChangeBetweenQueries) {
  driver_.Smi("gpus.csv", "0, T4, GPU-a, 15360, 0, 15360\n");
  auto vram = NvidiaSmiVram::Open(FAKE_NVIDIA_SMI);
  ASSERT_TRUE(vram) << vram.error().message;

  driver_.Smi("gpus.csv", "0, T4, GPU-a, 15360, 5000, 10360\n");
  driver_.Smi("apps.csv", "GPU-a, 7, 5000\n");
  auto gpus = vram.value()->Query();

  ASSERT_TRUE(gpus) << gpus.error().message;
  EXPECT_EQ(gpus.value()[0].free_mb, 10360);
  ASSERT_EQ(gpus.value()[0].processes.size(), 1u);
  EXPECT_EQ(gpus.value()[0].processes[0].pid, 7);
}

TEST_F(NvidiaSmiVramTest, NonZeroExitIsUnavailableWithItsOutput) {
  driver_.Smi("exit",
              "9 NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.");

  auto vram = NvidiaSmiVram::Open(FAKE_NVIDIA_SMI);

  ASSERT_FALSE(vram);
  EXPECT_EQ(vram.error().code, Errc::kUnavailable);
  EXPECT_THAT(vram.error().message, HasSubstr("exited with 9"));
  EXPECT_THAT(vram.error().message, HasSubstr("couldn't communicate with the NVIDIA driver"));
}

TEST_F(NvidiaSmiVramTest, MissingProgramIsUnavailable) {
  auto vram = NvidiaSmiVram::Open("/nonexistent/nvidia-smi");

  ASSERT_FALSE(vram);
  EXPECT_EQ(vram.error().code, Errc::kUnavailable);
  EXPECT_THAT(vram.error().message, HasSubstr("cannot execute /nonexistent/nvidia-smi"));
}

TEST_F(NvidiaSmiVramTest, HangingProgramIsKilledAtTheDeadline) {
  driver_.Smi("hang", "");

  auto vram = NvidiaSmiVram::Open(FAKE_NVIDIA_SMI, std::chrono::milliseconds(200));

  ASSERT_FALSE(vram);
  EXPECT_EQ(vram.error().code, Errc::kUnavailable);
  EXPECT_THAT(vram.error().message, HasSubstr("did not answer within 200 ms"));
}

TEST_F(NvidiaSmiVramTest, UnparsableOutputIsUnavailable) {
  driver_.Smi("gpus.csv", "this is not csv\n");

  auto vram = NvidiaSmiVram::Open(FAKE_NVIDIA_SMI);

  ASSERT_FALSE(vram);
  EXPECT_THAT(vram.error().message, HasSubstr("cannot parse"));
}

}  // namespace
}  // namespace gpuq::gpu
