// The GPU manager with real child-process services (gpuq-fake-service) on the `sim` GPU:
// eviction by the policy, busy services kept, phases, crashes noticed, adoption, and no
// process left behind.
#include "gpu/manager/manager.hpp"

#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "core/clock.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace gpuq::gpu {
namespace {

using namespace std::chrono_literals;
using testing::FreePort;
using testing::ProcessAlive;
using testing::TempDir;
using testing::WaitUntil;

ServiceSpec Fake(const std::string& name, int vram_mb, int priority, std::vector<int> phases,
                 std::vector<std::string> extra = {}) {
  ServiceSpec spec;
  spec.name = name;
  spec.kind = ServiceKind::kProcess;
  spec.vram_mb = vram_mb;
  spec.priority = priority;
  spec.phases = std::move(phases);
  spec.base_port = FreePort();
  spec.argv = {std::string(GPUQ_BINARY_DIR) + "/gpuq-fake-service",
               "--port",
               "{{port}}",
               "--name",
               name,
               "--vram-mb",
               std::to_string(vram_mb),
               "--startup-ms",
               "50"};
  spec.argv.insert(spec.argv.end(), extra.begin(), extra.end());
  spec.health_url = "http://127.0.0.1:{{port}}/health";
  spec.health_timeout = 30s;
  spec.warm_time = 1s;
  spec.stop_timeout = 5s;
  return spec;
}

// The notes' four services on one simulated 24 GB GPU with a 512 MB reserve.
std::map<std::string, ServiceSpec> NotesServices() {
  std::map<std::string, ServiceSpec> services;
  for (auto spec : {Fake("comfyui", 20000, 100, {4}), Fake("cosyvoice", 4000, 50, {3}),
                    Fake("vidi", 4000, 40, {2}), Fake("ollama", 18000, 10, {})}) {
    services[spec.name] = spec;
  }
  return services;
}

class ManagerTest : public ::testing::Test {
 protected:
  void Open(std::map<std::string, ServiceSpec> services) {
    auto vram = OpenVram(
        VramOptions{.backend = "sim", .sim_gpus = {SimGpu{.index = 0, .total_mb = 24576}}});
    ASSERT_TRUE(vram) << vram.error().message;
    vram_ = std::move(vram).value();
    manager_ = MakeManager(std::move(services));
    auto started = manager_->Start();
    ASSERT_TRUE(started) << started.error().message;
  }

  std::unique_ptr<Manager> MakeManager(std::map<std::string, ServiceSpec> services) {
    return std::make_unique<Manager>(
        *vram_,
        [](const InstanceSpec& spec) {
          return spec.service.kind == ServiceKind::kSlot ? MakeSlotRuntime(spec)
                                                          : MakeProcessRuntime(spec);
        },
        clock_,
        ManagerOptions{
            .host = "test",
            .reserve_mb = 512,
            .memory_wait = 10s,
            .health_interval = 50ms,
            .data_dir = dir_.path(),
            .die_with_parent = true,
            .services = std::move(services),
            .phases = {{1, "crawl"}, {2, "analysis"}, {3, "tts"}, {4, "video"}, {5, "render"}}});
  }

  void TearDown() override {
    if (!manager_) return;
    NotePids();
    manager_->ReleaseAll();
    for (int pid : pids_) {
      EXPECT_TRUE(WaitUntil([pid] { return !ProcessAlive(pid); }, 10s))
          << "pid " << pid << " outlived";
    }
  }

  // Remembers every service pid seen, to check none outlives the test.
  void NotePids() {
    for (const auto& gpu : manager_->Report().gpus) {
      for (const auto& [name, service] : gpu.services) {
        if (service.pid) pids_.insert(*service.pid);
      }
    }
  }

  ServiceState State(const std::string& service) {
    NotePids();
    return manager_->Report().gpus.at(0).services.at(service).state;
  }

  int UsedMb() { return vram_->Query().value().at(0).used_mb; }

  TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<VramBackend> vram_;
  std::unique_ptr<Manager> manager_;
  std::set<int> pids_;
};

TEST_F(ManagerTest, PhaseFourStartsComfyuiAndPhaseThreeSwapsItForCosyvoice) {
  Open(NotesServices());

  auto video = manager_->PreparePhase(4);

  ASSERT_TRUE(video.success) << video.error;
  EXPECT_EQ(State("comfyui"), ServiceState::kReady);
  EXPECT_EQ(UsedMb(), 20000);

  auto tts = manager_->PreparePhase(3);

  ASSERT_TRUE(tts.success) << tts.error;
  EXPECT_EQ(State("comfyui"), ServiceState::kStopped);
  EXPECT_EQ(State("cosyvoice"), ServiceState::kReady);
  EXPECT_EQ(tts.stopped, std::vector<std::string>{"comfyui"});
  EXPECT_EQ(tts.started, std::vector<std::string>{"cosyvoice"});
  EXPECT_EQ(UsedMb(), 4000);
}

TEST_F(ManagerTest, UnknownPhaseIsRefused) {
  Open(NotesServices());

  auto outcome = manager_->PreparePhase(9);

  EXPECT_FALSE(outcome.success);
  EXPECT_NE(outcome.error.find("phase 9"), std::string::npos);
}

TEST_F(ManagerTest, HigherPriorityTaskEvictsIdleLowerPriorityService) {
  Open(NotesServices());
  ASSERT_TRUE(manager_->StartService("ollama").success);

  auto lease = manager_->Acquire("comfyui", 0, 100, {});

  ASSERT_TRUE(lease) << lease.error().message;
  EXPECT_EQ(State("ollama"), ServiceState::kStopped);
  EXPECT_EQ(State("comfyui"), ServiceState::kBusy);
  EXPECT_EQ(UsedMb(), 20000);
}

TEST_F(ManagerTest, QueuedWorkProtectsAnIdleServiceFromLowerPriorityTasks) {
  Open(NotesServices());
  ASSERT_TRUE(manager_->StartService("comfyui").success);
  manager_->SetPendingWork({{"comfyui", PendingWork{.runs = 2, .max_priority = 100}}});

  auto low = manager_->Acquire("ollama", 0, 50, {});

  ASSERT_FALSE(low);
  EXPECT_EQ(low.error().code, Errc::kResourceExhausted);
  EXPECT_EQ(State("comfyui"), ServiceState::kReady);

  manager_->SetPendingWork({});
  auto now_free = manager_->Acquire("ollama", 0, 50, {});

  ASSERT_TRUE(now_free) << now_free.error().message;
  EXPECT_EQ(State("comfyui"), ServiceState::kStopped);
}

TEST_F(ManagerTest, BusyServiceIsNeverEvicted) {
  Open(NotesServices());
  auto ollama = manager_->Acquire("ollama", 0, 10, {});
  ASSERT_TRUE(ollama) << ollama.error().message;

  auto comfy = manager_->Acquire("comfyui", 0, 1000, {});

  ASSERT_FALSE(comfy);
  EXPECT_EQ(comfy.error().code, Errc::kResourceExhausted);
  EXPECT_NE(comfy.error().message.find("ollama"), std::string::npos) << comfy.error().message;
  EXPECT_EQ(State("ollama"), ServiceState::kBusy);

  ollama = ServiceLease();  // the run ends
  auto after = manager_->Acquire("comfyui", 0, 1000, {});

  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(State("ollama"), ServiceState::kStopped);
}

TEST_F(ManagerTest, StoppingABusyServiceNeedsForceAndThenEndsItsRun) {
  Open(NotesServices());
  std::atomic<bool> told{false};
  auto lease = manager_->Acquire("vidi", 0, 40, {}, "run-1", [&told] { told = true; });
  ASSERT_TRUE(lease) << lease.error().message;

  auto refused = manager_->StopService("vidi", /*force=*/false);

  EXPECT_FALSE(refused.success);
  EXPECT_TRUE(refused.busy);
  EXPECT_EQ(State("vidi"), ServiceState::kBusy);

  auto forced = manager_->StopService("vidi", /*force=*/true);

  EXPECT_TRUE(forced.success) << forced.error;
  EXPECT_TRUE(told);
  EXPECT_EQ(forced.requeued, std::vector<std::string>{"run-1"});
  EXPECT_EQ(State("vidi"), ServiceState::kStopped);
  EXPECT_EQ(UsedMb(), 0);
}

TEST_F(ManagerTest, CrashedServiceIsNoticedMarkedErrorAndRestartedOnNextUse) {
  auto services = NotesServices();
  services["vidi"] = Fake("vidi", 4000, 40, {2}, {"--exit-after-ms", "300"});
  Open(services);
  ASSERT_TRUE(manager_->StartService("vidi").success);
  auto first_pid = manager_->Report().gpus[0].services["vidi"].pid;
  NotePids();

  ASSERT_TRUE(WaitUntil(
      [&] {
        manager_->Tick();
        return State("vidi") == ServiceState::kError;
      },
      10s));
  EXPECT_EQ(UsedMb(), 0);  // its memory is discharged with its process

  auto lease = manager_->Acquire("vidi", 0, 40, {});

  ASSERT_TRUE(lease) << lease.error().message;
  EXPECT_EQ(State("vidi"), ServiceState::kBusy);
  EXPECT_NE(manager_->Report().gpus[0].services["vidi"].pid, first_pid);
}

TEST_F(ManagerTest, ServiceThatNeverGetsHealthyEndsInErrorWithItsProcessGone) {
  auto services = NotesServices();
  services["vidi"] = Fake("vidi", 4000, 40, {2}, {"--fail-health"});
  services["vidi"].health_timeout = 1s;
  Open(services);

  auto started = manager_->StartService("vidi");

  EXPECT_FALSE(started.success);
  EXPECT_EQ(State("vidi"), ServiceState::kError);
  EXPECT_EQ(UsedMb(), 0);
}

TEST_F(ManagerTest, RestartedManagerAdoptsTheRunningInstance) {
  auto services = NotesServices();
  Open(services);
  ASSERT_TRUE(manager_->StartService("cosyvoice").success);
  auto pid = manager_->Report().gpus[0].services["cosyvoice"].pid;
  NotePids();
  manager_.reset();  // the agent goes away; the service keeps running

  manager_ = MakeManager(services);
  ASSERT_TRUE(manager_->Start());

  EXPECT_EQ(State("cosyvoice"), ServiceState::kReady);
  EXPECT_EQ(manager_->Report().gpus[0].services["cosyvoice"].pid, pid);
}

// A slot (a container per run) runs nothing, yet placement makes room for its memory: it evicts
// an idle service, charges the ledger while held, and gives the memory back when stopped.
TEST_F(ManagerTest, SlotReservesMemoryAndEvictsLikeAService) {
  auto services = NotesServices();
  ServiceSpec slot;
  slot.name = "gpu_job";
  slot.kind = ServiceKind::kSlot;
  slot.vram_mb = 16000;
  slot.priority = 60;
  slot.warm_time = 0s;
  services[slot.name] = slot;
  Open(std::move(services));
  ASSERT_TRUE(manager_->StartService("comfyui").success);
  std::stop_source stop;

  {
    auto lease = manager_->Acquire("gpu_job", 0, 60, stop.get_token(), "run-1");

    ASSERT_TRUE(lease) << lease.error().message;
    EXPECT_TRUE(lease.value().base_url().empty());
    EXPECT_EQ(State("comfyui"), ServiceState::kStopped);
    EXPECT_EQ(State("gpu_job"), ServiceState::kBusy);
    EXPECT_EQ(UsedMb(), 16000);
  }
  EXPECT_EQ(State("gpu_job"), ServiceState::kReady);
  ASSERT_TRUE(manager_->StopService("gpu_job", false).success);
  EXPECT_EQ(State("gpu_job"), ServiceState::kStopped);
  EXPECT_EQ(UsedMb(), 0);
}

TEST_F(ManagerTest, ReportShowsDeclaredAndMeasuredMemory) {
  auto services = NotesServices();
  services["vidi"] = Fake("vidi", 4000, 40, {2});
  // The service's health reply says 3500 MB: the ledger charges that, and planning uses it.
  services["vidi"].argv[6] = "3500";
  Open(services);
  ASSERT_TRUE(manager_->StartService("vidi").success);

  auto status = manager_->Report().gpus.at(0).services.at("vidi");

  EXPECT_EQ(status.vram_mb_declared, 4000);
  EXPECT_EQ(status.vram_mb_measured, 3500);
  EXPECT_EQ(UsedMb(), 3500);
}

}  // namespace
}  // namespace gpuq::gpu

