// FillTemplate on a ComfyUI-workflow-sized template: what every submit of a templated task pays.
#include <string>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include "core/placeholder.hpp"

namespace {

using Json = nlohmann::json;

// About the shape of a txt2img workflow in ComfyUI's API format: ~40 nodes, a few strings
// each, 6 placeholders (two typed, four inside longer strings).
Json WorkflowTemplate() {
  Json workflow = Json::object();
  for (int node = 1; node <= 40; ++node) {
    Json inputs = {{"seed", node * 7919},
                   {"steps", 20},
                   {"cfg", 7.5},
                   {"sampler_name", "euler"},
                   {"scheduler", "normal"},
                   {"denoise", 1.0},
                   {"model", Json::array({std::to_string(node - 1), 0})}};
    workflow[std::to_string(node)] = {{"class_type", "KSampler"}, {"inputs", inputs}};
  }
  workflow["3"]["inputs"]["seed"] = "{{seed}}";
  workflow["3"]["inputs"]["steps"] = "{{steps}}";
  workflow["6"]["inputs"]["text"] = "a photo of {{prompt}}, highly detailed";
  workflow["7"]["inputs"]["text"] = "blurry, {{negative}}";
  workflow["9"]["inputs"]["filename_prefix"] = "gpuq/{{run_id}}/out";
  workflow["10"]["inputs"]["image"] = "{{{{literal}}}} {{input.image}}";
  return workflow;
}

Json Values() {
  return {{"seed", 42},
          {"steps", 30},
          {"prompt", "a red fox in the snow"},
          {"negative", "low quality"},
          {"run_id", "6f1c2a9e-1b7d-4c1e-9a53-0d6f1f0e2b11"},
          {"input", {{"image", "inputs/fox.png"}}}};
}

void BM_FillTemplateWorkflow(benchmark::State& state) {
  const Json tmpl = WorkflowTemplate();
  const Json values = Values();
  for (auto _ : state) {
    auto filled = gpuq::FillTemplate(tmpl, values);
    benchmark::DoNotOptimize(filled);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FillTemplateWorkflow);

void BM_FillStringInText(benchmark::State& state) {
  const Json values = Values();
  for (auto _ : state) {
    auto filled = gpuq::FillString("a photo of {{prompt}}, seed {{seed}}", values);
    benchmark::DoNotOptimize(filled);
  }
}
BENCHMARK(BM_FillStringInText);

}  // namespace
