#include "gpu/vram/sim_vram.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "gpu/vram/vram.hpp"

namespace gpuq::gpu {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::IsEmpty;

auto Process(int pid, int mb) {
  return AllOf(Field(&ProcessMemory::pid, pid), Field(&ProcessMemory::used_mb, mb));
}

std::vector<GpuMemory> QueryOk(VramBackend& vram) {
  auto gpus = vram.Query();
  EXPECT_TRUE(gpus) << gpus.error().message;
  return gpus ? gpus.value() : std::vector<GpuMemory>{};
}

TEST(SimVram, ReportsConfiguredGpusInIndexOrderAllFree) {
  SimVram vram({SimGpu{.index = 1, .name = "big", .total_mb = 81920}, SimGpu{.index = 0}});

  auto gpus = QueryOk(vram);

  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_EQ(gpus[0].index, 0);
  EXPECT_EQ(gpus[0].name, "sim");
  EXPECT_EQ(gpus[0].uuid, "SIM-0");
  EXPECT_EQ(gpus[0].total_mb, 24576);
  EXPECT_EQ(gpus[0].used_mb, 0);
  EXPECT_EQ(gpus[0].free_mb, 24576);
  EXPECT_TRUE(gpus[0].processes_known);
  EXPECT_THAT(gpus[0].processes, IsEmpty());
  EXPECT_EQ(gpus[1].index, 1);
  EXPECT_EQ(gpus[1].name, "big");
  EXPECT_EQ(gpus[1].uuid, "SIM-1");
  EXPECT_EQ(gpus[1].free_mb, 81920);
  EXPECT_EQ(vram.Name(), "sim");
  EXPECT_TRUE(vram.Simulated());
}

TEST(SimVram, UsedIsTheSumOfChargesOnThatGpu) {
  SimVram vram({SimGpu{.index = 0}, SimGpu{.index = 1}});

  vram.Charge(0, "comfyui@0", 100, 20000);
  vram.Charge(0, "vidi@0", 101, 4000);
  vram.Charge(1, "ollama@1", 102, 18000);
  auto gpus = QueryOk(vram);

  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_EQ(gpus[0].used_mb, 24000);
  EXPECT_EQ(gpus[0].free_mb, 576);
  EXPECT_THAT(gpus[0].processes, ElementsAre(Process(100, 20000), Process(101, 4000)));
  EXPECT_EQ(gpus[1].used_mb, 18000);
  EXPECT_THAT(gpus[1].processes, ElementsAre(Process(102, 18000)));
}

TEST(SimVram, SecondChargeOfAKeyReplacesTheFigure) {
  SimVram vram({SimGpu{.index = 0}});
  vram.Charge(0, "cosyvoice@0", 7, 4000);

  vram.Charge(0, "cosyvoice@0", 7, 3500);  // the health reply measured less

  auto gpus = QueryOk(vram);
  EXPECT_EQ(gpus[0].used_mb, 3500);
  EXPECT_THAT(gpus[0].processes, ElementsAre(Process(7, 3500)));
}

TEST(SimVram, DischargeFreesTheMemory) {
  SimVram vram({SimGpu{.index = 0}});
  vram.Charge(0, "a@0", 1, 1000);
  vram.Charge(0, "b@0", 2, 2000);

  vram.Discharge("a@0");
  vram.Discharge("never-charged@0");

  auto gpus = QueryOk(vram);
  EXPECT_EQ(gpus[0].used_mb, 2000);
  EXPECT_EQ(gpus[0].free_mb, 24576 - 2000);
  EXPECT_THAT(gpus[0].processes, ElementsAre(Process(2, 2000)));
}

TEST(SimVram, OverCommitShowsAsUsedAboveTotalWithNothingFree) {
  SimVram vram({SimGpu{.index = 0, .total_mb = 24576}});

  vram.Charge(0, "comfyui@0", 1, 20000);
  vram.Charge(0, "ollama@0", 2, 18000);

  auto gpus = QueryOk(vram);
  EXPECT_EQ(gpus[0].used_mb, 38000);
  EXPECT_EQ(gpus[0].free_mb, 0);
}

TEST(SimVram, ChargeOnAnUnconfiguredGpuShowsNowhere) {
  SimVram vram({SimGpu{.index = 0}});

  vram.Charge(3, "x@3", 1, 1000);

  auto gpus = QueryOk(vram);
  ASSERT_EQ(gpus.size(), 1u);
  EXPECT_EQ(gpus[0].used_mb, 0);
}

TEST(SimVram, ConcurrentChargesAndQueriesKeepTheLedgerConsistent) {
  SimVram vram({SimGpu{.index = 0, .total_mb = 1'000'000}});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&vram, t] {
      for (int i = 0; i < 500; ++i) {
        std::string key = "s" + std::to_string(t) + "-" + std::to_string(i);
        vram.Charge(0, key, t, 10);
        ASSERT_TRUE(vram.Query());
        if (i % 2 == 0) vram.Discharge(key);
      }
    });
  }

  for (auto& thread : threads) thread.join();

  auto gpus = QueryOk(vram);
  EXPECT_EQ(gpus[0].used_mb, 4 * 250 * 10);
  EXPECT_EQ(gpus[0].processes.size(), 1000u);
}

TEST(NoVram, HasNoGpus) {
  NoVram vram;

  auto gpus = vram.Query();

  ASSERT_TRUE(gpus);
  EXPECT_THAT(gpus.value(), IsEmpty());
  EXPECT_EQ(vram.Name(), "none");
  EXPECT_FALSE(vram.Simulated());
}

TEST(OpenVram, SimBackendServesTheConfiguredGpus) {
  auto vram = OpenVram({.backend = "sim", .sim_gpus = {SimGpu{.index = 0, .total_mb = 8192}}});

  ASSERT_TRUE(vram) << vram.error().message;
  EXPECT_EQ(vram.value()->Name(), "sim");
  vram.value()->Charge(0, "a@0", 1, 1024);
  auto gpus = QueryOk(*vram.value());
  ASSERT_EQ(gpus.size(), 1u);
  EXPECT_EQ(gpus[0].free_mb, 7168);
}

TEST(OpenVram, SimBackendWithoutGpusIsInvalid) {
  auto vram = OpenVram({.backend = "sim"});

  ASSERT_FALSE(vram);
  EXPECT_EQ(vram.error().code, Errc::kInvalidArgument);
}

TEST(OpenVram, NoneBackendHasNoGpus) {
  auto vram = OpenVram({.backend = "none", .gpu_services_configured = true});

  ASSERT_TRUE(vram) << vram.error().message;
  EXPECT_EQ(vram.value()->Name(), "none");
  EXPECT_THAT(QueryOk(*vram.value()), IsEmpty());
}

TEST(OpenVram, UnknownBackendIsInvalidAndNamesIt) {
  auto vram = OpenVram({.backend = "cuda"});

  ASSERT_FALSE(vram);
  EXPECT_EQ(vram.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(vram.error().message, ::testing::HasSubstr("cuda"));
}

}  // namespace
}  // namespace gpuq::gpu
