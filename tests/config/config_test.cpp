#include "config/config.hpp"

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/builtin_connectors.hpp"
#include "support/temp_dir.hpp"

namespace gpuq::config {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::Field;
using ::testing::HasSubstr;

const std::vector<std::string> kConnectors = {"echo", "command", "http"};

std::filesystem::path Write(const gpuq::testing::TempDir& dir, const std::string& text) {
  auto path = dir / "gpuq.toml";
  std::ofstream(path) << text;
  return path;
}

auto ProblemAt(const std::string& field, const std::string& text) {
  return AllOf(Field(&Problem::field, field), Field(&Problem::message, HasSubstr(text)));
}

TEST(Config, DefaultsHaveEchoAndCommandOnLoopback) {
  Config c = Defaults();

  EXPECT_EQ(c.server.host, "127.0.0.1");
  EXPECT_EQ(c.server.port, 8000);
  EXPECT_EQ(c.server.max_body_bytes, 16u << 20);
  EXPECT_TRUE(c.task_types.count("echo"));
  EXPECT_TRUE(c.task_types.count("command"));
}

TEST(Config, ReadsEverySectionAndMakesPathsRelativeToTheFile) {
  gpuq::testing::TempDir dir;
  auto file = Write(dir, R"(
data_dir = "data"
[server]
listen = "127.0.0.1:9100"
token = "s3cret"
max_body_mb = 2
[store]
url = "sqlite://db/q.db"
retention_days = 7
[agent]
id = "host-a"
cpu_workers = 3
lease_ttl_s = 20
heartbeat_s = 4
poll_ms = 50
[task_types.hello]
connector = "command"
argv = ["scripts/hi.sh", "{{name}}"]
env = { GREETING = "hi {{name}}" }
timeout_s = 5
max_attempts = 1
)");
  std::vector<Problem> problems;

  auto c = LoadFile(file, &problems);

  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c.value().data_dir, dir.path() / "data");
  EXPECT_EQ(c.value().server.port, 9100);
  EXPECT_EQ(c.value().server.token, "s3cret");
  EXPECT_EQ(c.value().server.max_body_bytes, 2u << 20);
  EXPECT_EQ(c.value().store.url, "sqlite://" + (dir.path() / "db/q.db").string());
  EXPECT_EQ(c.value().store.retention_days, 7);
  EXPECT_EQ(c.value().agent.lease_ttl, std::chrono::seconds(20));
  EXPECT_EQ(c.value().agent.poll, std::chrono::milliseconds(50));
  const auto& hello = c.value().task_types.at("hello");
  EXPECT_EQ(hello.argv.at(0), (dir.path() / "scripts/hi.sh").string());
  EXPECT_EQ(hello.env.at("GREETING"), "hi {{name}}");
  EXPECT_EQ(hello.timeout_s, 5);
}

TEST(Config, ReportsEveryProblemAtOnceNamingTheField) {
  gpuq::testing::TempDir dir;
  auto file = Write(dir, R"(
colour = "blue"
[server]
listen = "nonsense"
max_body_mb = "big"
[agent]
cpu_workers = 0
[task_types.a]
connector = "command"
argv = "not-an-array"
timeout = 5
)");
  std::vector<Problem> problems;

  auto c = LoadFile(file, &problems);

  ASSERT_FALSE(c);
  EXPECT_THAT(problems, Contains(ProblemAt("colour", "unknown setting")));
  EXPECT_THAT(problems, Contains(ProblemAt("server.listen", "HOST:PORT")));
  EXPECT_THAT(problems, Contains(ProblemAt("server.max_body_mb", "integer")));
  EXPECT_THAT(problems, Contains(ProblemAt("agent.cpu_workers", "between")));
  EXPECT_THAT(problems, Contains(ProblemAt("task_types.a.argv", "array of strings")));
  EXPECT_THAT(c.error().message, HasSubstr("task_types.a.argv"));
}

