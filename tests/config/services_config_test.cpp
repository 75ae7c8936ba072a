// [gpu], [phases], [services] and task types' `service`: reading and checking.
#include <csignal>
#include <fstream>
#include <map>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "config/builtin_connectors.hpp"
#include "support/temp_dir.hpp"

namespace gpuq::config {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;

const std::vector<std::string> kConnectors = {"echo", "command", "http"};

auto ProblemAt(const std::string& field, const std::string& text) {
  return AllOf(Field(&Problem::field, field), Field(&Problem::message, HasSubstr(text)));
}

// Reads `text` as a config file and finalizes it, as `gpuq check-config` does.
struct Checked {
  std::optional<Config> config;
  std::vector<Problem> problems;
};
Checked Check(const gpuq::testing::TempDir& dir, const std::string& text) {
  auto path = dir / "gpuq.toml";
  std::ofstream(path) << text;
  Checked out;
  out.config = ReadFile(path, &out.problems);
  if (out.config) Finalize(*out.config, kConnectors, &out.problems);
  return out;
}

// A process service with everything it needs; cases below add or override one thing.
constexpr const char* kProcess = R"(
[services.s]
argv = ["/bin/true"]
health_url = "http://127.0.0.1:9/health"
vram_mb = 100
)";

TEST(ServicesConfig, DefaultsHaveTheNotesPhasesAndNoServices) {
  Config c = Defaults();

  EXPECT_THAT(c.phases,
              ElementsAre(std::pair{1, std::string("crawl")}, std::pair{2, std::string("analysis")},
                          std::pair{3, std::string("tts")}, std::pair{4, std::string("video")},
                          std::pair{5, std::string("render")}));
  EXPECT_TRUE(c.services.empty());
  EXPECT_EQ(c.gpu.vram_backend, "auto");
}

TEST(ServicesConfig, ASlotNeedsOnlyItsMemory) {
  gpuq::testing::TempDir dir;

  auto checked = Check(dir, "[services.gpu_job]\nkind = \"slot\"\nvram_mb = 8000\n");

  EXPECT_THAT(checked.problems, IsEmpty()) << Describe(checked.problems);
  EXPECT_EQ(checked.config->services.at("gpu_job").kind, ServiceKind::kSlot);
}

TEST(ServicesConfig, AMinimalProcessServiceHasNoProblems) {
  gpuq::testing::TempDir dir;

  auto checked = Check(dir, kProcess);

  EXPECT_THAT(checked.problems, IsEmpty()) << Describe(checked.problems);
}

