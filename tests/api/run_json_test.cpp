#include "api/run_json.hpp"

#include <gtest/gtest.h>

namespace gpuq::api {
namespace {

std::string Written(const gpuq::Run& run) {
  std::string out;
  AppendRunJson(run, out);
  return out;
}

TEST(AppendRunJson, SpellsAFreshRunExactlyAsToJson) {
  gpuq::Run run;
  run.id = "0b9a4b8e-4a52-4c39-9f5e-2f0f3c0a1b2c";
  run.type = "echo";
  run.created_at = FromMillis(1'790'000'000'123);

  EXPECT_EQ(Written(run), ToJson(run).dump());
}

TEST(AppendRunJson, SpellsEveryFieldExactlyAsToJson) {
  gpuq::Run run;
  run.id = "0b9a4b8e-4a52-4c39-9f5e-2f0f3c0a1b2c";
  run.type = "comfyui";
  run.priority = -3;
  run.state = RunState::kFailed;
  run.payload = Json::parse(R"({"prompt": "a \"cat\"\n\t\u0001 ünïcode", "n": [1, 2.5, null]})");
  run.result = Json::parse(R"({"images": ["a.png"]})");
  run.error = "boom\\ \"quoted\" \x7f";
  run.parent_run_id = "1b9a4b8e-4a52-4c39-9f5e-2f0f3c0a1b2c";
  run.depends_on = {"x", "y"};
  run.attempts = 2;
  run.max_attempts = 5;
  run.timeout_s = 60;
  run.progress = Progress{0.4, "node 3 step 8/20"};
  run.waiting_reason = "vram ünavailable";
  run.worker = "host-a/gpu0";
  run.gpu = "host-a:0";
  run.created_at = FromMillis(1'790'000'000'123);
  run.started_at = FromMillis(1'790'000'001'000);
  run.finished_at = FromMillis(1'790'000'002'999);
  run.cancel_requested = true;
  run.files = {"runs/x/out.png", "runs/x/b c.wav"};

  EXPECT_EQ(Written(run), ToJson(run).dump());
}

TEST(AppendRunJson, WholeProgressFractionStaysAFloat) {
  gpuq::Run run;
  run.progress.fraction = 1.0;

  EXPECT_EQ(Written(run), ToJson(run).dump());
}

TEST(AppendRunJson, InvalidUtf8IsReplacedNotThrown) {
  gpuq::Run run;
  run.error = "bad \xff byte";

  Json parsed = Json::parse(Written(run));

  EXPECT_TRUE(parsed["error"].is_string());
}

}  // namespace
}  // namespace gpuq::api
