// The Docker Engine API client and the docker service runtime against a real engine: podman's
// Docker-compatible service, started per test process by tests/support/docker_engine.sh on a
// temp socket with a local busybox image. Where no engine can start, the tests are skipped
// with the reason (CTest reports them as not run).
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "gpu/runtime/runtime.hpp"
#include "http/docker_client.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace gpuq {
namespace {

using namespace std::chrono_literals;
using http::ContainerSpec;
using http::DockerClient;
using testing::ChildProcess;
using testing::TempDir;
using testing::WaitUntil;

constexpr const char* kImage = "gpuq-test:latest";  // built by docker_engine.sh

std::string EngineScript() { return GPUQ_SOURCE_DIR "/tests/support/docker_engine.sh"; }

class DockerEngineTest : public ::testing::Test {
 protected:
  // Under CTest one engine serves every test process (the docker_engine fixture in
  // CMakeLists.txt sets GPUQ_DOCKER_SOCKET); a binary run by hand starts its own.
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    ChildProcess check({"/bin/bash", EngineScript(), "check"}, *dir_ / "check.log");
    auto checked = check.Wait(60s);
    if (checked != 0) {
      skip_reason_ = "no container engine: " + check.Output();
      return;
    }
    if (const char* shared = std::getenv("GPUQ_DOCKER_SOCKET"); shared && *shared) {
      socket_ = shared;
      docker_ = new DockerClient({.socket = socket_, .timeout = 30s});
      auto ping = docker_->Ping();
      if (!ping) {
        // The fixture said it started: an engine that does not answer is a failure.
        fail_reason_ = "the engine of the CTest fixture docker_engine_start does not answer: " +
                       ping.error().message;
      }
      return;
    }
    socket_ = *dir_ / "engine.sock";
    engine_ = new ChildProcess(
        {"/bin/bash", EngineScript(), "serve", (*dir_ / "engine").string(), socket_.string()},
        *dir_ / "engine.log");
    docker_ = new DockerClient({.socket = socket_, .timeout = 30s});
    // The first start imports the image: generous, as everything here runs on a busy machine.
    bool up = WaitUntil([] { return docker_->Ping() || !engine_->Running(); }, 180s, 50ms);
    if (!up || !engine_->Running()) {
      skip_reason_ = "the container engine did not start: " + engine_->Output();
    }
  }

  static void TearDownTestSuite() {
    delete docker_;
    docker_ = nullptr;
    if (engine_) {
      engine_->Signal(SIGTERM);
      engine_->Wait(30s);
      delete engine_;  // SIGKILLs the group if it is still there
      engine_ = nullptr;
      // Containers live on under conmon; purge removes them and the engine's files.
      ChildProcess purge({"/bin/bash", EngineScript(), "purge", (*dir_ / "engine").string()},
                         *dir_ / "purge.log");
      purge.Wait(120s);
    }
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (!fail_reason_.empty()) GTEST_FAIL() << fail_reason_;
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
  }

  void TearDown() override {
    for (const auto& name : created_) (void)docker_->Remove(name, /*force=*/true);
  }

  DockerClient& docker() { return *docker_; }

  // A container of the test image with no network; removed after the test.
  std::string CreateContainer(std::vector<std::string> cmd) {
    static std::atomic<int> counter{0};
    ContainerSpec spec{.name = fmt::format("gpuq_test_{}_{}", getpid(), counter++),
                       .image = kImage,
                       .cmd = std::move(cmd),
                       .labels = {{"gpuq.test", "1"}},
                       .network_mode = "none"};
    auto id = docker().Create(spec);
    EXPECT_TRUE(id) << id.error().message;
    created_.push_back(spec.name);
    return spec.name;
  }

  gpu::InstanceSpec Instance(const std::string& container) {
    gpu::InstanceSpec spec;
    spec.service.name = "svc";
    spec.service.kind = ServiceKind::kDocker;
    spec.service.container = container;
    spec.key = "svc@0";
    return spec;
  }

