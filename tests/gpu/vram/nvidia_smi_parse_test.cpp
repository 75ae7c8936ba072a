#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "gpu/vram/nvidia_smi_vram.hpp"

namespace gpuq::gpu {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;

constexpr std::string_view kTwoGpus =
    "0, NVIDIA H100 80GB HBM3, GPU-5f3c9a8e-1b2d-4c6e-9f00-123456789abc, 81559, 1021, 80538\n"
    "1, NVIDIA GeForce RTX 4090, GPU-00000000-1111-2222-3333-444444444444, 24564, 20000, 4564\n";

TEST(ParseNvidiaSmi, ReadsGpusAndTheirProcessesByUuid) {
  auto gpus = ParseNvidiaSmi(kTwoGpus,
                             "GPU-00000000-1111-2222-3333-444444444444, 48213, 15872\n"
                             "GPU-5f3c9a8e-1b2d-4c6e-9f00-123456789abc, 777, 1000\n"
                             "GPU-00000000-1111-2222-3333-444444444444, 48214, 4000\n");

  ASSERT_TRUE(gpus) << gpus.error().message;
  ASSERT_EQ(gpus.value().size(), 2u);
  const auto& h100 = gpus.value()[0];
  EXPECT_EQ(h100.index, 0);
  EXPECT_EQ(h100.name, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(h100.uuid, "GPU-5f3c9a8e-1b2d-4c6e-9f00-123456789abc");
  EXPECT_EQ(h100.total_mb, 81559);
  EXPECT_EQ(h100.used_mb, 1021);
  EXPECT_EQ(h100.free_mb, 80538);
  EXPECT_TRUE(h100.processes_known);
  EXPECT_THAT(h100.processes, ElementsAre(Field(&ProcessMemory::pid, 777)));
  const auto& rtx = gpus.value()[1];
  EXPECT_EQ(rtx.index, 1);
  ASSERT_EQ(rtx.processes.size(), 2u);
  EXPECT_EQ(rtx.processes[0].pid, 48213);
  EXPECT_THAT(rtx.processes[0].used_mb, Optional(15872));
  EXPECT_EQ(rtx.processes[1].pid, 48214);
  EXPECT_THAT(rtx.processes[1].used_mb, Optional(4000));
}

TEST(ParseNvidiaSmi, NoComputeAppsIsAnEmptyKnownList) {
  auto gpus = ParseNvidiaSmi(kTwoGpus, "");

  ASSERT_TRUE(gpus) << gpus.error().message;
  EXPECT_TRUE(gpus.value()[0].processes_known);
  EXPECT_THAT(gpus.value()[0].processes, IsEmpty());
}

TEST(ParseNvidiaSmi, NoGpusIsAnEmptyList) {
  auto gpus = ParseNvidiaSmi("\n", "");

  ASSERT_TRUE(gpus) << gpus.error().message;
  EXPECT_THAT(gpus.value(), IsEmpty());
}

TEST(ParseNvidiaSmi, BracketedTokensAreUnknown) {
  auto gpus = ParseNvidiaSmi(
      "0, [N/A], [N/A], 24564, [N/A], 4564\n"
      "1, Tesla T4, GPU-1, 15360, 360, [Not Supported]\n"
      "2, Tesla T4, GPU-2, 15360, [N/A], [N/A]\n",
      "GPU-1, 10, [N/A]\n"
      "GPU-1, [N/A], 100\n"
      "GPU-1, [Insufficient Permissions], [Insufficient Permissions]\n"
      "[N/A], 11, 100\n");

  ASSERT_TRUE(gpus) << gpus.error().message;
  ASSERT_EQ(gpus.value().size(), 3u);
  const auto& first = gpus.value()[0];
  EXPECT_EQ(first.name, "");
  EXPECT_EQ(first.uuid, "");
  EXPECT_EQ(first.used_mb, 20000);  // derived: total - free
  EXPECT_EQ(first.free_mb, 4564);
  const auto& second = gpus.value()[1];
  EXPECT_EQ(second.used_mb, 360);
  EXPECT_EQ(second.free_mb, 15000);  // derived: total - used
  ASSERT_EQ(second.processes.size(), 1u);
  EXPECT_EQ(second.processes[0].pid, 10);
  EXPECT_EQ(second.processes[0].used_mb, std::nullopt);
  const auto& third = gpus.value()[2];  // nothing known: plan as if full
  EXPECT_EQ(third.used_mb, 15360);
  EXPECT_EQ(third.free_mb, 0);
}

TEST(ParseNvidiaSmi, TotalIsDerivedWhenOnlyUsedAndFreeAreKnown) {
  auto gpus = ParseNvidiaSmi("0, X, GPU-0, [N/A], 1000, 3000\n", "");

  ASSERT_TRUE(gpus) << gpus.error().message;
  EXPECT_EQ(gpus.value()[0].total_mb, 4000);
}

TEST(ParseNvidiaSmi, ANameWithCommasIsRejoined) {
  auto gpus = ParseNvidiaSmi("0, Odd, Name, Inc, GPU-0, 100, 10, 90\n", "");

  ASSERT_TRUE(gpus) << gpus.error().message;
  EXPECT_EQ(gpus.value()[0].name, "Odd, Name, Inc");
  EXPECT_EQ(gpus.value()[0].uuid, "GPU-0");
  EXPECT_EQ(gpus.value()[0].total_mb, 100);
}

TEST(ParseNvidiaSmi, ToleratesCarriageReturnsBlankLinesAndOrder) {
  auto gpus = ParseNvidiaSmi("\r\n1, B, GPU-b, 200, 20, 180\r\n\r\n0, A, GPU-a, 100, 10, 90\r\n",
                             "\r\nGPU-a, 5, 10\r\n");

  ASSERT_TRUE(gpus) << gpus.error().message;
  ASSERT_EQ(gpus.value().size(), 2u);
  EXPECT_EQ(gpus.value()[0].uuid, "GPU-a");
  EXPECT_EQ(gpus.value()[1].free_mb, 180);
  EXPECT_THAT(gpus.value()[0].processes, ElementsAre(Field(&ProcessMemory::pid, 5)));
}

TEST(ParseNvidiaSmi, AProcessOnAnUnknownGpuOrAShortLineIsDropped) {
  auto gpus = ParseNvidiaSmi("0, A, GPU-a, 100, 10, 90\n", "GPU-zzz, 5, 10\nGPU-a, 6\n");

  ASSERT_TRUE(gpus) << gpus.error().message;
  EXPECT_THAT(gpus.value()[0].processes, IsEmpty());
}

TEST(ParseNvidiaSmi, AGpuLineWithTooFewFieldsIsAnError) {
  auto gpus = ParseNvidiaSmi("0, A, GPU-a, 100\n", "");

  ASSERT_FALSE(gpus);
  EXPECT_EQ(gpus.error().code, Errc::kUnavailable);
  EXPECT_THAT(gpus.error().message, HasSubstr("0, A, GPU-a, 100"));
}

TEST(ParseNvidiaSmi, AGpuLineWithoutIndexOrTotalIsAnError) {
  EXPECT_FALSE(ParseNvidiaSmi("[N/A], A, GPU-a, 100, 10, 90\n", ""));
  EXPECT_FALSE(ParseNvidiaSmi("0, A, GPU-a, [N/A], [N/A], 90\n", ""));
  EXPECT_FALSE(ParseNvidiaSmi("0, A, GPU-a, 100 MiB, 10 MiB, 90 MiB\n", ""));  // units: not ours
}

}  // namespace
}  // namespace gpuq::gpu
