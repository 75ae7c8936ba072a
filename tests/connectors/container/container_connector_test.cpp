// The container connector against a real engine: podman's Docker-compatible service, started
// by the CTest fixture docker_engine (tests/CMakeLists.txt) with the image gpuq-test:latest
// (busybox). Without GPUQ_DOCKER_SOCKET (a binary run by hand) the engine tests are skipped;
// the pure ones (settings, the create body) always run.
#include "connectors/container/container_connector.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "connectors/run_fixture.hpp"
#include "support/wait.hpp"

namespace gpuq::connectors {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::WaitUntil;

constexpr const char* kImage = "gpuq-test:latest";

TaskType ContainerType(Json settings, std::map<std::string, std::string> env = {}) {
  TaskType type = MakeType("job", "container", {}, std::move(env));
  type.settings = Json{{"image", kImage}, {"network", "none"}};
  for (auto& [key, value] : settings.items()) type.settings[key] = value;
  return type;
}

Json Sh(const std::string& script) { return Json::array({"sh", "-c", script}); }

// GET on the engine's socket with HTTP/1.0 (the reply ends at EOF): the raw JSON the client
// does not expose (HostConfig).
Json RawGet(const std::string& socket_path, const std::string& target) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return nullptr;
  }
  std::string request = fmt::format("GET {} HTTP/1.0\r\nHost: docker\r\n\r\n", target);
  (void)::write(fd, request.data(), request.size());
  std::string reply;
  char buf[8192];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) reply.append(buf, n);
  ::close(fd);
  auto body = reply.find("\r\n\r\n");
  if (body == std::string::npos) return nullptr;
  return Json::parse(reply.substr(body + 4), nullptr, false);
}

class ContainerEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* socket = std::getenv("GPUQ_DOCKER_SOCKET");
    if (socket == nullptr || *socket == '\0') {
      GTEST_SKIP() << "GPUQ_DOCKER_SOCKET is unset: run through ctest -L docker";
    }
    socket_ = socket;
    docker_ = std::make_unique<http::DockerClient>(
        http::DockerOptions{.socket = socket_, .timeout = 30s});
    auto ping = docker_->Ping();
    ASSERT_TRUE(ping) << "the docker_engine fixture's engine does not answer: "
                      << ping.error().message;
    ConnectorOptions options;
    options.docker_socket = socket_;
    connector_ = std::make_unique<ContainerConnector>(options);
  }

  // The containers of run `id`, stopped ones too.
  std::vector<http::ContainerInfo> ContainersOf(const std::string& id) {
    auto listed = docker_->List({"gpuq.run=" + id});
    EXPECT_TRUE(listed) << listed.error().message;
    return listed ? listed.value() : std::vector<http::ContainerInfo>{};
  }

  std::string socket_;
  std::unique_ptr<http::DockerClient> docker_;
  std::unique_ptr<ContainerConnector> connector_;
};

TEST_F(ContainerEngineTest, RunsTheCommandAndListsItsFiles) {
  RunFixture fixture(
      Json{{"greeting", "hello"}},
      ContainerType({{"command", Sh("echo {{greeting}} $WHO; echo err >&2; mkdir sub; "
                                    "echo data > /run/gpuq/out.txt; echo x > sub/y.txt; exit 0")}},
                    {{"WHO", "from-{{run_id}}"}}));
  auto outcome = fixture.Execute(*connector_);
  ASSERT_TRUE(outcome) << outcome.error().message;
  const std::string& id = fixture.run().id;
  std::string log = fixture.Log();
  EXPECT_THAT(log, HasSubstr("hello from-" + id + "\n"));
  EXPECT_THAT(log, HasSubstr("err\n"));
  std::vector<std::string> files = {"runs/" + id + "/out.txt", "runs/" + id + "/sub/y.txt"};
  EXPECT_EQ(outcome.value().files, files);
  const Json& result = outcome.value().result;
  EXPECT_EQ(result["exit_code"], 0);
  EXPECT_EQ(result["image"], kImage);
  EXPECT_EQ(result["container"], "gpuq_job_" + id.substr(0, 8));
  EXPECT_EQ(result["files"], Json(files));
  EXPECT_TRUE(ContainersOf(id).empty()) << "the container is removed afterwards";
}

TEST_F(ContainerEngineTest, ANonZeroExitFailsWithTheCodeAndTheLastLines) {
  RunFixture fixture(Json::object(),
                     ContainerType({{"command", Sh("echo first; echo 'bad thing' >&2; exit 3")}}));
  auto outcome = fixture.Execute(*connector_);
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("exited with code 3"));
  EXPECT_THAT(outcome.error().message, HasSubstr("bad thing"));
  EXPECT_THAT(fixture.Log(), HasSubstr("exited with code 3"));
  EXPECT_TRUE(ContainersOf(fixture.run().id).empty());
}