TEST(ServicesConfig, ReadsEveryKeyOfGpuPhasesAndServices) {
  gpuq::testing::TempDir dir;

  auto checked = Check(dir, R"(
[gpu]
backend = "sim"
reserve_mb = 1024
gpus = [0, 1]
host = "box-a"
lock_ttl_s = 20
aging_s = 15
memory_wait_s = 40
health_interval_ms = 100
docker_socket = "/run/podman/podman.sock"
nvml_library = "fake/libnvidia-ml.so.1"
nvidia_smi = "/usr/bin/nvidia-smi"
fake_services_die_with_agent = true
[[gpu.sim]]
name = "a"
total_mb = 24576
[[gpu.sim]]
index = 1
name = "b"
total_mb = 16384

[phases]
1 = "ingest"
7 = "mix"

[services.comfy]
kind = "process"
vram_mb = 20000
priority = -5
health_url = "http://127.0.0.1:{{port}}/system_stats"
health_timeout_s = 120
warm_time_s = 30
phases = [7]
argv = ["bin/comfy.sh", "--port", "{{port}}", "--gpu", "{{gpu}}"]
stop_signal = "SIGINT"
stop_argv = ["./stop.sh", "{{name}}"]
pid_file = "run/{{name}}-{{gpu}}.pid"
evict_api = "http://127.0.0.1:{{port}}/free"
evict_body = { unload_models = true, free_memory = 1 }
gpus = [1]
base_port = 8188
env = { HOME_DIR = "/srv/{{name}}", HOST = "{{host}}" }
idle_ttl_s = 600
stop_timeout_s = 5
max_concurrency = 2

[services.tts]
kind = "docker"
container = "tts_{{gpu}}"
vram_mb = 4000
health_url = "http://127.0.0.1:{{port}}/docs"
base_port = 50000
gpus = "any"
evict_body = '{"a": [1, 2]}'
evict_api = "http://127.0.0.1:{{port}}/evict"

[services.remote]
kind = "external"
url = "http://gpu-box:11434"
max_concurrency = 4

[services.kill]
argv = ["/bin/sleep", "1000"]
health_url = "http://127.0.0.1:9/"
vram_mb = 1
stop_signal = 9

[task_types.draw]
connector = "http"
service = "comfy"
endpoint = "/prompt"
)");

  ASSERT_THAT(checked.problems, IsEmpty()) << Describe(checked.problems);
  const Config& c = *checked.config;
  EXPECT_EQ(c.gpu.vram_backend, "sim");
  EXPECT_EQ(c.gpu.reserve_mb, 1024);
  EXPECT_THAT(c.gpu.gpus, ElementsAre(0, 1));
  EXPECT_EQ(c.gpu.host, "box-a");
  EXPECT_EQ(c.gpu.lock_ttl, std::chrono::seconds(20));
  EXPECT_EQ(c.gpu.aging_step, std::chrono::seconds(15));
  EXPECT_EQ(c.gpu.memory_wait, std::chrono::seconds(40));
  EXPECT_EQ(c.gpu.health_interval, std::chrono::milliseconds(100));
  EXPECT_EQ(c.gpu.docker_socket, "/run/podman/podman.sock");
  EXPECT_EQ(c.gpu.nvml_library, (dir.path() / "fake/libnvidia-ml.so.1").string());
  EXPECT_EQ(c.gpu.nvidia_smi, "/usr/bin/nvidia-smi");
  EXPECT_TRUE(c.gpu.fake_services_die_with_agent);
  ASSERT_EQ(c.gpu.sim.size(), 2u);
  EXPECT_EQ(c.gpu.sim[0].index, 0);  // its position
  EXPECT_EQ(c.gpu.sim[0].name, "a");
  EXPECT_EQ(c.gpu.sim[0].total_mb, 24576);
  EXPECT_EQ(c.gpu.sim[1].index, 1);
  EXPECT_EQ(c.gpu.sim[1].total_mb, 16384);
  EXPECT_THAT(c.phases,
              ElementsAre(std::pair{1, std::string("ingest")}, std::pair{7, std::string("mix")}));

  const ServiceSpec& comfy = c.services.at("comfy");
  EXPECT_EQ(comfy.name, "comfy");
  EXPECT_EQ(comfy.kind, ServiceKind::kProcess);
  EXPECT_EQ(comfy.vram_mb, 20000);
  EXPECT_EQ(comfy.priority, -5);
  EXPECT_EQ(comfy.health_url, "http://127.0.0.1:{{port}}/system_stats");
  EXPECT_EQ(comfy.health_timeout, std::chrono::seconds(120));
  EXPECT_EQ(comfy.warm_time, std::chrono::seconds(30));
  EXPECT_THAT(comfy.phases, ElementsAre(7));
  EXPECT_THAT(comfy.argv, ElementsAre((dir.path() / "bin/comfy.sh").string(), "--port", "{{port}}",
                                      "--gpu", "{{gpu}}"));
  EXPECT_EQ(comfy.stop_signal, SIGINT);
  EXPECT_THAT(comfy.stop_argv, ElementsAre((dir.path() / "stop.sh").string(), "{{name}}"));
  EXPECT_EQ(comfy.pid_file, (dir.path() / "run/{{name}}-{{gpu}}.pid").string());
  EXPECT_EQ(comfy.evict_api, "http://127.0.0.1:{{port}}/free");
  EXPECT_EQ(nlohmann::json::parse(comfy.evict_body),
            (nlohmann::json{{"unload_models", true}, {"free_memory", 1}}));
  EXPECT_THAT(comfy.gpus, Optional(ElementsAre(1)));
  EXPECT_EQ(comfy.base_port, 8188);
  EXPECT_EQ(comfy.env.at("HOME_DIR"), "/srv/{{name}}");
  EXPECT_EQ(comfy.env.at("HOST"), "{{host}}");
  EXPECT_EQ(comfy.idle_ttl, std::chrono::seconds(600));
  EXPECT_EQ(comfy.stop_timeout, std::chrono::seconds(5));
  EXPECT_EQ(comfy.max_concurrency, 2);

  const ServiceSpec& tts = c.services.at("tts");
  EXPECT_EQ(tts.kind, ServiceKind::kDocker);
  EXPECT_EQ(tts.container, "tts_{{gpu}}");
  EXPECT_EQ(tts.gpus, std::nullopt);
  EXPECT_EQ(tts.priority, 50);  // ServiceSpec's defaults for what is not given
  EXPECT_EQ(tts.health_timeout, std::chrono::seconds(60));
  EXPECT_EQ(tts.warm_time, std::chrono::seconds(10));
  EXPECT_EQ(tts.stop_signal, SIGTERM);
  EXPECT_EQ(tts.idle_ttl, Millis(0));
  EXPECT_EQ(tts.max_concurrency, 1);
  EXPECT_EQ(nlohmann::json::parse(tts.evict_body), (nlohmann::json{{"a", {1, 2}}}));

  const ServiceSpec& remote = c.services.at("remote");
  EXPECT_EQ(remote.kind, ServiceKind::kExternal);
  EXPECT_EQ(remote.url, "http://gpu-box:11434");
  EXPECT_EQ(remote.health_url, "http://gpu-box:11434");  // defaults to url
  EXPECT_EQ(remote.vram_mb, 0);
  EXPECT_EQ(remote.max_concurrency, 4);

  EXPECT_EQ(c.services.at("kill").stop_signal, SIGKILL);
  EXPECT_EQ(c.task_types.at("draw").service, "comfy");
  EXPECT_EQ(c.task_types.at("draw").endpoint, "/prompt");
}

