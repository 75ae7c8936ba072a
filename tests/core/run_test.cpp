#include "core/run.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <utility>

namespace gpuq {
namespace {

using S = RunState;

constexpr RunState kAll[] = {S::kWaiting,   S::kPending, S::kProcessing,
                             S::kCompleted, S::kFailed,  S::kCancelled};

TEST(RunState, CanTransitionMatchesTheLifeCycleForEveryPair) {
  // DESIGN.md "A run's life" and run.hpp: the only legal moves.
  const std::set<std::pair<RunState, RunState>> legal = {
      {S::kWaiting, S::kPending},      {S::kWaiting, S::kFailed},    {S::kWaiting, S::kCancelled},
      {S::kPending, S::kProcessing},   {S::kPending, S::kCancelled}, {S::kPending, S::kFailed},
      {S::kProcessing, S::kCompleted}, {S::kProcessing, S::kFailed}, {S::kProcessing, S::kPending},
      {S::kProcessing, S::kCancelled}, {S::kFailed, S::kPending},    {S::kCancelled, S::kPending},
  };

  for (RunState from : kAll) {
    for (RunState to : kAll) {
      EXPECT_EQ(CanTransition(from, to), legal.count({from, to}) == 1)
          << ToString(from) << " -> " << ToString(to);
    }
  }
}

TEST(RunState, WordsRoundTrip) {
  for (RunState s : kAll) {
    auto parsed = ParseRunState(ToString(s));
    ASSERT_TRUE(parsed.has_value()) << ToString(s);
    EXPECT_EQ(*parsed, s);
  }
}

TEST(RunState, WordsAreTheNotesWords) {
  EXPECT_STREQ(ToString(S::kWaiting), "waiting");
  EXPECT_STREQ(ToString(S::kPending), "pending");
  EXPECT_STREQ(ToString(S::kProcessing), "processing");
  EXPECT_STREQ(ToString(S::kCompleted), "completed");
  EXPECT_STREQ(ToString(S::kFailed), "failed");
  EXPECT_STREQ(ToString(S::kCancelled), "cancelled");
}

TEST(RunState, UnknownWordsDoNotParse) {
  EXPECT_FALSE(ParseRunState("running"));
  EXPECT_FALSE(ParseRunState("queued"));
  EXPECT_FALSE(ParseRunState(""));
  EXPECT_FALSE(ParseRunState("Pending"));
}

TEST(RunState, FinishedStates) {
  for (RunState s : kAll) {
    bool finished = s == S::kCompleted || s == S::kFailed || s == S::kCancelled;
    EXPECT_EQ(IsFinished(s), finished) << ToString(s);
  }
}

TEST(RunJson, ToJsonHasEveryDesignField) {
  gpuq::Run run;
  run.id = "8c1e7a52-9a4b-4c1e-9a52-8c1e7a529a4b";
  run.type = "echo";
  run.state = S::kProcessing;
  run.payload = {{"x", 1}};
  run.attempts = 1;
  run.progress = Progress{0.4, "step 8/20"};
  run.worker = "host-a/cpu0";
  run.created_at = FromMillis(1'790'000'000'123);
  run.started_at = FromMillis(1'790'000'001'000);
  run.files = {"runs/" + run.id + "/out.png"};

  Json j = ToJson(run);

  for (const char* field :
       {"task_id",    "id",          "type",           "priority",   "status",   "payload",
        "result",     "error",       "parent_run_id",  "depends_on", "attempts", "max_attempts",
        "timeout_s",  "progress",    "waiting_reason", "worker",     "gpu",      "created_at",
        "started_at", "finished_at", "log_path",       "files"}) {
    EXPECT_TRUE(j.contains(field)) << field;
  }
  EXPECT_EQ(j["task_id"], run.id);
  EXPECT_EQ(j["id"], run.id);
  EXPECT_EQ(j["status"], "processing");
  EXPECT_EQ(j["payload"], (Json{{"x", 1}}));
  EXPECT_TRUE(j["result"].is_null());
  EXPECT_TRUE(j["error"].is_null());
  EXPECT_TRUE(j["parent_run_id"].is_null());
  EXPECT_TRUE(j["depends_on"].is_array());
  EXPECT_EQ(j["progress"]["fraction"], 0.4);
  EXPECT_EQ(j["progress"]["message"], "step 8/20");
  EXPECT_EQ(j["worker"], "host-a/cpu0");
  EXPECT_TRUE(j["gpu"].is_null());
  EXPECT_EQ(j["created_at"], "2026-09-21T14:13:20.123Z");
  EXPECT_TRUE(j["finished_at"].is_null());
  EXPECT_EQ(j["log_path"], "runs/" + run.id + "/logs/attempt-1.log");
  EXPECT_EQ(j["files"], Json(std::vector<std::string>{"runs/" + run.id + "/out.png"}));
}

TEST(RunJson, ToJsonOfAFreshRunHasNullLogPathAndProgressFraction) {
  gpuq::Run run;
  run.id = "id";

  Json j = ToJson(run);

  EXPECT_TRUE(j["log_path"].is_null());
  EXPECT_TRUE(j["progress"]["fraction"].is_null());
  EXPECT_EQ(j["status"], "pending");
}

TEST(RunJson, LogPathNamesTheAttempt) {
  EXPECT_EQ(LogPath("abc", 3), "runs/abc/logs/attempt-3.log");
}

TEST(RunJson, RetryBackoffDoublesFromTwoSecondsUpToFiveMinutes) {
  EXPECT_EQ(RetryBackoff(1), Millis(2'000));
  EXPECT_EQ(RetryBackoff(2), Millis(4'000));
  EXPECT_EQ(RetryBackoff(3), Millis(8'000));
  EXPECT_EQ(RetryBackoff(8), Millis(256'000));
  EXPECT_EQ(RetryBackoff(9), Millis(300'000));
  EXPECT_EQ(RetryBackoff(100), Millis(300'000));
  EXPECT_EQ(RetryBackoff(0), Millis(2'000));
  EXPECT_EQ(RetryBackoff(-5), Millis(2'000));
}

}  // namespace
}  // namespace gpuq