TEST_F(ContainerEngineTest, KeepLeavesTheContainerBehind) {
  RunFixture fixture(Json::object(), ContainerType({{"command", Sh("exit 0")}, {"keep", true}}));
  auto outcome = fixture.Execute(*connector_);
  ASSERT_TRUE(outcome) << outcome.error().message;
  auto left = ContainersOf(fixture.run().id);
  ASSERT_EQ(left.size(), 1u);
  (void)docker_->Remove(left[0].id, /*force=*/true);
}

TEST_F(ContainerEngineTest, StopKillsAndRemovesWithinTwoSecondsAndLabelsAreSet) {
  RunFixture fixture(Json::object(), ContainerType({{"command", Sh("echo started; sleep 1000")}}));
  const std::string id = fixture.run().id;
  Result<Outcome> outcome = Error{Errc::kInternal, "not run"};
  std::thread worker([&] { outcome = fixture.Execute(*connector_); });

  std::vector<http::ContainerInfo> running;
  bool up = WaitUntil(
      [&] {
        running = ContainersOf(id);
        return !running.empty() && running[0].running &&
               fixture.Log().find("started") != std::string::npos;
      },
      60s, 50ms);
  if (!up) fixture.stop().request_stop();
  ASSERT_TRUE(up) << "the container never ran";
  const auto& labels = running[0].labels;
  EXPECT_EQ(labels.at("gpuq.run"), id);
  EXPECT_EQ(labels.at("gpuq.type"), "job");
  EXPECT_EQ(labels.at("gpuq.attempt"), "1");
  EXPECT_EQ(labels.at("gpuq.managed"), "true");
  // No GPU was named: the engine got no device request.
  Json inspected = RawGet(socket_, "/containers/" + running[0].name + "/json");
  ASSERT_TRUE(inspected.is_object());
  const Json& requests = inspected["HostConfig"]["DeviceRequests"];
  EXPECT_TRUE(requests.is_null() || requests.empty()) << requests.dump();
  EXPECT_EQ(inspected["HostConfig"]["NetworkMode"], "none");

  auto asked = std::chrono::steady_clock::now();
  fixture.stop().request_stop();
  worker.join();
  auto took = std::chrono::steady_clock::now() - asked;
  EXPECT_LT(took, 2s);
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_THAT(outcome.error().message, HasSubstr("stopped"));
  EXPECT_TRUE(ContainersOf(id).empty());
}

TEST_F(ContainerEngineTest, ATimeoutKillsAndRemoves) {
  RunFixture fixture(Json::object(), ContainerType({{"command", Sh("sleep 1000")}}));
  gpuq::Run run = fixture.run();
  run.timeout_s = 2;
  RunContext base = fixture.Context();
  RunContext ctx{.run = run,
                 .task_type = base.task_type,
                 .data_dir = base.data_dir,
                 .run_dir = base.run_dir,
                 .log_file = base.log_file,
                 .stop = base.stop,
                 .report_progress = base.report_progress};
  auto began = std::chrono::steady_clock::now();
  auto outcome = connector_->Execute(ctx);
  auto took = std::chrono::steady_clock::now() - began;
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kTimeout);
  EXPECT_THAT(outcome.error().message, HasSubstr("timeout of 2 s"));
  EXPECT_GE(took, 2s);
  EXPECT_LT(took, 20s);
  EXPECT_TRUE(ContainersOf(run.id).empty());
}

TEST_F(ContainerEngineTest, AMissingImageFailsClearlyWithoutPull) {
  RunFixture fixture(Json::object(), ContainerType({{"image", "gpuq-no-such-image:latest"}}));
  auto outcome = fixture.Execute(*connector_);
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message,
              HasSubstr("image gpuq-no-such-image:latest not found: pull it or set pull = true"));
}

TEST_F(ContainerEngineTest, AFailedPullIsUnavailable) {
  // No registry listens on localhost:1: the pull fails at once, in the status or the stream.
  RunFixture fixture(Json::object(),
                     ContainerType({{"image", "localhost:1/gpuq-no-such:1.0"}, {"pull", true}}));
  auto outcome = fixture.Execute(*connector_);
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_THAT(outcome.error().message, HasSubstr("pull image localhost:1/gpuq-no-such:1.0"));
  EXPECT_TRUE(ContainersOf(fixture.run().id).empty());
}

