// core::ToJson(Run) + dump: what every GET /task_status and every /runs row pays.
#include <string>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include "core/run.hpp"

namespace {

gpuq::Run TypicalRun() {
  gpuq::Run run;
  run.id = "6f1c2a9e-1b7d-4c1e-9a53-0d6f1f0e2b11";
  run.type = "comfyui";
  run.priority = 50;
  run.state = gpuq::RunState::kCompleted;
  run.payload = {{"template", "txt2img"}, {"prompt", "a red fox in the snow"}, {"seed", 42}};
  run.result = {{"images", {"runs/6f1c2a9e-1b7d-4c1e-9a53-0d6f1f0e2b11/out_00001.png"}}};
  run.attempts = 1;
  run.progress.fraction = 1.0;
  run.progress.message = "done";
  run.worker = "host-a/gpu0";
  run.gpu = "host-a:0";
  run.created_at = gpuq::FromMillis(1'790'000'000'123);
  run.started_at = gpuq::FromMillis(1'790'000'001'456);
  run.finished_at = gpuq::FromMillis(1'790'000'009'789);
  run.files = {"runs/6f1c2a9e-1b7d-4c1e-9a53-0d6f1f0e2b11/out_00001.png"};
  return run;
}

void BM_RunToJsonDump(benchmark::State& state) {
  const gpuq::Run run = TypicalRun();
  for (auto _ : state) {
    std::string text = gpuq::ToJson(run).dump();
    benchmark::DoNotOptimize(text);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RunToJsonDump);

void BM_EchoRunToJsonDump(benchmark::State& state) {
  gpuq::Run run;
  run.id = "6f1c2a9e-1b7d-4c1e-9a53-0d6f1f0e2b11";
  run.type = "echo";
  run.payload = {{"i", 12345}};
  run.created_at = gpuq::FromMillis(1'790'000'000'123);
  for (auto _ : state) {
    std::string text = gpuq::ToJson(run).dump();
    benchmark::DoNotOptimize(text);
  }
}
BENCHMARK(BM_EchoRunToJsonDump);

}  // namespace
