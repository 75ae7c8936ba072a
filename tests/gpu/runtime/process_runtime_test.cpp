#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "gpu/runtime/fake_service.hpp"
#include "gpu/runtime/health.hpp"
#include "gpu/runtime/runtime.hpp"
#include "http/client.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace gpuq::gpu {
namespace {

using testing::FreePort;
using testing::ProcessAlive;
using testing::WaitUntil;

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

class ProcessRuntimeTest : public ::testing::Test {
 protected:
  // A fake service instance on GPU 1 with its own free port; `extra` flags are appended.
  InstanceSpec Spec(std::vector<std::string> extra = {}) {
    InstanceSpec spec;
    spec.service.name = "fake";
    spec.service.kind = ServiceKind::kProcess;
    spec.service.argv = {FakeServiceBinary(), "--name", "fake", "--vram-mb", "1234"};
    spec.service.argv.insert(spec.service.argv.end(), extra.begin(), extra.end());
    spec.gpu = 1;
    spec.port = port_;
    spec.log_file = dir_ / "services/fake/gpu1.log";
    spec.pid_file = dir_ / "services/fake/gpu1.pid";
    spec.key = "fake@1";
    spec.die_with_parent = true;
    return spec;
  }

  ServiceRuntime& Make(InstanceSpec spec) {
    runtimes_.push_back(MakeProcessRuntime(std::move(spec)));
    return *runtimes_.back();
  }