TEST_F(ContainerEngineTest, ALeftoverContainerOfAnEarlierAttemptIsReplaced) {
  RunFixture fixture(Json::object(), ContainerType({{"command", Sh("echo second attempt")}}));
  const std::string id = fixture.run().id;
  http::ContainerSpec leftover{.name = ContainerName("gpuq", "job", id),
                               .image = kImage,
                               .cmd = {"sleep", "1000"},
                               .labels = {{"gpuq.run", id}, {"gpuq.attempt", "0"}},
                               .network_mode = "none"};
  auto created = docker_->Create(leftover);
  ASSERT_TRUE(created) << created.error().message;
  ASSERT_TRUE(docker_->Start(leftover.name));
  auto outcome = fixture.Execute(*connector_);
  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_THAT(fixture.Log(), HasSubstr("second attempt"));
  EXPECT_TRUE(ContainersOf(id).empty());
}

TEST(ContainerConnectorTest, AnEngineThatIsDownIsUnavailable) {
  ConnectorOptions options;
  options.docker_socket = "/tmp/gpuq-no-such-engine-here.sock";
  ContainerConnector connector(options);
  RunFixture fixture(Json::object(), ContainerType({{"command", Sh("true")}}));
  auto outcome = fixture.Execute(connector);
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_THAT(outcome.error().message, HasSubstr("gpuq-no-such-engine-here.sock"));
}

// --- pure: settings, payloads, names and the create body ---

std::vector<std::string> ProblemKeys(const TaskType& type) {
  ContainerConnector connector(ConnectorOptions{});
  std::vector<std::string> keys;
  for (const auto& problem : connector.CheckSettings(type)) keys.push_back(problem.key);
  return keys;
}

TEST(ContainerConnectorTest, CheckSettingsNamesEachBadKey) {
  using V = std::vector<std::string>;
  EXPECT_EQ(ProblemKeys(ContainerType({{"command", Sh("true")}})), V{});
  TaskType no_image = MakeType("job", "container");
  EXPECT_EQ(ProblemKeys(no_image), V{"image"});
  no_image.settings = {{"allow_image_override", true}};
  EXPECT_EQ(ProblemKeys(no_image), V{});
  EXPECT_EQ(ProblemKeys(ContainerType({{"imagee", "x"}})), V{"imagee"});
  EXPECT_EQ(ProblemKeys(ContainerType({{"command", "sh -c true"}})), V{"command"});
  EXPECT_EQ(ProblemKeys(ContainerType({{"command", Json::array({"{{oops"})}})), V{"command"});
  EXPECT_EQ(ProblemKeys(ContainerType({{"pull", "yes"}})), V{"pull"});
  EXPECT_EQ(ProblemKeys(ContainerType({{"mounts", Json::array({"relative:/x"})}})), V{"mounts"});
  EXPECT_EQ(ProblemKeys(ContainerType({{"mounts", Json::array({"/a:/b:rx"})}})), V{"mounts"});
  EXPECT_EQ(ProblemKeys(ContainerType({{"mounts", Json::array({"/a:/b:ro", "/c:/d"})}})), V{});
  EXPECT_EQ(ProblemKeys(ContainerType({{"shm_size_mb", 0}})), V{"shm_size_mb"});
  EXPECT_EQ(ProblemKeys(ContainerType({{"name_prefix", "-x"}})), V{"name_prefix"});
  EXPECT_EQ(ProblemKeys(ContainerType({{"workdir", "rel"}})), V{"workdir"});
}

TEST(ContainerConnectorTest, ValidateChecksThePayloadAgainstTheType) {
  ContainerConnector connector(ConnectorOptions{});
  TaskType fixed = ContainerType({{"command", Json::array({"echo", "{{text}}"})}});
  EXPECT_TRUE(connector.Validate(fixed, Json{{"text", "hi"}}));
  auto missing = connector.Validate(fixed, Json::object());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(missing.error().message, HasSubstr("text"));
  EXPECT_FALSE(connector.Validate(fixed, Json::array()));
  auto image = connector.Validate(fixed, Json{{"text", "hi"}, {"image", "other"}});
  ASSERT_FALSE(image);
  EXPECT_THAT(image.error().message, HasSubstr("allow_image_override"));
  auto command = connector.Validate(fixed, Json{{"text", "hi"}, {"command", {"ls"}}});
  ASSERT_FALSE(command);
  EXPECT_THAT(command.error().message, HasSubstr("allow_command_override"));
  EXPECT_FALSE(connector.Validate(fixed, Json{{"text", "hi"}, {"env", {{"A", 1}}}}));
  EXPECT_TRUE(connector.Validate(fixed, Json{{"text", "hi"}, {"env", {{"A", "1"}}}}));

  TaskType open = MakeType("any", "container");
  open.settings = {{"allow_image_override", true}, {"allow_command_override", true}};
  EXPECT_TRUE(connector.Validate(open, Json{{"image", "busybox"}, {"command", {"ls", "-l"}}}));
  auto no_image = connector.Validate(open, Json::object());
  ASSERT_FALSE(no_image);
  EXPECT_THAT(no_image.error().message, HasSubstr("payload.image is required"));
  EXPECT_FALSE(connector.Validate(open, Json{{"image", "busybox"}, {"command", "ls"}}));
  EXPECT_FALSE(connector.Validate(open, Json{{"image", "busybox"}, {"command", Json::array()}}));
  EXPECT_FALSE(connector.Validate(open, Json{{"image", 3}}));
}

