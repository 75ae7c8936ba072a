#include "agent/agent.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "store/sqlite/sqlite_store.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace gpuq::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

bool Alive(pid_t pid) { return gpuq::testing::ProcessAlive(pid); }

// A task type by assignment: designated initializers that skip fields warn on GCC 12.
TaskType MakeType(std::string name, std::string connector, std::vector<std::string> argv = {},
                  std::string service = "") {
  TaskType type;
  type.name = std::move(name);
  type.connector = std::move(connector);
  type.argv = std::move(argv);
  type.service = std::move(service);
  return type;
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.data_dir = dir_.path();
    config_.agent.id = "test-agent";
    config_.agent.cpu_workers = 2;
    config_.agent.heartbeat = Millis(50);
    config_.agent.poll = Millis(20);
    config_.agent.lease_ttl = Millis(10'000);
    config_.agent.drain_timeout = Millis(30'000);
    config_.task_types["echo"] = MakeType("echo", "echo");
    config_.task_types["command"] = MakeType("command", "command");
    config_.task_types["write"] =
        MakeType("write", "command", {"/bin/sh", "-c", "echo {{text}} > out.txt"});
    // A GPU type: not the CPU pool's business, even with a connector this build
    // lacks.
    config_.task_types["comfyui"] = MakeType("comfyui", "comfyui", {}, "comfyui");
    auto store = store::SqliteStore::Open(dir_ / "gpuq.db", clock_);
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(store.value());
  }

  void TearDown() override { agent_.reset(); }

  void StartAgent() {
    agent_ = std::make_unique<Agent>(AgentDeps{*store_, config_, registry_, clock_});
    auto started = agent_->Start();
    ASSERT_TRUE(started) << started.error().message;
  }

  std::string Submit(const std::string &type, Json payload, int timeout_s = 3600) {
    store::NewRun run;
    run.type = type;
    run.payload = std::move(payload);
    run.timeout_s = timeout_s;
    auto submitted = store_->Submit(run);
    EXPECT_TRUE(submitted) << submitted.error().message;
    return submitted ? submitted.value().id : std::string();
  }

  gpuq::Run Get(const std::string &id) {
    auto run = store_->Get(id);
    EXPECT_TRUE(run) << run.error().message;
    return run ? run.value() : gpuq::Run{};
  }

  bool WaitForState(const std::string &id, RunState state) {
    return testing::WaitUntil([&] {
      auto run = store_->Get(id);
      return run && run.value().state == state;
    });
  }

  // A command run that records its pid in <run_dir>/pid and then sleeps.
  std::string SubmitSleeper() {
    return Submit("command", Json{{"argv", {"/bin/sh", "-c", "echo $$ > pid; exec sleep 300"}}});
  }

  pid_t WaitForPid(const std::string &id) {
    pid_t pid = 0;
    EXPECT_TRUE(testing::WaitUntil([&] {
      std::ifstream in(dir_ / "runs" / id / "pid");
      return static_cast<bool>(in >> pid) && pid > 0;
    }));
    return pid;
  }

  testing::TempDir dir_;
  ManualClock clock_;  // the store's time; the agent's own timers use the steady clock
  config::Config config_;
  connectors::ConnectorRegistry registry_ = connectors::BuiltinConnectors();
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<Agent> agent_;
};

TEST_F(AgentTest, RunsComplete) {
  StartAgent();
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(Submit("echo", Json{{"i", i}}));

  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(WaitForState(ids[i], RunState::kCompleted)) << i;
    gpuq::Run run = Get(ids[i]);
    EXPECT_EQ(run.result, (Json{{"i", i}}));
    EXPECT_EQ(run.attempts, 1);
    EXPECT_THAT(*run.worker, HasSubstr("test-agent/cpu"));
    EXPECT_FALSE(std::filesystem::exists(dir_ / "runs" / run.id))
        << "echo writes nothing, so its run gets no directory";
  }
}

TEST_F(AgentTest, CommandRunCompletesWithItsFiles) {
  StartAgent();

  std::string id = Submit("write", Json{{"text", "hello"}});

  ASSERT_TRUE(WaitForState(id, RunState::kCompleted));
  gpuq::Run run = Get(id);
  EXPECT_EQ(run.result, (Json{{"exit_code", 0}}));
  EXPECT_THAT(run.files, ElementsAre("runs/" + id + "/out.txt"));
}

