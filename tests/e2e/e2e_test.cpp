// End to end: the real `gpuq` binary as daemon, agents and CLI, talking over real sockets to
// one SQLite file.
#include <signal.h>

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "e2e/daemon.hpp"
#include "support/wait.hpp"

namespace gpuq::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Command types that mark each attempt in their run dir. `slow` sleeps {{secs}} and writes
// an output file; `stuck_once` hangs on its first attempt and finishes on the next.
constexpr const char* kSlowType = R"(
[task_types.slow]
connector = "command"
argv = ["/bin/sh", "-c", "echo attempt >> attempts.txt; sleep \"$1\"; echo done > out.txt; echo finished", "sh", "{{secs}}"]
max_attempts = 3
)"
R"(
[task_types.stuck_once]
connector = "command"
argv = ["/bin/sh", "-c", "echo attempt >> attempts.txt; if [ $(wc -l < attempts.txt) -lt 2 ]; then exec sleep 300; fi; echo done > out.txt"]
max_attempts = 3
)";

std::string Submit(const Cluster& c, std::vector<std::string> args) {
  args.insert(args.begin(), "submit");
  args.push_back("--json");
  auto r = c.Cli(args);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.Json().value("task_id", "");
}

int CountLines(const std::filesystem::path& file) {
  std::ifstream in(file);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

TEST(EndToEnd, SubmitWaitRunsACommandAndFetchesItsFiles) {
  Cluster c(kSlowType);
  auto server = c.StartServer();

  auto r = c.Cli({"submit", "slow", "--param", "secs:=0", "--wait", "--json"});

  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto run = r.Json();
  EXPECT_EQ(run["status"], "completed");
  EXPECT_EQ(run["result"]["exit_code"], 0);
  std::string id = run["id"];
  EXPECT_THAT(run["files"].dump(), HasSubstr("runs/" + id + "/out.txt"));
  auto fetched = c.Cli({"fetch", id, "--out", (c.dir() / "fetched").string()});
  ASSERT_EQ(fetched.exit_code, 0) << fetched.output;
  std::ifstream out(c.dir() / "fetched" / "out.txt");
  std::string text;
  std::getline(out, text);
  EXPECT_EQ(text, "done");
  auto logs = c.Cli({"logs", id});
  EXPECT_EQ(logs.exit_code, 0);
  EXPECT_THAT(logs.output, HasSubstr("finished"));
}

TEST(EndToEnd, WaitExitsNonZeroWhenTheRunFails) {
  Cluster c;
  auto server = c.StartServer();

  auto r = c.Cli({"submit", "command", "--payload", R"({"argv": ["/bin/false"]})", "--wait"});

  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("failed"));
}

TEST(EndToEnd, CancelStopsAProcessingRun) {
  Cluster c(kSlowType);
  auto server = c.StartServer();
  std::string id = Submit(c, {"slow", "--param", "secs:=300"});
  ASSERT_TRUE(c.WaitForStatus(id, "processing"));

  auto r = c.Cli({"cancel", id});

  EXPECT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(c.WaitForStatus(id, "cancelled"));
  EXPECT_EQ(c.Cli({"cancel", id}).exit_code, 4) << "cancelling a finished run is a conflict";
}

TEST(EndToEnd, LogsFollowShowsLinesWhileTheRunIsStillGoing) {
  Cluster c(kSlowType);
  auto server = c.StartServer();
  std::string id = Submit(c, {"slow", "--param", "secs:=300"});
  ASSERT_TRUE(c.WaitForStatus(id, "processing"));
  std::ofstream(c.data_dir() / "runs" / id / "logs" / "attempt-1.log", std::ios::app)
      << "a line written mid-run\n";

  testing::ChildProcess follow({testing::GpuqBinary().string(), "logs", id, "-f", "--server",
                                c.server_url()},
                               c.dir() / "follow.out");

  EXPECT_TRUE(testing::WaitUntil(
      [&] { return follow.Output().find("a line written mid-run") != std::string::npos; }))
      << follow.Output();
  EXPECT_TRUE(follow.Running()) << "follow must keep going while the run does";
  ASSERT_EQ(c.Cli({"cancel", id}).exit_code, 0);
  auto code = follow.Wait(std::chrono::seconds(60));
  ASSERT_TRUE(code.has_value()) << "follow must end when the run ends";
  EXPECT_EQ(*code, 0);
}