TEST(ServicesConfig, TaskTypeEndpointDefaultsToRoot) {
  gpuq::testing::TempDir dir;

  auto checked = Check(dir, std::string(kProcess) + R"(
[task_types.t]
connector = "http"
service = "s"
)");

  ASSERT_THAT(checked.problems, IsEmpty()) << Describe(checked.problems);
  EXPECT_EQ(checked.config->task_types.at("t").endpoint, "/");
}

struct RuleCase {
  const char* rule;
  std::string toml;
  std::string field;
  std::string message;
};

std::string WithProcess(const std::string& extra) { return std::string(kProcess) + extra; }

// One case per rule: the config breaks exactly that rule, and the problem names the field.
std::vector<RuleCase> RuleCases() {
  const std::string external = "[services.e]\nkind = \"external\"\n";
  const std::string managed = "[services.p]\nhealth_url = \"http://h/\"\nvram_mb = 1\n";
  const std::string docker =
      "[services.d]\nkind = \"docker\"\nvram_mb = 10\nhealth_url = \"http://h/\"\n";
  return {
      {"unknown gpu key", "[gpu]\ncolour = 1\n", "gpu.colour", "unknown setting"},
      {"backend word", "[gpu]\nbackend = \"cuda\"\n", "gpu.backend", "auto, nvml, nvidia-smi"},
      {"reserve_mb >= 0", "[gpu]\nreserve_mb = -1\n", "gpu.reserve_mb", "between 0"},
      {"owned gpus are indexes", "[gpu]\ngpus = [-1]\n", "gpu.gpus", "between 0"},
      {"owned gpus once each", "[gpu]\ngpus = [1, 1]\n", "gpu.gpus", "GPU 1 twice"},
      {"durations are numbers", "[gpu]\nlock_ttl_s = \"10s\"\n", "gpu.lock_ttl_s", "integer"},
      {"aging_s positive", "[gpu]\naging_s = 0\n", "gpu.aging_s", "between 1"},
      {"flag is a bool", "[gpu]\nfake_services_die_with_agent = 1\n",
       "gpu.fake_services_die_with_agent", "true or false"},
      {"sim needs a gpu", "[gpu]\nbackend = \"sim\"\n", "gpu.sim", "at least one [[gpu.sim]]"},
      {"sim only with backend sim", "[gpu]\nbackend = \"nvml\"\n[[gpu.sim]]\ntotal_mb = 100\n",
       "gpu.sim", "only for backend \"sim\""},
      {"sim indexes unique",
       "[gpu]\nbackend = \"sim\"\n[[gpu.sim]]\nindex = 1\n[[gpu.sim]]\nindex = 1\n",
       "gpu.sim[1].index", "GPU 1 is declared twice"},
      {"sim total_mb positive", "[gpu]\nbackend = \"sim\"\n[[gpu.sim]]\ntotal_mb = 0\n",
       "gpu.sim[0].total_mb", "between 1"},
      {"sim unknown key", "[gpu]\nbackend = \"sim\"\n[[gpu.sim]]\nvram = 1\n", "gpu.sim[0].vram",
       "unknown setting"},
      {"owned gpus exist on sim", "[gpu]\nbackend = \"sim\"\ngpus = [3]\n[[gpu.sim]]\n", "gpu.gpus",
       "GPU 3 is not a [[gpu.sim]] index"},
      {"none runs no managed service", WithProcess("[gpu]\nbackend = \"none\"\n"), "gpu.backend",
       "cannot run process or docker services (s)"},
      {"phase key is a number", "[phases]\nfirst = \"crawl\"\n", "phases.first", "a number"},
      {"phase name is a string", "[phases]\n1 = 1\n", "phases.1", "non-empty string"},
      {"unknown service key", WithProcess("colour = 1\n"), "services.s.colour", "unknown setting"},
      {"kind word", WithProcess("kind = \"native\"\n"), "services.s.kind", "'native' is 'process'"},
      {"process needs argv", "[services.p]\nhealth_url = \"http://h/\"\nvram_mb = 1\n",
       "services.p.argv", "non-empty argv"},
      {"process needs health_url", "[services.p]\nargv = [\"/x\"]\nvram_mb = 1\n",
       "services.p.health_url", "needs a health_url"},
      {"process needs vram", "[services.p]\nargv = [\"/x\"]\nhealth_url = \"http://h/\"\n",
       "services.p.vram_mb", "must be a positive integer"},
      {"vram_mb is an integer",
       "[services.p]\nargv = [\"/x\"]\nhealth_url = \"http://h/\"\nvram_mb = 1.5\n",
       "services.p.vram_mb", "integer"},
      {"docker needs container", docker, "services.d.container", "container name"},
      {"docker needs health_url",
       "[services.d]\nkind = \"docker\"\ncontainer = \"c\"\nvram_mb = 1\n", "services.d.health_url",
       "needs a health_url"},
      {"docker takes no argv", docker + "container = \"c\"\nargv = [\"/x\"]\n", "services.d.argv",
       "only for kind process"},
      {"external needs url", external, "services.e.url", "needs its url"},
      {"external takes no argv", external + "url = \"http://h/\"\nargv = [\"/x\"]\n",
       "services.e.argv", "only for kind process"},
      {"external takes no container", external + "url = \"http://h/\"\ncontainer = \"c\"\n",
       "services.e.container", "only for kind docker"},
      {"urls are http", external + "url = \"gpu-box:80\"\n", "services.e.url", "http://"},
      {"slot needs vram", "[services.g]\nkind = \"slot\"\n", "services.g.vram_mb", "positive"},
      {"slot has no health_url", "[services.g]\nkind = \"slot\"\nvram_mb = 8\nhealth_url = \"http://h/\"\n",
       "services.g.health_url", "runs nothing"},
      {"slot takes no argv", "[services.g]\nkind = \"slot\"\nvram_mb = 8\nargv = [\"/x\"]\n",
       "services.g.argv", "only for kind process"},
      {"base_port in range", WithProcess("base_port = 70000\n"), "services.s.base_port",
       "between 1 and 65535"},
      {"base_port + gpu in range", WithProcess("base_port = 65535\ngpus = [1]\n"),
       "services.s.base_port", "above port 65535"},
      {"base_port + owned gpu in range", WithProcess("base_port = 65535\n[gpu]\ngpus = [0, 2]\n"),
       "services.s.base_port", "GPU index 2"},
      {"gpus entries >= 0", WithProcess("gpus = [-1]\n"), "services.s.gpus", "between 0"},
      {"gpus within owned", WithProcess("gpus = [2]\n[gpu]\ngpus = [0, 1]\n"), "services.s.gpus",
       "GPU 2 is not one of this agent's GPUs"},
      {"gpus word is any", WithProcess("gpus = \"all\"\n"), "services.s.gpus", "\"any\""},
      {"gpus not empty", WithProcess("gpus = []\n"), "services.s.gpus", "at least one GPU"},
      {"phases configured", WithProcess("phases = [9]\n"), "services.s.phases",
       "phase 9 is not in [phases]"},
      {"phases configured in the file", WithProcess("phases = [3]\n[phases]\n1 = \"a\"\n"),
       "services.s.phases", "phase 3 is not in [phases] (configured: 1)"},
      {"port needs base_port",
       "[services.p]\nargv = [\"/x\"]\nvram_mb = 1\nhealth_url = \"http://h:{{port}}/\"\n",
       "services.p.health_url", "no base_port"},
      {"port in argv needs base_port", managed + "argv = [\"/x\", \"{{port}}\"]\n",
       "services.p.argv", "no base_port"},
      {"only service placeholders", managed + "argv = [\"/x\", \"{{model}}\"]\n", "services.p.argv",
       "unknown placeholder {{model}}"},
      {"placeholders in env", WithProcess("env = { A = \"{{payload}}\" }\n"), "services.s.env.A",
       "unknown placeholder"},
      {"env values are strings", WithProcess("env = { A = 1 }\n"), "services.s.env.A",
       "must be a string"},
      {"stop_signal word", WithProcess("stop_signal = \"SIGSTOP\"\n"), "services.s.stop_signal",
       "SIGTERM"},
      {"stop_signal number", WithProcess("stop_signal = 99\n"), "services.s.stop_signal",
       "between 1 and 64"},
      {"evict_body is JSON", WithProcess("evict_api = \"http://h/\"\nevict_body = \"{nope\"\n"),
       "services.s.evict_body", "JSON"},
      {"evict_body needs evict_api", WithProcess("evict_body = { a = 1 }\n"),
       "services.s.evict_body", "needs evict_api"},
      {"max_concurrency >= 1", WithProcess("max_concurrency = 0\n"), "services.s.max_concurrency",
       "between 1"},
      {"health_timeout_s >= 1", WithProcess("health_timeout_s = 0\n"),
       "services.s.health_timeout_s", "between 1"},
      {"service name", "[services.\"a b\"]\n", "services.a b", "letters, digits"},
      {"service is a table", "services = { s = 1 }\n", "services.s", "must be a table"},
      {"task type service configured",
       "[task_types.t]\nconnector = \"http\"\nservice = \"comfyui\"\n", "task_types.t.service",
       "service 'comfyui' is not configured"},
      {"task type connector known",
       WithProcess("[task_types.t]\nconnector = \"comfyui\"\nservice = \"s\"\n"),
       "task_types.t.connector", "unknown connector 'comfyui'"},
      {"endpoint is a path",
       WithProcess("[task_types.t]\nconnector = \"http\"\nservice = \"s\"\n"
                   "endpoint = \"work\"\n"),
       "task_types.t.endpoint", "starting with '/'"},
  };
}