TEST(Config, ConnectorSettingsAreCheckedByTheConnectorAtFinalize) {
  gpuq::testing::TempDir dir;
  auto file = Write(dir, R"(
[task_types.a]
connector = "command"
argv = ["true"]
timeout = 5
[task_types.b]
connector = "echo"
templates_dir = "flows"
sample_rate = 24000
)");
  std::vector<Problem> problems;
  auto c = LoadFile(file, &problems);
  ASSERT_TRUE(c) << Describe(problems);
  EXPECT_EQ(c.value().task_types.at("b").settings.at("sample_rate"), 24000);
  // A key ending in _dir is a path, relative to the config file's folder.
  EXPECT_EQ(c.value().task_types.at("b").settings.at("templates_dir"),
            (dir.path() / "flows").lexically_normal().string());

  // Without a connector's check every setting is unknown.
  Config unchecked = c.value();
  Finalize(unchecked, kConnectors, &problems);
  EXPECT_THAT(problems, Contains(ProblemAt("task_types.a.timeout", "unknown setting")));

  // With one, its problems are named under the task type.
  problems.clear();
  Finalize(c.value(), kConnectors, &problems, [](const gpuq::TaskType& type) {
    std::vector<Problem> found;
    if (type.settings.contains("sample_rate")) found.push_back({"sample_rate", "too high"});
    return found;
  });
  EXPECT_THAT(problems, Contains(ProblemAt("task_types.b.sample_rate", "too high")));
  EXPECT_EQ(problems.size(), 1u);
}

TEST(Config, FinalizeRejectsUnknownConnectorsAndCommandsWithoutArgv) {
  Config c = Defaults();
  c.task_types["x"] = TaskType{.name = "x", .connector = "teleport"};
  c.task_types["y"] = TaskType{.name = "y", .connector = "command"};
  std::vector<Problem> problems;

  Finalize(c, kConnectors, &problems);

  EXPECT_THAT(problems, Contains(ProblemAt("task_types.x.connector", "unknown connector 'teleport'")));
  EXPECT_THAT(problems, Contains(ProblemAt("task_types.y.argv", "non-empty argv")));
}

TEST(Config, FinalizeMakesDataDirAbsoluteAndDefaultsTheStoreIntoIt) {
  Config c = Defaults();
  c.data_dir = "rel-data";
  std::vector<Problem> problems;

  Finalize(c, kConnectors, &problems);

  EXPECT_TRUE(problems.empty());
  EXPECT_TRUE(c.data_dir.is_absolute());
  EXPECT_EQ(c.store.url, "sqlite://" + (c.data_dir / "gpuq.db").string());
}

TEST(Config, SyntaxErrorNamesLineAndColumn) {
  gpuq::testing::TempDir dir;
  auto file = Write(dir, "[server\nlisten = 1\n");
  std::vector<Problem> problems;

  auto c = LoadFile(file, &problems);

  ASSERT_FALSE(c);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0].field, HasSubstr(":1:"));
}

TEST(Config, MissingFileIsAProblem) {
  std::vector<Problem> problems;

  auto c = LoadFile("/nonexistent/gpuq.toml", &problems);

  ASSERT_FALSE(c);
  EXPECT_THAT(problems, Contains(ProblemAt("/nonexistent/gpuq.toml", "no such config file")));
}

const char* FakeEnv(const char* name) {
  std::string n(name);
  if (n == "GPUQ_TOKEN") return "from-env";
  if (n == "REDIS_HOST") return "redis.local";
  if (n == "GPUQ_LISTEN") return "0.0.0.0:7000";
  if (n == "ASSET_PATH") return "/srv/assets";
  if (n == "DOCKER_HOST") return "unix:///run/user/1000/docker.sock";
  return nullptr;
}

