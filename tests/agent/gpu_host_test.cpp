// The agent's GPU side end to end: a SQLite store, the real agent with its GPU worker, the
// `http` connector and real gpuq-fake-service processes on a simulated 24 GB GPU.
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "agent/agent.hpp"
#include "core/gpu_status.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace gpuq::agent {
namespace {

using namespace std::chrono_literals;
using gpuq::testing::TempDir;

struct FakeProcess {
  int pid = 0;
  int vram_mb = 0;
};

// The gpuq-fake-service processes that are children of this test process right now, with the
// VRAM each declares: the physical truth a watcher checks against the GPU's size.
std::vector<FakeProcess> LiveFakes() {
  std::vector<FakeProcess> fakes;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return fakes;
  int self = ::getpid();
  while (dirent* entry = ::readdir(proc)) {
    int pid = std::atoi(entry->d_name);
    if (pid <= 0) continue;
    std::ifstream stat(fmt::format("/proc/{}/stat", pid));
    std::string line;
    if (!std::getline(stat, line)) continue;
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state = 0;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid != self || state == 'Z') continue;
    std::ifstream cmdline(fmt::format("/proc/{}/cmdline", pid));
    std::vector<std::string> argv;
    for (std::string arg; std::getline(cmdline, arg, '\0');) argv.push_back(arg);
    if (argv.empty() || !argv[0].ends_with("gpuq-fake-service")) continue;
    FakeProcess fake{.pid = pid};
    for (size_t i = 0; i + 1 < argv.size(); ++i) {
      if (argv[i] == "--vram-mb") fake.vram_mb = std::atoi(argv[i + 1].c_str());
    }
    fakes.push_back(fake);
  }
  ::closedir(proc);
  return fakes;
}

ServiceSpec Fake(const std::string& name, int vram_mb, int priority, std::vector<int> phases) {
  ServiceSpec spec;
  spec.name = name;
  spec.vram_mb = vram_mb;
  spec.priority = priority;
  spec.phases = std::move(phases);
  spec.base_port = gpuq::testing::FreePort();
  spec.argv = {std::string(GPUQ_BINARY_DIR) + "/gpuq-fake-service",
               "--port",
               "{{port}}",
               "--name",
               name,
               "--vram-mb",
               std::to_string(vram_mb),
               "--startup-ms",
               "20"};
  spec.health_url = "http://127.0.0.1:{{port}}/health";
  spec.health_timeout = 30s;
  spec.stop_timeout = 5s;
  return spec;
}

TaskType HttpType(const std::string& name, const std::string& service) {
  TaskType type;
  type.name = name;
  type.connector = "http";
  type.service = service;
  type.endpoint = "/work";
  type.max_attempts = 1;  // a run that needed a second attempt would show as failed
  return type;
}

class GpuHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.data_dir = dir_.path();
    config_.agent.id = "gpu-agent";
    config_.agent.heartbeat = 100ms;
    config_.agent.poll = 20ms;
    config_.gpu.vram_backend = "sim";
    config_.gpu.sim = {config::SimGpuConfig{.index = 0, .name = "sim-24g", .total_mb = 24576}};
    config_.gpu.reserve_mb = 512;
    config_.gpu.host = "testhost";
    config_.gpu.health_interval = 50ms;
    config_.gpu.memory_wait = 10s;
    config_.gpu.fake_services_die_with_agent = true;
    config_.phases = {{1, "crawl"}, {2, "analysis"}, {3, "tts"}, {4, "video"}, {5, "render"}};
    for (auto spec : {Fake("comfyui", 20000, 100, {4}), Fake("cosyvoice", 4000, 50, {3}),
                      Fake("vidi", 4000, 40, {2}), Fake("ollama", 18000, 10, {})}) {
      config_.services[spec.name] = spec;
    }
    config_.task_types["comfyui"] = HttpType("comfyui", "comfyui");
    config_.task_types["tts"] = HttpType("tts", "cosyvoice");
    config_.task_types["analysis"] = HttpType("analysis", "vidi");
    config_.task_types["llm"] = HttpType("llm", "ollama");
    auto store = store::SqliteStore::Open(dir_.path() / "gpuq.db", clock_);
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(store.value());
  }

  void TearDown() override {
    agent_.reset();
    // Every fake dies with the agent's threads (PR_SET_PDEATHSIG) or was stopped by it.
    EXPECT_TRUE(gpuq::testing::WaitUntil([] { return LiveFakes().empty(); }, 10s))
        << LiveFakes().size() << " fake service(s) outlived the agent";
  }

  void StartAgent() {
    agent_ = std::make_unique<Agent>(AgentDeps{*store_, config_, registry_, clock_});
    auto started = agent_->Start();
    ASSERT_TRUE(started) << started.error().message;
  }

  std::string Submit(const std::string& type, int priority, Json payload) {
    auto submitted = store_->Submit(store::NewRun{
        .type = type, .priority = priority, .payload = std::move(payload), .max_attempts = 1});
    EXPECT_TRUE(submitted) << submitted.error().message;
    return submitted ? submitted.value().id : "";
  }

  gpuq::Run Get(const std::string& id) { return store_->Get(id).value(); }

  bool Finished(const std::string& id) { return IsFinished(Get(id).state); }

  TempDir dir_;
  SystemClock clock_;
  config::Config config_ = config::Defaults();
  connectors::ConnectorRegistry registry_ = connectors::BuiltinConnectors();
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<Agent> agent_;
};

