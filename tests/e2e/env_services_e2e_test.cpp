// The notes' environment variables end to end: with COMFYUI_URL (or COSYVOICE_URL) pointing at
// a running server and no config at all beyond the basics, its task type runs through it as an
// external service (health-checked, never started or stopped), on a machine without a GPU.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "connectors/fake_service.hpp"
#include "e2e/daemon.hpp"

namespace gpuq::e2e {
namespace {

using connectors::FakeService;

// A whole API-format graph, no template needed.
constexpr const char* kWorkflow = R"({"workflow": {
  "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
  "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
  "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
  "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 2, "cfg": 7, "sampler_name": "euler",
        "scheduler": "normal", "denoise": 1, "model": ["4", 0], "positive": ["6", 0],
        "negative": ["6", 0], "latent_image": ["5", 0]}},
  "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
  "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "env", "images": ["8", 0]}}}})";

TEST(EnvServicesEndToEnd, ComfyUiUrlAloneMakesTheComfyuiTypeRunOnThatServer) {
  FakeService comfy({"--personality", "comfyui", "--work-ms", "10"});
  ASSERT_TRUE(comfy.healthy()) << comfy.Output();
  Cluster c;  // no services, no task types beyond echo and command, no GPU
  auto server = c.StartServerWith(c.dir() / "gpuq.toml", {}, {{"COMFYUI_URL", comfy.url()}});

  auto r = c.Cli({"submit", "comfyui", "--payload", kWorkflow, "--wait", "--json"});

  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto run = r.Json();
  EXPECT_EQ(run["status"], "completed");
  ASSERT_FALSE(run["files"].empty()) << run.dump(2);
  EXPECT_TRUE(std::filesystem::is_regular_file(c.data_dir() / run["files"][0].get<std::string>()));
  EXPECT_THAT(comfy.Output(), ::testing::HasSubstr("comfyui queued prompt="));
  // The service is external: reported ready, and gpuq never stops it.
  auto status = c.Cli({"gpu", "status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.output;
  EXPECT_EQ(status.Json()["services"]["comfyui"]["state"], "ready") << status.output;
}

TEST(EnvServicesEndToEnd, CosyVoiceUrlAloneMakesTheCosyvoiceTypeRunOnThatServer) {
  FakeService tts({"--personality", "cosyvoice", "--work-ms", "10"});
  ASSERT_TRUE(tts.healthy()) << tts.Output();
  Cluster c;
  // The notes' asset root: reference voices in its voices/, an output_path under it.
  std::filesystem::path assets = c.dir() / "assets";
  std::filesystem::create_directories(assets / "voices");
  for (const char* file : {"luna.wav", "luna.txt"}) {
    std::filesystem::copy_file(std::filesystem::path(GPUQ_SOURCE_DIR) / "examples/voices" / file,
                               assets / "voices" / file);
  }
  auto server = c.StartServerWith(c.dir() / "gpuq.toml", {},
                                  {{"COSYVOICE_URL", tts.url()}, {"ASSET_PATH", assets.string()}});

  auto r = c.Cli({"submit", "cosyvoice", "--param", "text=Hello there.", "--param",
                  "voice_id=luna", "--param", "mode=clone", "--param",
                  "output_path=" + (assets / "audio/hello.wav").string(), "--wait", "--json"});

  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.Json()["status"], "completed");
  EXPECT_GT(r.Json()["result"]["duration_s"].get<double>(), 0.0);
  EXPECT_GT(std::filesystem::file_size(assets / "audio/hello.wav"), 44u);
  // Outside the asset root is refused at submit.
  auto outside = c.Cli({"submit", "cosyvoice", "--param", "text=Hi.", "--param", "voice_id=luna",
                        "--param", "output_path=/etc/hello.wav"});
  EXPECT_EQ(outside.exit_code, 2) << outside.output;
}

}  // namespace
}  // namespace gpuq::e2e
