#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "gpu/vram/fake_driver.hpp"
#include "gpu/vram/vram.hpp"

namespace gpuq::gpu {
namespace {

using ::testing::HasSubstr;

constexpr const char* kNoLibrary = "/nonexistent/libnvidia-ml.so.1";
constexpr const char* kNoProgram = "/nonexistent/nvidia-smi";

std::string OneGpu() {
  return "gpu GPU-aaaa " + std::to_string(24576 * kMiB) + " " + std::to_string(24000 * kMiB) +
         " 0 NVIDIA GeForce RTX 4090\n";
}

class OpenVramTest : public ::testing::Test {
 protected:
  FakeDriver driver_;
};

TEST_F(OpenVramTest, AutoPrefersNvml) {
  driver_.Nvml(OneGpu());
  driver_.Smi("gpus.csv", "0, T4, GPU-a, 15360, 0, 15360\n");

  auto vram = OpenVram({.nvml_library = FAKE_NVML_MODERN, .nvidia_smi = FAKE_NVIDIA_SMI});

  ASSERT_TRUE(vram) << vram.error().message;
  EXPECT_EQ(vram.value()->Name(), "nvml");
  EXPECT_EQ(driver_.SmiArgs(), "");  // never ran
}

TEST_F(OpenVramTest, AutoFallsBackToNvidiaSmiWhenNvmlInitFails) {
  driver_.Nvml(OneGpu() + "init 9\n");
  driver_.Smi("gpus.csv", "0, T4, GPU-a, 15360, 0, 15360\n");

  auto vram = OpenVram({.nvml_library = FAKE_NVML_LEGACY, .nvidia_smi = FAKE_NVIDIA_SMI});

  ASSERT_TRUE(vram) << vram.error().message;
  EXPECT_EQ(vram.value()->Name(), "nvidia-smi");
  auto gpus = vram.value()->Query();
  ASSERT_TRUE(gpus) << gpus.error().message;
  ASSERT_EQ(gpus.value().size(), 1u);
  EXPECT_EQ(gpus.value()[0].total_mb, 15360);
}

TEST_F(OpenVramTest, AutoFallsBackToNvidiaSmiWhenTheLibraryIsMissing) {
  driver_.Smi("gpus.csv", "0, T4, GPU-a, 15360, 0, 15360\n");

  auto vram = OpenVram({.nvml_library = kNoLibrary, .nvidia_smi = FAKE_NVIDIA_SMI});

  ASSERT_TRUE(vram) << vram.error().message;
  EXPECT_EQ(vram.value()->Name(), "nvidia-smi");
}

TEST_F(OpenVramTest, AutoMovesOnWhenNvmlSeesNoGpu) {
  driver_.Nvml("");  // driver loaded, no devices
  driver_.Smi("gpus.csv", "0, T4, GPU-a, 15360, 0, 15360\n");

  auto vram = OpenVram({.nvml_library = FAKE_NVML_MODERN, .nvidia_smi = FAKE_NVIDIA_SMI});

  ASSERT_TRUE(vram) << vram.error().message;
  EXPECT_EQ(vram.value()->Name(), "nvidia-smi");
}

TEST_F(OpenVramTest, AutoWithNothingFoundAndNoGpuServicesIsNone) {
  auto vram = OpenVram({.nvml_library = kNoLibrary, .nvidia_smi = kNoProgram});

  ASSERT_TRUE(vram) << vram.error().message;
  EXPECT_EQ(vram.value()->Name(), "none");
}

TEST_F(OpenVramTest, AutoWithNothingFoundButGpuServicesSaysWhatWasTried) {
  driver_.Nvml("init 9\n");

  auto vram = OpenVram({.nvml_library = FAKE_NVML_MODERN,
                        .nvidia_smi = FAKE_NVIDIA_SMI,
                        .gpu_services_configured = true});

  ASSERT_FALSE(vram);
  EXPECT_EQ(vram.error().code, Errc::kUnavailable);
  EXPECT_THAT(vram.error().message, HasSubstr("nvml: NVML: Driver Not Loaded"));
  EXPECT_THAT(vram.error().message, HasSubstr("nvidia-smi: "));
  EXPECT_THAT(vram.error().message, HasSubstr("nvidia-smi: no GPU"));  // it printed no line
}

TEST_F(OpenVramTest, ExplicitNvmlThatCannotStartIsUnavailable) {
  auto vram = OpenVram({.backend = "nvml", .nvml_library = kNoLibrary});

  ASSERT_FALSE(vram);
  EXPECT_EQ(vram.error().code, Errc::kUnavailable);
  EXPECT_THAT(vram.error().message, HasSubstr("NVML unavailable"));
}

TEST_F(OpenVramTest, ExplicitNvidiaSmiThatCannotStartIsUnavailable) {
  auto vram = OpenVram({.backend = "nvidia-smi", .nvidia_smi = kNoProgram});

  ASSERT_FALSE(vram);
  EXPECT_EQ(vram.error().code, Errc::kUnavailable);
  EXPECT_THAT(vram.error().message, HasSubstr("cannot execute"));
}

TEST_F(OpenVramTest, ExplicitBackendsOpenTheirFakes) {
  driver_.Nvml(OneGpu());
  driver_.Smi("gpus.csv", "0, T4, GPU-a, 15360, 0, 15360\n");

  auto nvml = OpenVram({.backend = "nvml", .nvml_library = FAKE_NVML_LEGACY});
  auto smi = OpenVram({.backend = "nvidia-smi", .nvidia_smi = FAKE_NVIDIA_SMI});

  ASSERT_TRUE(nvml) << nvml.error().message;
  ASSERT_TRUE(smi) << smi.error().message;
  EXPECT_EQ(nvml.value()->Name(), "nvml");
  EXPECT_EQ(smi.value()->Name(), "nvidia-smi");
}

}  // namespace
}  // namespace gpuq::gpu