TEST(ContainerConnectorTest, NamesAreSanitised) {
  EXPECT_EQ(ContainerName("gpuq", "job", "0123456789abcdef"), "gpuq_job_01234567");
  EXPECT_EQ(ContainerName("gpuq", "my type/x", "ab:cd"), "gpuq_my_type_x_ab_cd");
}

TEST(ContainerConnectorTest, TheCreateBodyAsksForTheGpuOnlyWhenOneIsNamed) {
  TaskType type = ContainerType({{"command", Json::array({"run", "{{n}}", "{{run_dir}}"})},
                                 {"mounts", Json::array({"/models:/models:ro"})},
                                 {"shm_size_mb", 64}},
                                {{"N", "{{n}}"}});
  std::vector<SettingProblem> problems;
  auto settings = ParseContainerSettings(type, &problems);
  ASSERT_TRUE(settings) << settings.error().message;
  ContainerRun run{.run_id = "abcdef0123456789",
                   .attempt = 2,
                   .run_dir = "/data/runs/abcdef0123456789",
                   .data_dir = "/data"};
  Json payload = {{"n", 7}, {"env", {{"EXTRA", "yes"}, {"N", "payload loses"}}}};

  auto spec = BuildContainerSpec(type, settings.value(), payload, run);
  ASSERT_TRUE(spec) << spec.error().message;
  Json body = Json::parse(http::ContainerCreateBody(spec.value()));
  EXPECT_EQ(spec.value().name, "gpuq_job_abcdef01");
  EXPECT_EQ(body["Image"], kImage);
  EXPECT_EQ(body["Cmd"], Json::array({"run", "7", "/run/gpuq"}));
  EXPECT_EQ(body["WorkingDir"], "/run/gpuq");
  EXPECT_THAT(body["Env"].get<std::vector<std::string>>(),
              ::testing::UnorderedElementsAre("N=7", "EXTRA=yes", "GPUQ_RUN_ID=abcdef0123456789",
                                              "GPUQ_RUN_DIR=/run/gpuq", "GPUQ_ATTEMPT=2"));
  EXPECT_EQ(body["Labels"], (Json{{"gpuq.run", "abcdef0123456789"},
                                  {"gpuq.type", "job"},
                                  {"gpuq.attempt", "2"},
                                  {"gpuq.managed", "true"}}));
  const Json& host = body["HostConfig"];
  EXPECT_EQ(host["Binds"],
            Json::array({"/data/runs/abcdef0123456789:/run/gpuq:rw", "/models:/models:ro"}));
  EXPECT_EQ(host["NetworkMode"], "none");
  EXPECT_EQ(host["ShmSize"], 64 * 1024 * 1024);
  EXPECT_FALSE(host.contains("DeviceRequests"));

  run.gpu_uuid = "GPU-8a3f0000-1111-2222-3333-444455556666";
  spec = BuildContainerSpec(type, settings.value(), payload, run);
  ASSERT_TRUE(spec);
  body = Json::parse(http::ContainerCreateBody(spec.value()));
  ASSERT_EQ(body["HostConfig"]["DeviceRequests"].size(), 1u);
  const Json& request = body["HostConfig"]["DeviceRequests"][0];
  EXPECT_EQ(request["Driver"], "nvidia");
  EXPECT_EQ(request["DeviceIDs"], Json::array({run.gpu_uuid}));
  EXPECT_EQ(request["Capabilities"], Json::parse(R"([["gpu"]])"));
  EXPECT_FALSE(request.contains("Count")) << "Count and DeviceIDs are mutually exclusive";
}

}  // namespace
}  // namespace gpuq::connectors