  static std::vector<std::string> Sleeper() { return {"sleep", "1000"}; }
  // Exits 0 at once on SIGTERM (sleep in the background, so `wait` is interruptible).
  static std::vector<std::string> TermHandler() {
    return {"sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"};
  }

  bool IsRunning(const std::string& name) {
    auto info = docker().Inspect(name);
    return info && info.value().running;
  }

  std::vector<std::string> created_;

  static inline TempDir* dir_ = nullptr;
  static inline ChildProcess* engine_ = nullptr;
  static inline DockerClient* docker_ = nullptr;
  static inline std::filesystem::path socket_;
  static inline std::string skip_reason_;
  static inline std::string fail_reason_;
};

// ---- pure parts: no engine needed

TEST(DemuxLogStream, SplitsFramesByStream) {
  using namespace std::string_literals;
  // Header bytes and payload as separate literals: "\x05e" would be one hex escape.
  std::string body = "\x01\0\0\0\0\0\0\x05"s + "out1\n" + "\x02\0\0\0\0\0\0\x05"s + "err1\n" +
                     "\x01\0\0\0\0\0\0\x03"s + "out";

  auto logs = http::DemuxLogStream(body);

  EXPECT_EQ(logs.out, "out1\nout");
  EXPECT_EQ(logs.err, "err1\n");
  EXPECT_EQ(logs.all, "out1\nerr1\nout");
}

TEST(DemuxLogStream, KeepsWhatArrivedOfATruncatedFrame) {
  using namespace std::string_literals;
  auto logs = http::DemuxLogStream("\x01\0\0\0\0\0\0\x10partial"s);

  EXPECT_EQ(logs.out, "partial");
}

TEST(ParseDockerHost, AcceptsUnixSocketsOnly) {
  EXPECT_EQ(http::ParseDockerHost("unix:///run/docker.sock").value(), "/run/docker.sock");
  EXPECT_EQ(http::ParseDockerHost("/tmp/e.sock").value(), "/tmp/e.sock");
  EXPECT_FALSE(http::ParseDockerHost("tcp://127.0.0.1:2375"));
}

TEST(DockerClientNoEngine, UnreachableSocketIsUnavailable) {
  TempDir dir;
  DockerClient docker({.socket = dir / "nothing.sock", .timeout = 5s});

  auto ping = docker.Ping();

  ASSERT_FALSE(ping);
  EXPECT_EQ(ping.error().code, Errc::kUnavailable);
}

// ---- the client against the engine

TEST_F(DockerEngineTest, NegotiatesTheEnginesVersionBelowOurMaximum) {
  auto engine = docker().Version();
  ASSERT_TRUE(engine) << engine.error().message;
  ASSERT_FALSE(engine.value().api_version.empty());

  auto version = docker().ApiVersion();

  ASSERT_TRUE(version) << version.error().message;
  EXPECT_EQ(version.value(), engine.value().api_version);  // podman 4.3: 1.41 < 1.47
  DockerClient capped({.socket = socket_, .timeout = 30s, .max_api_version = "1.40"});
  EXPECT_EQ(capped.ApiVersion().value(), "1.40");
  EXPECT_TRUE(capped.Inspect(CreateContainer({"true"})));  // /v1.40/ paths work
}

TEST_F(DockerEngineTest, CreatesStartsInspectsStopsAndRemoves) {
  auto name = CreateContainer(Sleeper());

  ASSERT_TRUE(docker().Start(name));
  auto running = docker().Inspect(name);
  ASSERT_TRUE(running) << running.error().message;
  EXPECT_TRUE(running.value().running);
  EXPECT_EQ(running.value().name, name);
  EXPECT_EQ(running.value().labels.at("gpuq.test"), "1");
  EXPECT_GT(running.value().pid, 0);
  EXPECT_TRUE(testing::ProcessAlive(running.value().pid));  // a host pid

  auto stopped = docker().Stop(name, 0s);
  ASSERT_TRUE(stopped) << stopped.error().message;
  auto exited = docker().WaitExited(name, 60s);
  ASSERT_TRUE(exited) << exited.error().message;
  EXPECT_FALSE(exited.value().running);

  ASSERT_TRUE(docker().Remove(name));
  auto gone = docker().Inspect(name);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Errc::kNotFound);
}

