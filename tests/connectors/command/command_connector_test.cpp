#include "connectors/command/command_connector.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <future>

#include "connectors/run_fixture.hpp"
#include "support/child_process.hpp"
#include "support/wait.hpp"

namespace gpuq::connectors {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

TaskType CommandType(std::vector<std::string> argv, std::map<std::string, std::string> env = {}) {
  return MakeType("render", "command", std::move(argv), std::move(env));
}

TaskType GenericType() { return MakeType("command", "command"); }

TaskType ShellType(const std::string& script) { return CommandType({"/bin/sh", "-c", script}); }

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

bool Alive(pid_t pid) { return gpuq::testing::ProcessAlive(pid); }

pid_t WaitForPidFile(const std::filesystem::path& file) {
  pid_t pid = 0;
  EXPECT_TRUE(testing::WaitUntil([&] {
    std::ifstream in(file);
    return static_cast<bool>(in >> pid) && pid > 0;
  })) << file;
  return pid;
}

TEST(CommandConnector, FillsArgvPlaceholdersFromThePayload) {
  RunFixture fixture(Json{{"text", "hello world"}, {"n", 3}},
                     CommandType({"/bin/echo", "{{text}}", "n={{n}}"}));
  CommandConnector command;

  auto outcome = fixture.Execute(command);

  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(outcome.value().result, (Json{{"exit_code", 0}}));
  EXPECT_EQ(fixture.Log(), "hello world n=3\n");
}

TEST(CommandConnector, LooksUpBareProgramNamesInPath) {
  RunFixture fixture(Json{{"text", "hi"}}, CommandType({"echo", "{{text}}"}));
  CommandConnector command;

  auto outcome = fixture.Execute(command);

  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(fixture.Log(), "hi\n");
}

TEST(CommandConnector, BuiltinNamesAndEnvironmentAreSet) {
  RunFixture fixture(Json{{"who", "x"}},
                     CommandType({"/bin/sh", "-c",
                                  "echo \"$GPUQ_RUN_ID $GPUQ_RUN_DIR $GREETING $(pwd)\"; "
                                  "echo {{run_id}} {{attempt}} {{payload}}"},
                                 {{"GREETING", "hi-{{who}}"}}));
  CommandConnector command;

  auto outcome = fixture.Execute(command);

  ASSERT_TRUE(outcome) << outcome.error().message;
  std::string dir = fixture.run_dir().string();
  EXPECT_EQ(fixture.Log(), fmt::format("{} {} hi-x {}\n{} 1 {{who:x}}\n", fixture.run().id, dir,
                                       std::filesystem::canonical(dir).string(), fixture.run().id));
}

TEST(CommandConnector, GenericTypeRunsPayloadArgvAsIs) {
  RunFixture fixture(Json{{"argv", {"/bin/echo", "{{not_filled}}", "a b"}}}, GenericType());
  CommandConnector command;

  auto outcome = fixture.Execute(command);

  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(fixture.Log(), "{{not_filled}} a b\n");
}

TEST(CommandConnector, StdoutAndStderrGoToTheLog) {
  RunFixture fixture(Json::object(), ShellType("echo out; echo err >&2; echo out2"));
  CommandConnector command;

  ASSERT_TRUE(fixture.Execute(command));

  EXPECT_EQ(fixture.Log(), "out\nerr\nout2\n");
}

TEST(CommandConnector, ListsFilesWrittenIntoTheRunDirExceptLogs) {
  RunFixture fixture(Json::object(),
                     ShellType("echo a > out.txt; mkdir -p sub/deeper; echo b > sub/deeper/b.bin; "
                               "mkdir -p empty; echo c > logs/extra.log"));
  CommandConnector command;

  auto outcome = fixture.Execute(command);

  ASSERT_TRUE(outcome) << outcome.error().message;
  std::string prefix = "runs/" + fixture.run().id + "/";
  EXPECT_THAT(outcome.value().files, ElementsAre(prefix + "out.txt", prefix + "sub/deeper/b.bin"));
  EXPECT_EQ(ReadFile(fixture.run_dir() / "out.txt"), "a\n");
}

TEST(CommandConnector, NonZeroExitFailsWithCodeAndLastLine) {
  RunFixture fixture(Json::object(), ShellType("echo working; echo 'bad input' >&2; exit 3"));
  CommandConnector command;

  auto outcome = fixture.Execute(command);

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(outcome.error().message, "command exited with code 3: bad input");
}

TEST(CommandConnector, DeathBySignalSaysWhichSignal) {
  RunFixture fixture(Json::object(), ShellType("kill -USR1 $$"));
  CommandConnector command;

  auto outcome = fixture.Execute(command);

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(outcome.error().message, "command killed by signal SIGUSR1");
}

TEST(CommandConnector, MissingBinaryIsAClearError) {
  RunFixture fixture(Json::object(), CommandType({"/nonexistent/gpuq-tool", "x"}));
  CommandConnector command;

  auto outcome = fixture.Execute(command);

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(outcome.error().message,
            "cannot execute /nonexistent/gpuq-tool: No such file or directory");
  EXPECT_THAT(fixture.Log(), HasSubstr("cannot execute /nonexistent/gpuq-tool"));
}

TEST(CommandConnector, ProgressLinesBecomeProgress) {
  RunFixture fixture(Json::object(),
                     ShellType("echo 'GPUQ_PROGRESS 0.25 loading model'; echo plain; "
                               "echo 'GPUQ_PROGRESS 1'"));
  CommandConnector command;

  ASSERT_TRUE(fixture.Execute(command));

  auto progress = fixture.progress();
  ASSERT_EQ(progress.size(), 2u);
  EXPECT_DOUBLE_EQ(*progress[0].fraction, 0.25);
  EXPECT_EQ(progress[0].message, "loading model");
  EXPECT_DOUBLE_EQ(*progress[1].fraction, 1.0);
  EXPECT_EQ(progress[1].message, "");
}

TEST(CommandConnector, StopKillsTheWholeGroupIncludingAGrandchild) {
  RunFixture fixture(Json::object(), ShellType("sleep 300 & echo $! > grandchild.pid; sleep 300"));
  CommandConnector command;
  auto done = std::async(std::launch::async, [&] { return fixture.Execute(command); });
  pid_t grandchild = WaitForPidFile(fixture.run_dir() / "grandchild.pid");
  ASSERT_TRUE(Alive(grandchild));

  fixture.stop().request_stop();

  ASSERT_EQ(done.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  auto outcome = done.get();
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_TRUE(testing::WaitUntil([&] { return !Alive(grandchild); }));
}

TEST(CommandConnector, StopEscalatesToSigkillAfterTheGrace) {
  RunFixture fixture(Json::object(), ShellType("trap '' TERM; echo $$ > leader.pid; "
                                               "while true; do sleep 1; done"));
  CommandConnector command(Millis(200));
  auto done = std::async(std::launch::async, [&] { return fixture.Execute(command); });
  pid_t leader = WaitForPidFile(fixture.run_dir() / "leader.pid");

  fixture.stop().request_stop();

  ASSERT_EQ(done.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_FALSE(done.get());
  EXPECT_FALSE(Alive(leader));
}

TEST(CommandConnector, BackgroundProcessesDoNotOutliveTheCommand) {
  RunFixture fixture(Json::object(), ShellType("sleep 300 & echo $! > bg.pid"));
  CommandConnector command;

  auto outcome = fixture.Execute(command);

  ASSERT_TRUE(outcome) << outcome.error().message;
  pid_t bg = WaitForPidFile(fixture.run_dir() / "bg.pid");
  EXPECT_TRUE(testing::WaitUntil([&] { return !Alive(bg); }));
}

TEST(CommandConnector, StopBeforeStartReturnsPromptly) {
  RunFixture fixture(Json::object(), ShellType("sleep 300"));
  CommandConnector command;
  fixture.stop().request_stop();

  auto outcome = fixture.Execute(command);

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
}

TEST(CommandConnector, ValidateAcceptsResolvablePlaceholders) {
  CommandConnector command;
  TaskType type = CommandType({"tool", "{{text}}", "{{run_dir}}/out-{{attempt}}", "{{cfg.size}}"},
                              {{"MODE", "{{run_id}}-{{data_dir}}"}});

  auto valid = command.Validate(type, Json{{"text", "x"}, {"cfg", {{"size", 3}}}});

  EXPECT_TRUE(valid) << valid.error().message;
}

TEST(CommandConnector, ValidateNamesAMissingArgvPlaceholder) {
  CommandConnector command;

  auto valid = command.Validate(CommandType({"tool", "--in={{input}}"}), Json{{"text", "x"}});

  ASSERT_FALSE(valid);
  EXPECT_EQ(valid.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(valid.error().message, HasSubstr("input"));
}

TEST(CommandConnector, ValidateNamesAMissingEnvPlaceholder) {
  CommandConnector command;

  auto valid = command.Validate(CommandType({"tool"}, {{"KEY", "{{secret}}"}}), Json::object());

  ASSERT_FALSE(valid);
  EXPECT_EQ(valid.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(valid.error().message, HasSubstr("secret"));
  EXPECT_THAT(valid.error().message, HasSubstr("KEY"));
}

TEST(CommandConnector, ValidateGenericTypeNeedsPayloadArgv) {
  CommandConnector command;

  for (const Json& payload :
       {Json::object(), Json{{"argv", Json::array()}}, Json{{"argv", "echo hi"}},
        Json{{"argv", {"echo", 3}}}, Json{{"argv", {""}}}, Json::array()}) {
    auto valid = command.Validate(GenericType(), payload);
    ASSERT_FALSE(valid) << payload.dump();
    EXPECT_EQ(valid.error().code, Errc::kInvalidArgument);
  }
  EXPECT_TRUE(command.Validate(GenericType(), Json{{"argv", {"echo", "hi"}}}));
}

}  // namespace
}  // namespace gpuq::connectors
