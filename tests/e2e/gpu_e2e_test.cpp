// End to end on a simulated GPU: `gpuq serve` with real gpuq-fake-service processes, driven
// through the CLI's gpu, phase, service and submit commands.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include "e2e/daemon.hpp"
#include "support/wait.hpp"

namespace gpuq::e2e {
namespace {

using ::testing::HasSubstr;

std::string Service(const std::string& name, int vram_mb, int priority, const std::string& phases) {
  return fmt::format(R"(
[services.{0}]
vram_mb = {1}
priority = {2}
phases = {3}
base_port = {4}
argv = ["{5}/gpuq-fake-service", "--port", "{{{{port}}}}", "--name", "{0}", "--vram-mb", "{1}", "--startup-ms", "100"]
health_url = "http://127.0.0.1:{{{{port}}}}/health"
health_timeout_s = 30
warm_time_s = 0

[task_types.{0}]
connector = "http"
service = "{0}"
endpoint = "/work"
)",
                     name, vram_mb, priority, phases, testing::FreePort(), GPUQ_BINARY_DIR);
}

// The notes' services on one simulated 24 GB GPU.
std::string GpuToml() {
  return std::string(R"(
[gpu]
backend = "sim"
reserve_mb = 512
host = "e2e"
fake_services_die_with_agent = true

[[gpu.sim]]
name = "sim-24g"
total_mb = 24576
)") + Service("comfyui", 20000, 100, "[4]") +
         Service("cosyvoice", 4000, 50, "[3]") + Service("vidi", 4000, 40, "[2]") +
         Service("ollama", 18000, 10, "[]");
}

nlohmann::json GpuStatus(const Cluster& c) {
  auto r = c.Cli({"gpu", "status", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.Json();
}

std::string State(const nlohmann::json& status, const std::string& service) {
  return status["gpus"][0]["services"][service]["state"];
}

std::vector<int> ServicePids(const nlohmann::json& status) {
  std::vector<int> pids;
  for (const auto& [name, service] : status["gpus"][0]["services"].items()) {
    if (service["pid"].is_number()) pids.push_back(service["pid"]);
  }
  return pids;
}

TEST(GpuEndToEnd, PhasesSwapServicesAndGpuStatusShowsThem) {
  Cluster c(GpuToml());
  auto server = c.StartServer();

  auto video = c.Cli({"phase", "4"});

  ASSERT_EQ(video.exit_code, 0) << video.output;
  auto status = GpuStatus(c);
  EXPECT_EQ(State(status, "comfyui"), "ready");
  EXPECT_EQ(status["vram"]["used_mb"], 20000);
  EXPECT_EQ(status["services"]["comfyui"]["state"], "ready");
  EXPECT_EQ(status["lock"]["ttl"], -2);

  auto tts = c.Cli({"phase", "3"});

  ASSERT_EQ(tts.exit_code, 0) << tts.output;
  EXPECT_THAT(tts.output, HasSubstr("stopped comfyui"));
  status = GpuStatus(c);
  EXPECT_EQ(State(status, "comfyui"), "stopped");
  EXPECT_EQ(State(status, "cosyvoice"), "ready");
  EXPECT_EQ(status["vram"]["used_mb"], 4000);

  auto table = c.Cli({"gpu", "status"});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_THAT(table.output, HasSubstr("e2e:0 sim-24g"));
  EXPECT_THAT(table.output, HasSubstr("cosyvoice"));

  EXPECT_EQ(c.Cli({"phase", "9"}).exit_code, 2);
  EXPECT_EQ(c.Cli({"service", "start", "nope"}).exit_code, 3);
}

TEST(GpuEndToEnd, SubmittedTaskStartsItsServiceAndEvictsAnIdleOne) {
  Cluster c(GpuToml());
  auto server = c.StartServer();
  ASSERT_EQ(c.Cli({"service", "start", "comfyui"}).exit_code, 0);

  auto r = c.Cli({"submit", "ollama", "--param", "prompt=hi", "--wait", "--json"});

  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto run = r.Json();
  EXPECT_EQ(run["status"], "completed");
  EXPECT_EQ(run["gpu"], "e2e:0");
  EXPECT_EQ(run["result"]["service"], "ollama");
  EXPECT_EQ(run["result"]["input"]["prompt"], "hi");
  auto status = GpuStatus(c);
  EXPECT_EQ(State(status, "comfyui"), "stopped");
  EXPECT_EQ(State(status, "ollama"), "ready");
}

TEST(GpuEndToEnd, BusyServiceStopsOnlyWithForceAndItsRunIsRequeued) {
  Cluster c(GpuToml());
  auto server = c.StartServer();
  auto submitted = c.Cli({"submit", "vidi", "--param", "sleep_ms:=3000", "--json"});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.output;
  std::string id = submitted.Json()["task_id"];
  ASSERT_TRUE(c.WaitForStatus(id, "processing"));
  ASSERT_TRUE(testing::WaitUntil([&] { return State(GpuStatus(c), "vidi") == "busy"; }));

  auto refused = c.Cli({"service", "stop", "vidi"});

  EXPECT_EQ(refused.exit_code, 4) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("force"));

  auto forced = c.Cli({"service", "stop", "vidi", "--force"});

  EXPECT_EQ(forced.exit_code, 0) << forced.output;
  // The run went back to the queue (attempt not counted) and completes on a fresh vidi.
  ASSERT_TRUE(c.WaitForStatus(id, "completed"));
  EXPECT_EQ(c.Status(id)["attempts"], 1);
}

TEST(GpuEndToEnd, SigtermLeavesNoServiceProcessBehind) {
  Cluster c(GpuToml());
  auto server = c.StartServer();
  ASSERT_EQ(c.Cli({"phase", "4"}).exit_code, 0);
  ASSERT_EQ(c.Cli({"service", "start", "vidi"}).exit_code, 0);
  auto pids = ServicePids(GpuStatus(c));
  ASSERT_EQ(pids.size(), 2u);

  server->Signal(SIGTERM);

  ASSERT_TRUE(server->Wait().has_value());
  for (int pid : pids) {
    EXPECT_TRUE(
        testing::WaitUntil([pid] { return !testing::ProcessAlive(pid); }, std::chrono::seconds(10)))
        << "service pid " << pid << " outlived the daemon";
  }
}

}  // namespace
}  // namespace gpuq::e2e