namespace gpuq::gpu {
namespace {

// COMFYUI_URL=... on a machine without a GPU: backend none sees no GPU, yet the external
// service gets one untracked slot so its runs have a worker.
TEST(ManagerExternalOnly, ExternalServicesGetAnUntrackedSlotWithoutAnyGpu) {
  TempDir dir;
  int port = FreePort();
  testing::ChildProcess fake({std::string(GPUQ_BINARY_DIR) + "/gpuq-fake-service", "--port",
                              std::to_string(port), "--name", "comfy"},
                             dir / "fake.log");
  ServiceSpec spec;
  spec.name = "comfyui";
  spec.kind = ServiceKind::kExternal;
  spec.url = fmt::format("http://127.0.0.1:{}", port);
  spec.health_url = spec.url + "/health";
  spec.health_timeout = 30s;
  auto vram = OpenVram(VramOptions{.backend = "none"});
  ASSERT_TRUE(vram) << vram.error().message;
  ManualClock clock;
  Manager manager(
      *vram.value(), [](const InstanceSpec& s) { return MakeExternalRuntime(s); }, clock,
      ManagerOptions{.host = "test", .data_dir = dir.path(), .services = {{"comfyui", spec}}});
  ASSERT_TRUE(manager.Start());

  EXPECT_EQ(manager.Gpus(), std::vector<int>{0});
  std::stop_source stop;
  auto lease = manager.Acquire("comfyui", 0, 50, stop.get_token(), "run-1");
  ASSERT_TRUE(lease) << lease.error().message;
  EXPECT_EQ(lease.value().base_url(), spec.url);
  EXPECT_TRUE(lease.value().gpu_uuid().empty());
}

}  // namespace
}  // namespace gpuq::gpu
