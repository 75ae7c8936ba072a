#include "gpu/runtime/health.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "gpu/runtime/fake_service.hpp"
#include "gpu/runtime/runtime.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace gpuq::gpu {
namespace {

using testing::ChildProcess;
using testing::FreePort;
using testing::ProcessAlive;
using testing::TempDir;

TEST(CheckHealth, RefusedConnectionIsUnavailable) {
  auto reply = CheckHealth(HealthUrl(FreePort()), Millis(2'000));

  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code, Errc::kUnavailable);
}

TEST(CheckHealth, RejectsAUrlThatIsNotHttp) {
  auto reply = CheckHealth("https://127.0.0.1:1/health", Millis(2'000));

  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code, Errc::kInvalidArgument);
}

TEST(CheckHealth, ReportsStatusAndVramFromTheReply) {
  TempDir dir;
  int port = FreePort();
  ChildProcess fake({FakeServiceBinary(), "--port", std::to_string(port), "--vram-mb", "777"},
                    dir / "fake.log");
  ASSERT_TRUE(testing::WaitUntil([&] {
    return CheckHealth(HealthUrl(port), Millis(1'000)).has_value();
  })) << fake.Output();

  auto reply = CheckHealth(HealthUrl(port), Millis(2'000));

  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply.value().status, 200);
  EXPECT_EQ(reply.value().vram_mb, 777);
}

TEST(CheckHealth, ReturnsAFailingStatusAsAReply) {
  TempDir dir;
  int port = FreePort();
  ChildProcess fake({FakeServiceBinary(), "--port", std::to_string(port), "--fail-health"},
                    dir / "fake.log");
  ASSERT_TRUE(
      testing::WaitUntil([&] { return CheckHealth(HealthUrl(port), Millis(1'000)).has_value(); }));

  auto reply = CheckHealth(HealthUrl(port), Millis(2'000));

  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply.value().status, 500);
}

TEST(WaitHealthy, WaitsThroughAStartupDelay) {
  TempDir dir;
  int port = FreePort();
  ChildProcess fake({FakeServiceBinary(), "--port", std::to_string(port), "--startup-ms", "300",
                     "--vram-mb", "42"},
                    dir / "fake.log");

  auto reply = WaitHealthy(HealthUrl(port), {}, {}, [&] { return fake.Running(); });

  ASSERT_TRUE(reply) << reply.error().message << "\n" << fake.Output();
  EXPECT_EQ(reply.value().vram_mb, 42);
}

TEST(WaitHealthy, TimesOutWhileTheServiceFailsItsHealthCheck) {
  TempDir dir;
  int port = FreePort();
  ChildProcess fake({FakeServiceBinary(), "--port", std::to_string(port), "--fail-health"},
                    dir / "fake.log");
  WaitHealthyOptions options;
  options.deadline = Millis(500);

  auto reply = WaitHealthy(HealthUrl(port), options, {}, [&] { return fake.Running(); });

  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code, Errc::kTimeout);
}

TEST(WaitHealthy, FailsAtOnceWhenTheProcessIsGone) {
  WaitHealthyOptions options;
  options.deadline = Millis(60'000);
  auto start = std::chrono::steady_clock::now();

  auto reply = WaitHealthy(HealthUrl(FreePort()), options, {}, [] { return false; });

  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code, Errc::kUnavailable);
  EXPECT_NE(reply.error().message.find("exited"), std::string::npos) << reply.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST(WaitHealthy, ReturnsWhenStopIsRequested) {
  std::stop_source stop;
  WaitHealthyOptions options;
  options.deadline = Millis(120'000);
  options.first_interval = Millis(5'000);
  options.max_interval = Millis(5'000);
  std::jthread stopper([&] { stop.request_stop(); });

  auto reply = WaitHealthy(HealthUrl(FreePort()), options, stop.get_token(), [] { return true; });

  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code, Errc::kUnavailable);
  EXPECT_EQ(reply.error().message, "stopped");
}

TEST(ExternalRuntime, IsAlwaysRunningAndStartsNothing) {
  InstanceSpec spec;
  spec.service.name = "comfyui";
  spec.service.kind = ServiceKind::kExternal;
  spec.service.url = "http://10.0.0.5:8188";
  auto runtime = MakeExternalRuntime(spec);

  ASSERT_TRUE(runtime->Start());
  EXPECT_TRUE(runtime->Running());
  ASSERT_TRUE(runtime->Stop(Millis(0), true));

  EXPECT_TRUE(runtime->Running());
  EXPECT_TRUE(runtime->Pids().empty());
  EXPECT_EQ(runtime->Pid(), std::nullopt);
  EXPECT_EQ(runtime->Describe(), "external http://10.0.0.5:8188");
}

}  // namespace
}  // namespace gpuq::gpu