TEST(EndToEnd, RunOfAKilledAgentCompletesExactlyOnceOnAnother) {
  Cluster c(kSlowType);
  auto api = c.StartServer(/*no_agent=*/true);
  auto first = c.StartAgent("agent-a");
  // Its first attempt hangs, its second finishes: no timing decides the outcome.
  std::string id = Submit(c, {"stuck_once"});
  auto marks = c.data_dir() / "runs" / id / "attempts.txt";
  ASSERT_TRUE(testing::WaitUntil([&] { return CountLines(marks) == 1; }));

  first->Signal(SIGKILL);
  first->Wait();
  auto second = c.StartAgent("agent-b");

  ASSERT_TRUE(c.WaitForStatus(id, "completed"));
  auto run = c.Status(id);
  EXPECT_EQ(run["attempts"], 2);
  EXPECT_THAT(run["worker"].get<std::string>(), StartsWith("agent-b/"));
  EXPECT_EQ(CountLines(marks), 2);
}

TEST(EndToEnd, TaskAcceptedByAKilledApiOnlyServerCompletesWhenAnAgentStarts) {
  Cluster c(kSlowType);
  std::string id;
  {
    auto api = c.StartServer(/*no_agent=*/true);
    id = Submit(c, {"slow", "--param", "secs:=0"});
    api->Signal(SIGKILL);
    api->Wait();
  }

  auto server = c.StartServer(/*no_agent=*/false);

  ASSERT_TRUE(c.WaitForStatus(id, "completed"));
}

TEST(EndToEnd, SigtermDrainGivesARunningTaskBackAndNothingIsLost) {
  Cluster c(kSlowType);
  std::string id;
  {
    auto server = c.StartServer(false, "drainer");
    id = Submit(c, {"slow", "--param", "secs:=60"});
    ASSERT_TRUE(c.WaitForStatus(id, "processing"));

    server->Signal(SIGTERM);
    auto code = server->Wait(std::chrono::seconds(60));
    ASSERT_TRUE(code.has_value()) << "serve did not exit after SIGTERM";
    EXPECT_EQ(*code, 0) << server->Output();
  }
  auto api = c.StartServer(/*no_agent=*/true);

  auto run = c.Status(id);
  EXPECT_EQ(run["status"], "pending") << run.dump();
  EXPECT_EQ(run["attempts"], 0) << "a drained attempt is not counted";
}

TEST(EndToEnd, CliErrorsNameTheProblemAndExitNonZero) {
  Cluster c("[server]\ntoken = \"s3cret\"\n");
  std::filesystem::remove(c.dir() / "gpuq.toml");
  int port = c.port();
  std::ofstream(c.dir() / "gpuq.toml") << "data_dir = \"data\"\n[server]\nlisten = \"127.0.0.1:"
                                       << port << "\"\ntoken = \"s3cret\"\n";
  auto server = c.StartServer();

  auto no_token = c.Cli({"runs"});
  auto unknown = c.Cli({"status", "00000000-0000-4000-8000-000000000000", "--token", "s3cret"});
  auto bad_type = c.Cli({"--token", "s3cret", "submit", "teleport"});

  EXPECT_EQ(no_token.exit_code, 6) << no_token.output;
  EXPECT_THAT(no_token.output, HasSubstr("token"));
  EXPECT_EQ(unknown.exit_code, 3) << unknown.output;
  EXPECT_THAT(unknown.output, HasSubstr("00000000-0000-4000-8000-000000000000"));
  EXPECT_EQ(bad_type.exit_code, 2) << bad_type.output;
  EXPECT_THAT(bad_type.output, HasSubstr("teleport"));
}

TEST(EndToEnd, ServerDownIsAClearError) {
  Cluster c;

  auto r = c.Cli({"runs"});

  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_THAT(r.output, HasSubstr("cannot reach gpuq server"));
}

TEST(EndToEnd, CheckConfigReportsEveryProblem) {
  Cluster c;
  std::ofstream(c.dir() / "bad.toml") << "[server]\nlisten = \"x\"\n[task_types.t]\nconnector = \"nope\"\n";

  auto bad = c.Cli({"check-config", (c.dir() / "bad.toml").string()});
  auto good = c.Cli({"check-config", (c.dir() / "gpuq.toml").string()});

  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.output, HasSubstr("server.listen"));
  EXPECT_THAT(bad.output, HasSubstr("task_types.t.connector"));
  EXPECT_EQ(good.exit_code, 0) << good.output;
}

TEST(EndToEnd, RunsListsAnAlignedTableAndVersionPrints) {
  Cluster c;
  auto server = c.StartServer();
  std::string id = Submit(c, {"echo", "--param", "x=1"});
  ASSERT_TRUE(c.WaitForStatus(id, "completed"));

  auto table = c.Cli({"runs", "--type", "echo"});
  auto version = c.Cli({"--version"});

  EXPECT_EQ(table.exit_code, 0);
  EXPECT_THAT(table.output, HasSubstr("ID"));
  EXPECT_THAT(table.output, HasSubstr(id));
  EXPECT_THAT(version.output, HasSubstr("gpuq 0.1.0"));
}

}  // namespace
}  // namespace gpuq::e2e