TEST(ServicesConfig, EveryRuleReportsAProblemNamingTheField) {
  for (const auto& c : RuleCases()) {
    SCOPED_TRACE(c.rule);
    gpuq::testing::TempDir dir;

    auto checked = Check(dir, c.toml);

    EXPECT_THAT(checked.problems, Contains(ProblemAt(c.field, c.message)))
        << Describe(checked.problems);
  }
}

TEST(ServicesConfig, ReportsSeveralProblemsAtOnce) {
  gpuq::testing::TempDir dir;
  auto file = dir / "gpuq.toml";
  std::ofstream(file) << R"(
[gpu]
backend = "sim"
reserve_mb = -3
[services.a]
kind = "docker"
vram_mb = 0
phases = [8]
[services.b]
kind = "external"
argv = ["/x"]
[task_types.t]
connector = "http"
service = "c"
)";
  std::vector<Problem> problems;

  auto loaded = ReadFile(file, &problems);
  ASSERT_TRUE(loaded);
  Finalize(*loaded, kConnectors, &problems);

  EXPECT_THAT(problems, Contains(ProblemAt("gpu.reserve_mb", "between")));
  EXPECT_THAT(problems, Contains(ProblemAt("gpu.sim", "at least one")));
  EXPECT_THAT(problems, Contains(ProblemAt("services.a.container", "container name")));
  EXPECT_THAT(problems, Contains(ProblemAt("services.a.health_url", "needs a health_url")));
  EXPECT_THAT(problems, Contains(ProblemAt("services.a.vram_mb", "positive")));
  EXPECT_THAT(problems, Contains(ProblemAt("services.a.phases", "phase 8")));
  EXPECT_THAT(problems, Contains(ProblemAt("services.b.argv", "only for kind process")));
  EXPECT_THAT(problems, Contains(ProblemAt("services.b.url", "needs its url")));
  EXPECT_THAT(problems, Contains(ProblemAt("task_types.t.service", "'c' is not configured")));
  EXPECT_GE(problems.size(), 9u);
}