TEST_F(DockerEngineTest, StartingARunningContainerSucceeds) {
  auto name = CreateContainer(Sleeper());
  ASSERT_TRUE(docker().Start(name));

  auto again = docker().Start(name);  // 304

  EXPECT_TRUE(again) << again.error().message;
  EXPECT_TRUE(IsRunning(name));
}

TEST_F(DockerEngineTest, StoppingAStoppedContainerSucceeds) {
  auto name = CreateContainer({"true"});
  ASSERT_TRUE(docker().Start(name));
  ASSERT_TRUE(docker().WaitExited(name, 60s));

  auto stopped = docker().Stop(name, 1s);  // 304

  EXPECT_TRUE(stopped) << stopped.error().message;
}

TEST_F(DockerEngineTest, UnknownContainerIsNotFound) {
  auto started = docker().Start("gpuq_no_such_container");
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code, Errc::kNotFound);
  EXPECT_NE(started.error().message.find("gpuq_no_such_container"), std::string::npos);

  EXPECT_EQ(docker().Inspect("gpuq_no_such_container").error().code, Errc::kNotFound);
  EXPECT_EQ(docker().Stop("gpuq_no_such_container", 1s).error().code, Errc::kNotFound);
  EXPECT_EQ(docker().Remove("gpuq_no_such_container").error().code, Errc::kNotFound);
}

TEST_F(DockerEngineTest, WaitExitedReportsTheExitCode) {
  auto name = CreateContainer({"sh", "-c", "exit 7"});
  ASSERT_TRUE(docker().Start(name));

  auto exited = docker().WaitExited(name, 60s);

  ASSERT_TRUE(exited) << exited.error().message;
  EXPECT_EQ(exited.value().exit_code, 7);
}

TEST_F(DockerEngineTest, LogsAreSplitIntoStdoutAndStderr) {
  auto name = CreateContainer({"sh", "-c", "echo out1; echo err1 >&2; echo out2"});
  ASSERT_TRUE(docker().Start(name));
  ASSERT_TRUE(docker().WaitExited(name, 60s));

  auto logs = docker().Logs(name);

  ASSERT_TRUE(logs) << logs.error().message;
  EXPECT_EQ(logs.value().out, "out1\nout2\n");
  EXPECT_EQ(logs.value().err, "err1\n");
  EXPECT_EQ(logs.value().all.size(), std::string("out1\nerr1\nout2\n").size());
}

TEST_F(DockerEngineTest, MissingImageIsAClearError) {
  ContainerSpec spec{.name = fmt::format("gpuq_test_{}_noimage", getpid()),
                     .image = "gpuq-no-such-image:latest",
                     .cmd = {"true"},
                     .network_mode = "none"};

  auto id = docker().Create(spec);

  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().code, Errc::kNotFound);
  EXPECT_NE(id.error().message.find("image gpuq-no-such-image:latest is missing"),
            std::string::npos)
      << id.error().message;
}

TEST_F(DockerEngineTest, ListsContainersByLabel) {
  auto name = CreateContainer(Sleeper());

  auto listed = docker().List({"gpuq.test=1"});

  ASSERT_TRUE(listed) << listed.error().message;
  bool found = false;
  for (const auto& c : listed.value()) found |= c.name == name;
  EXPECT_TRUE(found);
}

// ---- the docker runtime

TEST_F(DockerEngineTest, RuntimeStartRunsTheContainer) {
  auto name = CreateContainer(Sleeper());
  auto runtime = gpu::MakeDockerRuntime(Instance(name), docker());

  auto started = runtime->Start();

  ASSERT_TRUE(started) << started.error().message;
  EXPECT_TRUE(runtime->Running());
  auto pid = docker().Inspect(name).value().pid;
  EXPECT_EQ(runtime->Pid(), pid);
  EXPECT_THAT(runtime->Pids(), ::testing::Contains(pid));
  EXPECT_EQ(runtime->Container(), name);
  EXPECT_NE(runtime->Describe().find(name), std::string::npos);
  EXPECT_TRUE(runtime->Start());  // already running: still fine
}

