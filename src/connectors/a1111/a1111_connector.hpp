#pragma once
// `a1111`: txt2img and img2img on an AUTOMATIC1111 stable-diffusion-webui started with --api
// (protocols.md section 2), at ctx.service_url.
//
// Payload (a JSON object; any other key is a 422):
//   {"mode": "txt2img" | "img2img",            // default: the task type's `mode` setting
//    "params": {<A1111 request fields: prompt, steps, width, seed, sampler_name, ...>},
//    "init_image": "<base64, or a data:image/...;base64, URL>"
//                | {"run": "<parent run id>", "file": "<path inside that run's dir>"}}
// img2img needs an init image: `init_image`, or `params.init_images` as A1111 takes it.
// Validate (422): a bad mode, params that are not an object, img2img without an init image, an
// init image with txt2img, base64 that does not decode, a parent file reference that is absolute
// or leaves the parent's run dir.
//
// Settings ([task_types.NAME]): `mode` ("txt2img" default | "img2img"), `progress_interval_ms`
// (how often /sdapi/v1/progress is polled, 50..60000, default 250), `params` (an object of
// defaults under the payload's params, e.g. {"steps": 30, "sampler_name": "DPM++ 2M"}).
//
// Execute: POSTs /sdapi/v1/<mode> with force_task_id "task(gpuq-<run id>)" and send_images, and
// while that call blocks polls /sdapi/v1/progress on a second connection, reporting progress only
// while `current_task` is ours (A1111's progress is global: another job may be running). Every
// returned image is decoded into <run_dir>/image-<n>.png (.jpg/.webp when A1111 sends those);
// the grid A1111 puts first for batches is kept as a file too but named in result.grid.
// Outcome.result: {"images": [paths relative to data_dir], "grid": path|null, "seed",
// "all_seeds", "info": <the decoded `info` JSON>, "task_id"}. Outcome.files: every file.
//
// Errors: no service URL, or a parent run file that is missing -> kInvalidArgument; refused or
// reset connection, 502/503/504 -> kUnavailable (retried); an HTTP error -> kInvalidArgument with
// A1111's own words (its detail/errors/error fields); a reply that is not the expected JSON, or
// images that do not decode, or no images at all -> kInvalidArgument; silence past the run's
// timeout -> kTimeout. ctx.stop -> /sdapi/v1/interrupt is posted (only when our job is the one
// running: interrupting is global) and kUnavailable "a1111 run stopped" comes back within a
// second. One line per request and per state change goes to the attempt's log.
// Thread-safe: one instance serves every worker.
#include "connectors/connector.hpp"

namespace gpuq::connectors {

class A1111Connector final : public Connector {
 public:
  explicit A1111Connector(ConnectorOptions options = {});

  Result<void> Validate(const TaskType& type, const Json& payload) const override;
  std::vector<SettingProblem> CheckSettings(const TaskType& type) const override;
  Result<Outcome> Execute(RunContext& ctx) override;

 private:
  ConnectorOptions options_;
};

}  // namespace gpuq::connectors