TEST(ServicesConfig, FinalizeChecksServicesBuiltInCode) {
  Config c = Defaults();
  ServiceSpec external;
  external.kind = ServiceKind::kExternal;
  external.url = "http://box:1234";
  c.services["ext"] = external;
  ServiceSpec broken;
  broken.stop_signal = 0;
  broken.max_concurrency = 0;
  c.services["broken"] = broken;
  std::vector<Problem> problems;

  Finalize(c, kConnectors, &problems);

  EXPECT_EQ(c.services.at("ext").health_url, "http://box:1234");
  EXPECT_EQ(c.services.at("broken").name, "broken");
  EXPECT_THAT(problems, Contains(ProblemAt("services.broken.argv", "non-empty argv")));
  EXPECT_THAT(problems, Contains(ProblemAt("services.broken.stop_signal", "1..64")));
  EXPECT_THAT(problems, Contains(ProblemAt("services.broken.max_concurrency", "at least 1")));
  EXPECT_THAT(problems, ::testing::Not(Contains(Field(&Problem::field, HasSubstr("ext")))));
}

TEST(ServicesConfig, GpuqGpusSetsTheOwnedGpus) {
  Config c = Defaults();
  std::vector<Problem> problems;

  ApplyEnvironment(c, &problems, [](const char* n) -> char* {
    return std::string(n) == "GPUQ_GPUS" ? const_cast<char*>("0, 2") : nullptr;
  });

  EXPECT_THAT(problems, IsEmpty());
  EXPECT_THAT(c.gpu.gpus, ElementsAre(0, 2));
}

