// The demo config end to end: `gpuq serve --config examples/demo.toml` (on this test's port and
// data dir), one task of each protocol through `gpuq submit --wait`, each against its fake
// server speaking the real protocol, outputs on disk in the run dir and fetched with
// `gpuq fetch`. The container type needs a Docker engine: demo_docker_e2e_test.cpp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "e2e/demo.hpp"
#include "support/wait.hpp"

namespace gpuq::e2e {
namespace {

using ::testing::HasSubstr;

TEST(DemoEndToEnd, OneTaskOfEachProtocolRunsAndItsOutputsAreFetched) {
  Cluster c;
  auto server = c.StartServerWith(DemoConfig(c.dir()));

  // comfyui (20000 MB), then a1111 (6000 MB: comfyui goes), cosyvoice beside it, then the LLM
  // (18000 MB: a1111 goes, after ollama's keep_alive-0 unload on the way out of nothing).
  auto comfy = SubmitAndFetch(c, "comfyui",
                              {"--param", "template=flux_dev", "--param",
                               R"(params:={"POSITIVE_PROMPT":"a \"red\" fox","SEED":7,"STEPS":3})"},
                              {".png"});
  EXPECT_EQ(comfy["result"]["status"], "success");

  auto sd = SubmitAndFetch(c, "a1111", {"--param", R"(params:={"prompt":"a lighthouse","steps":3})"},
                           {".png"});
  EXPECT_TRUE(sd["result"]["info"].is_object());

  auto tts = SubmitAndFetch(c, "cosyvoice",
                            {"--param", "text=Hello there. This is Luna.", "--param",
                             "voice_id=luna", "--param", "mode=clone"},
                            {".wav"});
  EXPECT_GT(tts["result"]["duration_s"].get<double>(), 0.0);

  auto llm = SubmitAndFetch(c, "llm", {"--param", "prompt=Write a haiku about GPUs"}, {".txt"});
  EXPECT_FALSE(llm["result"]["response"].get<std::string>().empty());
  EXPECT_GT(llm["result"]["eval_count"].get<int>(), 0);

  auto video = SubmitAndFetch(
      c, "remotion_render",
      {"--payload",
       R"({"timeline":{"width":1080,"height":1920,"fps":30,"durationInFrames":12,"clips":[]}})"},
      {".mp4"});
  EXPECT_EQ(video["result"]["frames"], 12);

  // Every service ran on the simulated GPU; ollama is resident now, a1111 and comfyui were
  // evicted for it or for each other.
  auto status = c.Cli({"gpu", "status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.output;
  EXPECT_EQ(status.Json()["gpus"][0]["services"]["ollama"]["state"], "ready");
  EXPECT_EQ(status.Json()["gpus"][0]["services"]["comfyui"]["state"], "stopped");
}

TEST(DemoEndToEnd, ProtocolErrorsFailTheRunWithTheServersWords) {
  Cluster c;
  auto server = c.StartServerWith(DemoConfig(c.dir()));

  // A placeholder the template needs and the payload lacks: 422 at submit, nothing queued.
  auto missing = c.Cli({"submit", "comfyui", "--param", "template=flux_dev"});
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_THAT(missing.output, HasSubstr("missing value for placeholder"));

  // An unknown model: Ollama's 404 fails the run for good.
  auto r = c.Cli({"submit", "llm", "--param", "prompt=hi", "--param", "model=nope:1b", "--wait",
                  "--json"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.Json()["status"], "failed");
  EXPECT_THAT(r.Json()["error"].dump(), HasSubstr("not found"));
}

}  // namespace
}  // namespace gpuq::e2e