TEST_F(GpuHostTest, RunGoesThroughItsServiceOnTheGpu) {
  StartAgent();

  std::string id = Submit("comfyui", 50, Json{{"prompt", "a cat"}});

  ASSERT_TRUE(gpuq::testing::WaitUntil([&] { return Finished(id); }, 60s));
  gpuq::Run run = Get(id);
  ASSERT_EQ(run.state, RunState::kCompleted) << run.error.value_or("");
  EXPECT_EQ(run.gpu, "testhost:0");
  EXPECT_EQ(run.worker, "gpu-agent/gpu0");
  EXPECT_EQ(run.result["service"], "comfyui");
  EXPECT_EQ(run.result["input"]["prompt"], "a cat");
  EXPECT_EQ(run.result["gpu"], "0");  // CUDA_VISIBLE_DEVICES as the service saw it
}

TEST_F(GpuHostTest, AgentPublishesItsGpuReport) {
  StartAgent();
  std::string id = Submit("tts", 50, Json::object());
  ASSERT_TRUE(gpuq::testing::WaitUntil([&] { return Finished(id); }, 60s));

  std::optional<AgentGpuReport> report;
  ASSERT_TRUE(gpuq::testing::WaitUntil(
      [&] {
        auto agents = store_->ListAgents(10s);
        if (!agents || agents.value().empty()) return false;
        auto parsed = AgentGpuReportFromJson(agents.value()[0].state);
        if (!parsed) return false;
        report = parsed.value();
        return report->gpus.size() == 1 &&
               report->gpus[0].services["cosyvoice"].state == ServiceState::kReady;
      },
      10s));
  EXPECT_EQ(report->agent, "gpu-agent");
  EXPECT_EQ(report->backend, "sim");
  EXPECT_EQ(report->gpus[0].total_mb, 24576);
  EXPECT_EQ(report->gpus[0].used_mb, 4000);
  EXPECT_EQ(report->gpus[0].free_mb, 24576 - 4000);
}

TEST_F(GpuHostTest, SecondAgentOnTheSameGpuIsRefused) {
  StartAgent();
  config::Config other = config_;
  other.agent.id = "intruder";
  Agent second(AgentDeps{*store_, other, registry_, clock_});

  auto started = second.Start();

  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code, Errc::kConflict);
  EXPECT_NE(started.error().message.find("testhost:0"), std::string::npos)
      << started.error().message;
}

TEST_F(GpuHostTest, RunThatCanNeverFitWaitsWithAReason) {
  config_.services["huge"] = Fake("huge", 30000, 50, {});
  config_.task_types["huge"] = HttpType("huge", "huge");
  StartAgent();

  std::string id = Submit("huge", 50, Json::object());

  ASSERT_TRUE(gpuq::testing::WaitUntil([&] { return Get(id).waiting_reason.has_value(); }, 30s));
  gpuq::Run run = Get(id);
  EXPECT_EQ(run.state, RunState::kPending);
  EXPECT_NE(run.waiting_reason->find("30000"), std::string::npos) << *run.waiting_reason;
}