TEST(ServicesConfig, MalformedGpuqGpusIsAProblem) {
  Config c = Defaults();
  c.gpu.gpus = {1};
  std::vector<Problem> problems;

  ApplyEnvironment(c, &problems, [](const char* n) -> char* {
    return std::string(n) == "GPUQ_GPUS" ? const_cast<char*>("0,x") : nullptr;
  });

  EXPECT_THAT(problems, Contains(ProblemAt("GPUQ_GPUS", "0,x")));
  EXPECT_THAT(c.gpu.gpus, ElementsAre(1));
}

Checked CheckExample(const char* name) {
  Checked out;
  out.config = ReadFile(std::filesystem::path(GPUQ_SOURCE_DIR) / "examples" / name, &out.problems);
  if (out.config) FinalizeWithBuiltins(*out.config, &out.problems);
  return out;
}

TEST(ServicesConfig, NotesExampleHasTheNotesFourServices) {
  auto checked = CheckExample("notes.toml");

  ASSERT_TRUE(checked.config);
  ASSERT_THAT(checked.problems, IsEmpty()) << Describe(checked.problems);
  const Config& c = *checked.config;
  EXPECT_EQ(c.gpu.vram_backend, "auto");
  EXPECT_EQ(c.gpu.reserve_mb, 512);
  EXPECT_EQ(c.phases, Defaults().phases);
  const auto& comfyui = c.services.at("comfyui");
  EXPECT_EQ(comfyui.kind, ServiceKind::kProcess);
  EXPECT_EQ(comfyui.vram_mb, 20000);
  EXPECT_EQ(comfyui.priority, 100);
  EXPECT_EQ(comfyui.health_url, "http://localhost:8188/system_stats");
  EXPECT_EQ(comfyui.health_timeout, std::chrono::seconds(120));
  EXPECT_EQ(comfyui.warm_time, std::chrono::seconds(30));
  EXPECT_THAT(comfyui.phases, ElementsAre(4));
  EXPECT_THAT(comfyui.argv, ElementsAre("/home/jimmy/Documents/mcn/start_comfy.sh"));
  EXPECT_EQ(comfyui.pid_file, "/mnt/data_ssd/mcn/comfy.pid");
  const auto& cosyvoice = c.services.at("cosyvoice");
  EXPECT_EQ(cosyvoice.kind, ServiceKind::kDocker);
  EXPECT_EQ(cosyvoice.container, "mcn_cosyvoice");
  EXPECT_EQ(cosyvoice.vram_mb, 4000);
  EXPECT_EQ(cosyvoice.priority, 50);
  EXPECT_EQ(cosyvoice.health_url, "http://localhost:50000/docs");
  EXPECT_EQ(cosyvoice.health_timeout, std::chrono::seconds(60));
  EXPECT_EQ(cosyvoice.warm_time, std::chrono::seconds(10));
  EXPECT_THAT(cosyvoice.phases, ElementsAre(3));
  const auto& vidi = c.services.at("vidi");
  EXPECT_EQ(vidi.kind, ServiceKind::kProcess);
  EXPECT_EQ(vidi.vram_mb, 4000);
  EXPECT_EQ(vidi.priority, 40);
  EXPECT_EQ(vidi.health_url, "http://localhost:8099/health");
  EXPECT_EQ(vidi.health_timeout, std::chrono::seconds(90));
  EXPECT_EQ(vidi.warm_time, std::chrono::seconds(20));
  EXPECT_THAT(vidi.phases, ElementsAre(2));
  const auto& ollama = c.services.at("ollama");
  EXPECT_EQ(ollama.kind, ServiceKind::kDocker);
  EXPECT_EQ(ollama.container, "mcn_ollama");
  EXPECT_EQ(ollama.vram_mb, 18000);
  EXPECT_EQ(ollama.priority, 10);
  EXPECT_EQ(ollama.health_url, "http://localhost:11434/api/tags");
  EXPECT_EQ(ollama.health_timeout, std::chrono::seconds(30));
  EXPECT_EQ(ollama.warm_time, std::chrono::seconds(5));
  EXPECT_THAT(ollama.phases, IsEmpty());
  EXPECT_EQ(ollama.evict_api, "http://localhost:11434/api/generate");
  EXPECT_EQ(nlohmann::json::parse(ollama.evict_body),
            (nlohmann::json{{"model", "qwen2.5:32b"}, {"keep_alive", "0s"}}));
  for (const char* type : {"comfyui", "tts", "analysis", "llm"}) {
    EXPECT_FALSE(c.task_types.at(type).service.empty()) << type;
  }
}