TEST_F(AgentTest, FailingRunFailsWithoutRetry) {
  StartAgent();

  std::string id = Submit("echo", Json{{"fail", "boom"}});

  ASSERT_TRUE(WaitForState(id, RunState::kFailed));
  gpuq::Run run = Get(id);
  EXPECT_EQ(run.error, "boom");
  EXPECT_EQ(run.attempts, 1);
}

TEST_F(AgentTest, CancelStopsAProcessingRun) {
  StartAgent();
  std::string id = SubmitSleeper();
  pid_t pid = WaitForPid(id);
  ASSERT_TRUE(Alive(pid));

  ASSERT_TRUE(store_->Cancel(id));

  ASSERT_TRUE(WaitForState(id, RunState::kCancelled));
  EXPECT_TRUE(testing::WaitUntil([&] { return !Alive(pid); }));
}

TEST_F(AgentTest, ProgressReachesTheStore) {
  StartAgent();
  std::string id = Submit("echo", Json{{"sleep_ms", 600'000}, {"progress", 6'000}});

  ASSERT_TRUE(testing::WaitUntil([&] { return Get(id).progress.fraction.has_value(); }));

  EXPECT_THAT(Get(id).progress.message, HasSubstr("step"));
  ASSERT_TRUE(store_->Cancel(id));
  ASSERT_TRUE(WaitForState(id, RunState::kCancelled));
}

TEST_F(AgentTest, CompletedRunShowsItsLastProgressEvenWhenThrottled) {
  StartAgent();

  // Three reports in one throttle interval: only the first is written at once.
  std::string id = Submit("command", Json{{"argv", {"/bin/sh", "-c",
                                                    "echo 'GPUQ_PROGRESS 0.2 a'; "
                                                    "echo 'GPUQ_PROGRESS 0.6 b'; "
                                                    "echo 'GPUQ_PROGRESS 1 c'"}}});

  ASSERT_TRUE(WaitForState(id, RunState::kCompleted));
  gpuq::Run run = Get(id);
  EXPECT_EQ(run.progress.fraction, 1.0);
  EXPECT_EQ(run.progress.message, "c");
}