TEST(Config, EnvironmentOverridesTheFile) {
  Config c = Defaults();
  std::vector<Problem> problems;

  ApplyEnvironment(c, &problems, [](const char* n) { return const_cast<char*>(FakeEnv(n)); });

  EXPECT_TRUE(problems.empty());
  EXPECT_EQ(c.server.token, "from-env");
  EXPECT_EQ(c.store.url, "redis://redis.local:6379/0");
  EXPECT_EQ(c.server.host, "0.0.0.0");
  EXPECT_EQ(c.server.port, 7000);
  EXPECT_EQ(c.asset_path, "/srv/assets");
  EXPECT_EQ(c.gpu.docker_socket, "/run/user/1000/docker.sock");
}

const char* NotesUrls(const char* name) {
  std::string n(name);
  if (n == "COMFYUI_URL") return "http://comfy.lan:8188/";
  if (n == "COSYVOICE_URL") return "http://127.0.0.1:50000";
  return nullptr;
}

TEST(Config, ComfyUiAndCosyVoiceUrlsMakeExternalServicesWithTheirTaskTypes) {
  Config c = Defaults();
  // A file's process service of the same name is replaced: the environment wins.
  c.services["comfyui"].kind = ServiceKind::kProcess;
  c.services["comfyui"].argv = {"/opt/comfy/main.py"};
  c.services["comfyui"].priority = 70;
  std::vector<Problem> problems;

  ApplyEnvironment(c, &problems, [](const char* n) { return const_cast<char*>(NotesUrls(n)); });

  EXPECT_TRUE(problems.empty()) << Describe(problems);
  const auto& comfy = c.services.at("comfyui");
  EXPECT_EQ(comfy.kind, ServiceKind::kExternal);
  EXPECT_EQ(comfy.url, "http://comfy.lan:8188");
  EXPECT_EQ(comfy.health_url, "http://comfy.lan:8188/system_stats");
  EXPECT_TRUE(comfy.argv.empty());
  EXPECT_EQ(comfy.priority, 70);
  EXPECT_EQ(c.services.at("cosyvoice").health_url, "http://127.0.0.1:50000/docs");
  EXPECT_EQ(c.task_types.at("comfyui").connector, "comfyui");
  EXPECT_EQ(c.task_types.at("comfyui").service, "comfyui");
  EXPECT_EQ(c.task_types.at("cosyvoice").connector, "cosyvoice");
  EXPECT_EQ(c.task_types.at("cosyvoice").service, "cosyvoice");

  Finalize(c, {"echo", "command", "comfyui", "cosyvoice"}, &problems);
  EXPECT_TRUE(problems.empty()) << Describe(problems);
}

TEST(Config, AServiceUrlThatIsNotHttpIsAProblem) {
  Config c = Defaults();
  std::vector<Problem> problems;
  ApplyEnvironment(c, &problems, [](const char* n) {
    return std::string(n) == "COMFYUI_URL" ? const_cast<char*>("comfy:8188") : nullptr;
  });
  EXPECT_THAT(problems, Contains(ProblemAt("COMFYUI_URL", "http://")));
  EXPECT_FALSE(c.services.contains("comfyui"));
}

TEST(Config, ParseListenAcceptsHostPortAndIpv6) {
  EXPECT_EQ(ParseListen("127.0.0.1:80").value(), (std::pair<std::string, int>{"127.0.0.1", 80}));
  EXPECT_EQ(ParseListen("[::1]:8000").value(), (std::pair<std::string, int>{"::1", 8000}));
  EXPECT_FALSE(ParseListen("8000"));
  EXPECT_FALSE(ParseListen("host:"));
  EXPECT_FALSE(ParseListen("host:99999"));
  EXPECT_FALSE(ParseListen("host:8x"));
}

TEST(Config, DemoConfigIsValid) {
  std::vector<Problem> problems;

  auto c = LoadFile(std::filesystem::path(GPUQ_SOURCE_DIR) / "examples/demo.toml", &problems);
  ASSERT_TRUE(c) << c.error().message;
  FinalizeWithBuiltins(c.value(), &problems);

  EXPECT_TRUE(problems.empty()) << Describe(problems);
}

}  // namespace
}  // namespace gpuq::config