TEST_F(DockerEngineTest, RuntimeAdoptsARunningContainerOnly) {
  auto running = CreateContainer(Sleeper());
  auto stopped = CreateContainer(Sleeper());
  ASSERT_TRUE(docker().Start(running));

  auto adopted = gpu::MakeDockerRuntime(Instance(running), docker())->Adopt();
  auto not_running = gpu::MakeDockerRuntime(Instance(stopped), docker())->Adopt();
  auto missing = gpu::MakeDockerRuntime(Instance("gpuq_no_such_container"), docker())->Adopt();

  ASSERT_TRUE(adopted) << adopted.error().message;
  EXPECT_TRUE(adopted.value());
  ASSERT_TRUE(not_running) << not_running.error().message;
  EXPECT_FALSE(not_running.value());
  ASSERT_TRUE(missing) << missing.error().message;
  EXPECT_FALSE(missing.value());
}

TEST_F(DockerEngineTest, RuntimeStopLetsTheServiceExitWithinTheGrace) {
  auto name = CreateContainer(TermHandler());
  auto runtime = gpu::MakeDockerRuntime(Instance(name), docker());
  ASSERT_TRUE(runtime->Start());

  auto stopped = runtime->Stop(30s, /*force=*/false);

  ASSERT_TRUE(stopped) << stopped.error().message;
  EXPECT_FALSE(runtime->Running());
  EXPECT_TRUE(runtime->Pids().empty());
  auto info = docker().Inspect(name);
  ASSERT_TRUE(info);
  EXPECT_FALSE(info.value().running);
  EXPECT_EQ(info.value().exit_code, 0);  // its own exit on SIGTERM, not a kill
}

TEST_F(DockerEngineTest, RuntimeForceStopKillsAtOnce) {
  auto name = CreateContainer(TermHandler());
  auto runtime = gpu::MakeDockerRuntime(Instance(name), docker());
  ASSERT_TRUE(runtime->Start());

  auto stopped = runtime->Stop(30s, /*force=*/true);

  ASSERT_TRUE(stopped) << stopped.error().message;
  EXPECT_FALSE(runtime->Running());
  EXPECT_EQ(docker().Inspect(name).value().exit_code, 137);  // SIGKILL
}

TEST_F(DockerEngineTest, RuntimeKillsAContainerThatIgnoresSigtermAfterTheGrace) {
  auto name = CreateContainer(Sleeper());  // sleep as PID 1 ignores SIGTERM
  auto runtime = gpu::MakeDockerRuntime(Instance(name), docker());
  ASSERT_TRUE(runtime->Start());

  auto stopped = runtime->Stop(1s, /*force=*/false);

  ASSERT_TRUE(stopped) << stopped.error().message;
  EXPECT_FALSE(runtime->Running());
  EXPECT_EQ(docker().Inspect(name).value().exit_code, 137);
}

TEST_F(DockerEngineTest, RuntimeStopOfAStoppedOrMissingContainerSucceeds) {
  auto name = CreateContainer(Sleeper());

  EXPECT_TRUE(gpu::MakeDockerRuntime(Instance(name), docker())->Stop(1s, false));
  EXPECT_TRUE(gpu::MakeDockerRuntime(Instance(name), docker())->Stop(1s, true));
  EXPECT_TRUE(gpu::MakeDockerRuntime(Instance("gpuq_no_such_container"), docker())->Stop(1s, true));
}

TEST_F(DockerEngineTest, RuntimeStartOfAMissingContainerSaysToCreateIt) {
  auto runtime = gpu::MakeDockerRuntime(Instance("gpuq_no_such_container"), docker());

  auto started = runtime->Start();

  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code, Errc::kNotFound);
  EXPECT_EQ(started.error().message,
            "container gpuq_no_such_container does not exist: create it (docker create/compose) "
            "first");
  EXPECT_FALSE(runtime->Running());
}

}  // namespace
}  // namespace gpuq