TEST_F(AgentTest, LostLeaseStopsTheWork) {
  config_.agent.cpu_workers = 1;
  config_.agent.lease_ttl = Millis(1'000);
  StartAgent();
  std::string id = SubmitSleeper();
  pid_t pid = WaitForPid(id);

  // The lease expires in store time; requeue it between two of the agent's
  // heartbeats.
  ASSERT_TRUE(testing::WaitUntil([&] {
    clock_.Advance(Millis(5'000));
    (void)store_->RequeueExpired();
    return Get(id).state == RunState::kPending;
  }));

  EXPECT_TRUE(testing::WaitUntil([&] { return !Alive(pid); }));
  gpuq::Run run = Get(id);
  EXPECT_EQ(run.state, RunState::kPending);  // the agent wrote nothing about it
  EXPECT_EQ(run.attempts, 1);
}

TEST_F(AgentTest, TimeoutFailsTheRun) {
  StartAgent();

  std::string id = Submit("echo", Json{{"sleep_ms", 600'000}}, /*timeout_s=*/1);

  ASSERT_TRUE(WaitForState(id, RunState::kFailed));
  gpuq::Run run = Get(id);
  EXPECT_EQ(run.error, "timed out after 1 s");
  EXPECT_EQ(run.attempts, 1);
}

TEST_F(AgentTest, DrainGivesALongRunBackAsPendingWithoutCountingTheAttempt) {
  config_.agent.drain_timeout = Millis(100);
  StartAgent();
  std::string id = Submit("echo", Json{{"sleep_ms", 600'000}});
  ASSERT_TRUE(WaitForState(id, RunState::kProcessing));

  agent_->Drain();

  gpuq::Run run = Get(id);
  EXPECT_EQ(run.state, RunState::kPending);
  EXPECT_EQ(run.attempts, 0);
}

TEST_F(AgentTest, DrainLetsAShortRunFinish) {
  StartAgent();
  std::string id = Submit("echo", Json{{"sleep_ms", 300}});
  ASSERT_TRUE(WaitForState(id, RunState::kProcessing));

  agent_->Drain();

  EXPECT_EQ(Get(id).state, RunState::kCompleted);
}

TEST_F(AgentTest, DrainStopsClaiming) {
  StartAgent();
  agent_->Drain();

  std::string id = Submit("echo", Json::object());
  store_->WaitForWork(Millis(200));

  EXPECT_EQ(Get(id).state, RunState::kPending);
}

TEST_F(AgentTest, DrainIsIdempotentAndThreadSafe) {
  config_.agent.drain_timeout = Millis(100);
  StartAgent();
  std::string id = Submit("echo", Json{{"sleep_ms", 600'000}});
  ASSERT_TRUE(WaitForState(id, RunState::kProcessing));

  std::thread other([&] { agent_->Drain(); });
  agent_->Drain();
  other.join();
  agent_->Drain();

  EXPECT_EQ(Get(id).state, RunState::kPending);
}

TEST_F(AgentTest, RestartRequeuesWhatThePreviousIncarnationHeld) {
  std::string id = Submit("echo", Json{{"x", 1}});
  auto held = store_->Claim(store::ClaimRequest{.worker = "test-agent/cpu0", .types = {"echo"}});
  ASSERT_TRUE(held);
  ASSERT_EQ(held.value().size(), 1u);

  StartAgent();

  gpuq::Run run = Get(id);
  EXPECT_EQ(run.state,
            RunState::kPending);  // back off before the retry (store time)
  EXPECT_EQ(run.attempts, 1);
  clock_.Advance(Millis(3'600'000));
  ASSERT_TRUE(WaitForState(id, RunState::kCompleted));
  EXPECT_EQ(Get(id).attempts, 2);
}

TEST_F(AgentTest, ExpiredLeasesOfADeadAgentComeBack) {
  std::string id = Submit("echo", Json{{"x", 1}});
  auto held = store_->Claim(store::ClaimRequest{
      .worker = "dead-agent/cpu0", .types = {"echo"}, .lease_ttl = Millis(1'000)});
  ASSERT_TRUE(held);
  ASSERT_EQ(held.value().size(), 1u);
  StartAgent();

  clock_.Advance(Millis(3'600'000));  // past the lease: the agent's sweeper requeues it
  ASSERT_TRUE(WaitForState(id, RunState::kPending));
  clock_.Advance(Millis(3'600'000));  // past the retry backoff

  ASSERT_TRUE(WaitForState(id, RunState::kCompleted));
  EXPECT_THAT(*Get(id).worker, HasSubstr("test-agent/"));
}

TEST_F(AgentTest, RetentionPurgesOldRunsAndTheirFiles) {
  config_.store.retention_days = 1;
  StartAgent();
  std::string id = Submit("write", Json{{"text", "old"}});
  ASSERT_TRUE(WaitForState(id, RunState::kCompleted));
  ASSERT_TRUE(std::filesystem::exists(dir_ / "runs" / id));

  clock_.Advance(std::chrono::hours(48));

  EXPECT_TRUE(testing::WaitUntil([&] {
    auto run = store_->Get(id);
    return !run && run.error().code == Errc::kNotFound;
  }));
  EXPECT_TRUE(testing::WaitUntil([&] { return !std::filesystem::exists(dir_ / "runs" / id); }));
}

TEST_F(AgentTest, StartRejectsAnUnknownConnector) {
  config_.task_types["odd"] = MakeType("odd", "nope");
  Agent agent(AgentDeps{*store_, config_, registry_, clock_});

  auto started = agent.Start();

  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(started.error().message, HasSubstr("nope"));
}

TEST_F(AgentTest, StableIdComesFromTheDataDir) {
  config_.agent.id = "";
  StartAgent();
  std::string first = agent_->id();
  agent_.reset();

  StartAgent();

  EXPECT_FALSE(first.empty());
  EXPECT_EQ(agent_->id(), first);
}

}  // namespace
}  // namespace gpuq::agent