TEST_F(GpuHostTest, SecondGpuTakesWhatWouldOtherwiseEvictAndEachInstanceHasItsOwnPortAndDevice) {
  config_.gpu.sim.push_back(config::SimGpuConfig{.index = 1, .name = "sim-24g", .total_mb = 24576});
  StartAgent();
  std::string comfy = Submit("comfyui", 50, Json::object());
  ASSERT_TRUE(gpuq::testing::WaitUntil([&] { return Finished(comfy); }, 60s));

  // ollama does not fit beside comfyui: the other GPU serves it without evicting anything.
  std::string llm = Submit("llm", 50, Json::object());

  ASSERT_TRUE(gpuq::testing::WaitUntil([&] { return Finished(llm); }, 60s));
  gpuq::Run first = Get(comfy);
  gpuq::Run second = Get(llm);
  ASSERT_EQ(second.state, RunState::kCompleted) << second.error.value_or("");
  EXPECT_NE(first.gpu, second.gpu);
  int comfy_gpu = first.gpu == "testhost:0" ? 0 : 1;
  EXPECT_EQ(first.result["gpu"], std::to_string(comfy_gpu));  // CUDA_VISIBLE_DEVICES
  EXPECT_EQ(second.result["gpu"], std::to_string(1 - comfy_gpu));
  EXPECT_EQ(first.result["port"], config_.services["comfyui"].base_port + comfy_gpu);
  EXPECT_EQ(second.result["port"], config_.services["ollama"].base_port + 1 - comfy_gpu);

  // comfyui is still resident: its next run goes where it is, with no new start.
  std::string again = Submit("comfyui", 50, Json::object());
  ASSERT_TRUE(gpuq::testing::WaitUntil([&] { return Finished(again); }, 60s));
  EXPECT_EQ(Get(again).gpu, first.gpu);
  EXPECT_EQ(Get(again).result["port"], first.result["port"]);
}

// The proof: 500 tasks across the four services in random order and priorities; a
// watcher sampling the live service processes never sees more declared VRAM than the GPU
// has, and every task completes, once.
TEST_F(GpuHostTest, RandomizedRunNeverOvercommitsAndCompletesEveryTaskOnce) {
  StartAgent();
  std::atomic<bool> watching{true};
  std::atomic<int> worst_mb{0};
  std::atomic<int> samples{0};
  std::thread watcher([&] {
    while (watching) {
      int used = 0;
      for (const auto& fake : LiveFakes()) used += fake.vram_mb;
      int seen = worst_mb.load();
      while (used > seen && !worst_mb.compare_exchange_weak(seen, used)) {
      }
      ++samples;
      std::this_thread::sleep_for(2ms);  // the sampling period
    }
  });
  std::mt19937 random(4);  // fixed seed: a failure replays
  const std::vector<std::string> types = {"comfyui", "tts", "analysis", "llm"};
  const std::vector<int> priorities = {10, 50, 90};
  std::vector<std::string> ids;
  for (int i = 0; i < 500; ++i) {
    ids.push_back(Submit(types[random() % types.size()], priorities[random() % priorities.size()],
                         Json{{"i", i}, {"sleep_ms", static_cast<int>(random() % 3)}}));
  }

  bool all_done = gpuq::testing::WaitUntil(
      [&] {
        auto page = store_->List(store::RunFilter{.state = RunState::kCompleted, .limit = 1000});
        return page && page.value().runs.size() == ids.size();
      },
      300s, 100ms);
  watching = false;
  watcher.join();

  ASSERT_TRUE(all_done);
  for (size_t i = 0; i < ids.size(); ++i) {
    gpuq::Run run = Get(ids[i]);
    ASSERT_EQ(run.state, RunState::kCompleted) << run.error.value_or("");
    EXPECT_EQ(run.attempts, 1);
    EXPECT_EQ(run.result["input"]["i"], static_cast<int>(i));
  }
  EXPECT_GT(samples.load(), 10);
  EXPECT_LE(worst_mb.load(), 24576);
  EXPECT_LE(worst_mb.load(), 24576 - 512);  // the reserve is never planned into either
}

}  // namespace
}  // namespace gpuq::agent