TEST(ServicesConfig, DemoExampleRunsFakeServicesOnOneSimGpu) {
  auto checked = CheckExample("demo.toml");

  ASSERT_TRUE(checked.config);
  ASSERT_THAT(checked.problems, IsEmpty()) << Describe(checked.problems);
  const Config& c = *checked.config;
  EXPECT_EQ(c.gpu.vram_backend, "sim");
  EXPECT_EQ(c.gpu.reserve_mb, 512);
  EXPECT_TRUE(c.gpu.fake_services_die_with_agent);
  ASSERT_EQ(c.gpu.sim.size(), 1u);
  EXPECT_EQ(c.gpu.sim[0].total_mb, 24576);
  EXPECT_EQ(c.gpu.sim[0].name, "sim-24g");
  std::map<std::string, std::pair<int, int>> want = {
      {"comfyui", {20000, 100}}, {"a1111", {6000, 90}}, {"cosyvoice", {4000, 50}},
      {"vidi", {4000, 40}}, {"ollama", {18000, 10}}};
  std::set<int> ports;
  for (const auto& [name, mb_priority] : want) {
    SCOPED_TRACE(name);
    const auto& s = c.services.at(name);
    EXPECT_EQ(s.kind, ServiceKind::kProcess);
    EXPECT_EQ(s.vram_mb, mb_priority.first);
    EXPECT_EQ(s.priority, mb_priority.second);
    EXPECT_EQ(s.idle_ttl, Millis(0));
    EXPECT_EQ(s.argv.at(0), (std::filesystem::path(GPUQ_SOURCE_DIR) / "build/gpuq-fake-service")
                                .lexically_normal()
                                .string());
    EXPECT_THAT(s.argv, Contains(std::to_string(mb_priority.first)));
    EXPECT_TRUE(ports.insert(s.base_port).second);
  }
  EXPECT_THAT(c.services.at("ollama").phases, IsEmpty());
  EXPECT_EQ(c.services.at("gpu_job").kind, ServiceKind::kSlot);
  // One task type per protocol, each bound to the fake that speaks it.
  std::map<std::string, std::pair<std::string, std::string>> types = {
      {"comfyui", {"comfyui", "comfyui"}},  {"a1111", {"a1111", "a1111"}},
      {"cosyvoice", {"cosyvoice", "cosyvoice"}}, {"llm", {"ollama", "ollama"}},
      {"analysis", {"http", "vidi"}},       {"remotion_render", {"remotion_render", ""}},
      {"container", {"container", "gpu_job"}}};
  for (const auto& [type, connector_service] : types) {
    EXPECT_EQ(c.task_types.at(type).connector, connector_service.first) << type;
    EXPECT_EQ(c.task_types.at(type).service, connector_service.second) << type;
  }
  EXPECT_EQ(c.task_types.at("comfyui").settings.at("templates_dir"),
            (std::filesystem::path(GPUQ_SOURCE_DIR) / "examples/workflows").string());
}

}  // namespace
}  // namespace gpuq::config