  Result<HealthReply> WaitHealthyFor(ServiceRuntime& runtime, Millis deadline = Millis(60'000)) {
    WaitHealthyOptions options;
    options.deadline = deadline;
    return WaitHealthy(HealthUrl(port_), options, {}, [&] { return runtime.Running(); });
  }

  nlohmann::json Health() {
    http::Client client(http::Endpoint{"127.0.0.1", port_}, std::chrono::seconds(10));
    auto response = client.Get("/health");
    if (!response) return nullptr;
    return nlohmann::json::parse(response.value().body, nullptr, false);
  }

  void Remember(ServiceRuntime& runtime) {
    if (auto pid = runtime.Pid()) pids_.push_back(*pid);
  }

  // No fake outlives its test.
  void TearDown() override {
    for (auto& runtime : runtimes_) {
      Remember(*runtime);
      EXPECT_TRUE(runtime->Stop(Millis(0), true));
    }
    for (int pid : pids_) EXPECT_FALSE(ProcessAlive(pid)) << "pid " << pid << " outlived its test";
  }

  testing::TempDir dir_;
  int port_ = FreePort();
  std::vector<std::unique_ptr<ServiceRuntime>> runtimes_;
  std::vector<int> pids_;
};

TEST_F(ProcessRuntimeTest, StartsAServiceThatSeesItsGpuAndPort) {
  auto& runtime = Make(Spec());  // no --port: the fake takes $PORT

  ASSERT_TRUE(runtime.Start());
  Remember(runtime);
  auto reply = WaitHealthyFor(runtime);

  ASSERT_TRUE(reply) << reply.error().message << "\n" << ReadFile(dir_ / "services/fake/gpu1.log");
  EXPECT_EQ(reply.value().vram_mb, 1234);
  auto health = Health();
  EXPECT_EQ(health["gpu"], "1");
  EXPECT_EQ(health["port"], port_);
  EXPECT_TRUE(runtime.Running());
}

TEST_F(ProcessRuntimeTest, PrefersTheGpuUuidForCudaVisibleDevices) {
  auto spec = Spec();
  spec.gpu_uuid = "GPU-8f0c2a1e";
  auto& runtime = Make(spec);

  ASSERT_TRUE(runtime.Start());
  Remember(runtime);
  ASSERT_TRUE(WaitHealthyFor(runtime));

  EXPECT_EQ(Health()["gpu"], "GPU-8f0c2a1e");
}

TEST_F(ProcessRuntimeTest, PassesTheServiceEnvironment) {
  auto spec = Spec();
  spec.service.env["CUDA_VISIBLE_DEVICES"] = "7";  // the service's own env wins
  auto& runtime = Make(spec);

  ASSERT_TRUE(runtime.Start());
  Remember(runtime);
  ASSERT_TRUE(WaitHealthyFor(runtime));

  EXPECT_EQ(Health()["gpu"], "7");
}

TEST_F(ProcessRuntimeTest, WritesOutputToTheLogAndKeepsAPidFileWhileRunning) {
  auto& runtime = Make(Spec());

  ASSERT_TRUE(runtime.Start());
  Remember(runtime);
  ASSERT_TRUE(WaitHealthyFor(runtime));
  ASSERT_TRUE(runtime.Pid());
  int pid = *runtime.Pid();

  EXPECT_EQ(ReadFile(dir_ / "services/fake/gpu1.pid"), fmt::format("{}\n", pid));
  EXPECT_EQ(runtime.Describe(), fmt::format("pid {}", pid));
  EXPECT_TRUE(WaitUntil([&] {
    return ReadFile(dir_ / "services/fake/gpu1.log").find("GET /health 200") != std::string::npos;
  }));
  ASSERT_TRUE(runtime.Stop(Millis(10'000), false));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "services/fake/gpu1.pid"));
  EXPECT_NE(ReadFile(dir_ / "services/fake/gpu1.log").find("stopping on signal 15"),
            std::string::npos);
}

TEST_F(ProcessRuntimeTest, StopEndsTheWholeProcessGroup) {
  auto& runtime = Make(Spec());
  ASSERT_TRUE(runtime.Start());
  Remember(runtime);
  ASSERT_TRUE(WaitHealthyFor(runtime));
  auto pids = runtime.Pids();
  ASSERT_FALSE(pids.empty());
  EXPECT_NE(std::find(pids.begin(), pids.end(), *runtime.Pid()), pids.end());

  ASSERT_TRUE(runtime.Stop(Millis(10'000), false));

  EXPECT_FALSE(runtime.Running());
  EXPECT_TRUE(runtime.Pids().empty());
  EXPECT_EQ(runtime.Pid(), std::nullopt);
  for (int pid : pids) EXPECT_FALSE(ProcessAlive(pid));
}

TEST_F(ProcessRuntimeTest, EscalatesToSigkillWhenSigtermIsIgnored) {
  auto& runtime = Make(Spec({"--ignore-sigterm"}));
  ASSERT_TRUE(runtime.Start());
  Remember(runtime);
  ASSERT_TRUE(WaitHealthyFor(runtime));
  auto start = std::chrono::steady_clock::now();

  ASSERT_TRUE(runtime.Stop(Millis(300), false));

  EXPECT_GE(std::chrono::steady_clock::now() - start, Millis(300));  // it got its grace
  EXPECT_FALSE(runtime.Running());
  EXPECT_EQ(ReadFile(dir_ / "services/fake/gpu1.log").find("stopping on signal"),
            std::string::npos);
}

TEST_F(ProcessRuntimeTest, ForceStopKillsAtOnce) {
  auto& runtime = Make(Spec({"--ignore-sigterm"}));
  ASSERT_TRUE(runtime.Start());
  Remember(runtime);

  ASSERT_TRUE(runtime.Stop(Millis(60'000), true));

  EXPECT_FALSE(runtime.Running());
}

TEST_F(ProcessRuntimeTest, RunsTheStopCommandInsteadOfASignal) {
  auto spec = Spec({"--ignore-sigterm"});  // only the stop command's SIGINT ends it
  auto& runtime = Make(spec);
  ASSERT_TRUE(runtime.Start());
  Remember(runtime);
  ASSERT_TRUE(WaitHealthyFor(runtime));
  // A stop command that sends SIGINT (looked up in PATH, no shell).
  spec.service.stop_argv = {"kill", "-INT", std::to_string(*runtime.Pid())};
  auto& stopper = Make(spec);
  ASSERT_TRUE(stopper.Adopt().value());

  ASSERT_TRUE(stopper.Stop(Millis(30'000), false));

  EXPECT_NE(ReadFile(dir_ / "services/fake/gpu1.log").find("stopping on signal 2"),
            std::string::npos);
}

TEST_F(ProcessRuntimeTest, AdoptsARunningInstanceFromItsPidFile) {
  auto spec = Spec();
  auto& first = Make(spec);
  ASSERT_TRUE(first.Start());
  Remember(first);
  ASSERT_TRUE(WaitHealthyFor(first));
  auto& second = Make(spec);

  auto adopted = second.Adopt();

  ASSERT_TRUE(adopted) << adopted.error().message;
  EXPECT_TRUE(adopted.value());
  EXPECT_EQ(second.Pid(), first.Pid());
  EXPECT_TRUE(second.Running());
  EXPECT_TRUE(WaitHealthyFor(second));
  int pid = *second.Pid();
  ASSERT_TRUE(second.Stop(Millis(10'000), false));
  EXPECT_FALSE(second.Running());
  EXPECT_FALSE(ProcessAlive(pid));
  EXPECT_FALSE(std::filesystem::exists(spec.pid_file));
}

TEST_F(ProcessRuntimeTest, AdoptsNothingWithoutALivePidFile) {
  auto spec = Spec();
  auto& runtime = Make(spec);
  EXPECT_FALSE(runtime.Adopt().value());  // no pid file

  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  std::filesystem::create_directories(spec.pid_file.parent_path());
  std::ofstream(spec.pid_file) << dead << "\n";
  EXPECT_FALSE(runtime.Adopt().value());  // a pid that is gone

  std::ofstream(spec.pid_file) << "garbage\n";
  EXPECT_FALSE(runtime.Adopt().value());
  EXPECT_FALSE(runtime.Running());
}

TEST_F(ProcessRuntimeTest, NoticesAnUnexpectedExit) {
  auto& runtime = Make(Spec({"--exit-after-ms", "500"}));
  ASSERT_TRUE(runtime.Start());
  Remember(runtime);
  ASSERT_TRUE(WaitHealthyFor(runtime));

  EXPECT_TRUE(WaitUntil([&] { return !runtime.Running(); }));

  EXPECT_EQ(runtime.Pid(), std::nullopt);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "services/fake/gpu1.pid"));
  EXPECT_NE(ReadFile(dir_ / "services/fake/gpu1.log").find("exiting after 500 ms"),
            std::string::npos);
}

TEST_F(ProcessRuntimeTest, WaitHealthyFailsFastWhenTheServiceDiesWhileStarting) {
  auto& runtime = Make(Spec({"--startup-ms", "60000", "--exit-after-ms", "200"}));
  ASSERT_TRUE(runtime.Start());
  Remember(runtime);
  auto start = std::chrono::steady_clock::now();

  auto reply = WaitHealthyFor(runtime, Millis(120'000));

  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code, Errc::kUnavailable);
  EXPECT_NE(reply.error().message.find("exited"), std::string::npos) << reply.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST_F(ProcessRuntimeTest, WaitHealthyTimesOutWhileHealthFails) {
  auto& runtime = Make(Spec({"--fail-health"}));
  ASSERT_TRUE(runtime.Start());
  Remember(runtime);

  auto reply = WaitHealthyFor(runtime, Millis(800));

  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code, Errc::kTimeout);
  EXPECT_NE(reply.error().message.find("status 500"), std::string::npos) << reply.error().message;
  EXPECT_TRUE(runtime.Running());
}

TEST_F(ProcessRuntimeTest, StartFailsForAProgramThatCannotRun) {
  auto spec = Spec();
  spec.service.argv = {(dir_ / "no-such-service").string()};
  auto& runtime = Make(spec);

  auto started = runtime.Start();

  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code, Errc::kInvalidArgument);
  EXPECT_NE(started.error().message.find("cannot execute"), std::string::npos);
  EXPECT_FALSE(runtime.Running());
  EXPECT_FALSE(std::filesystem::exists(spec.pid_file));
}

TEST_F(ProcessRuntimeTest, StopOfAStoppedInstanceDoesNothing) {
  auto& runtime = Make(Spec());

  EXPECT_TRUE(runtime.Stop(Millis(1'000), false));
  EXPECT_FALSE(runtime.Running());
  EXPECT_EQ(runtime.Describe(), "process fake@1 (not running)");
}

}  // namespace
}  // namespace gpuq::gpu
