#pragma once
// `comfyui`: runs one API-format workflow on the ComfyUI instance at ctx.service_url
// (docs/protocols.md section 1).
//
// Settings ([task_types.NAME]): `templates_dir` (a folder of API-format JSON workflows,
// <name>.json; without it only inline workflows are accepted).
//
// Payload (a JSON object), one of:
//   {"template": "<name>", "params": {...}}      the notes' shape: <templates_dir>/<name>.json
//   {"workflow": {<API-format graph>}, "params"?: {...}}
// Other top-level keys with scalar values ("prompt": "a cat") are params too, under their own
// name and upper-cased ({{prompt}} and {{PROMPT}}), unless params names them. "run_id" is the
// run's id. Optional "images": {"NAME": "<base64>" | {"run": "<run id>", "file": "<path in
// that run's dir>"}}: each is uploaded (POST /upload/image) and {{NAME}} becomes the name
// ComfyUI returned. The graph is filled with core/placeholder.hpp's grammar (a string that is
// exactly one placeholder keeps the value's JSON type).
// Validate (422): not an object, neither or both of template/workflow, an unknown template,
// a placeholder without a value, a graph that is not API format, a bad image entry.
//
// Execute: opens /ws?clientId=gpuq-<run id> first, POSTs /prompt with a fresh prompt_id,
// follows that prompt's events (progress: "node 3 KSampler 12/20"), and at the first of
// execution_success / execution_error / execution_interrupted / executing{node:null} reads
// GET /history/{prompt_id}, the authority. Every output entry with a filename and type is
// downloaded through /view into ctx.run_dir (<subfolder>/<filename>; temp/input files under
// <type>/). Outcome.result: {prompt_id, status, outputs: {node: [files]}, files: [...]}.
// A WebSocket that drops is reconnected while /history is polled, so the result is not lost.
// Errors: refused connection or a service gone mid-run -> kUnavailable; POST /prompt 400 ->
// kInvalidArgument naming the node, its class and ComfyUI's message; another non-2xx -> kInternal;
// execution_error -> kInvalidArgument "comfyui node 7 (KSampler): <exception_message>" (an
// out-of-memory message is kUnavailable: VRAM may be free on the next attempt); interrupted by
// someone else -> kInternal; ctx.stop -> POST /queue delete + POST /interrupt {prompt_id}, then
// kUnavailable "comfyui run stopped" within a second. Malformed frames are logged and skipped.
// Thread-safe: one instance serves every worker.
#include "connectors/connector.hpp"

namespace gpuq::connectors {

class ComfyUiConnector final : public Connector {
 public:
  explicit ComfyUiConnector(ConnectorOptions options = {}) : options_(std::move(options)) {}

  Result<void> Validate(const TaskType& type, const Json& payload) const override;
  std::vector<SettingProblem> CheckSettings(const TaskType& type) const override;
  Result<Outcome> Execute(RunContext& ctx) override;

 private:
  ConnectorOptions options_;
};

}  // namespace gpuq::connectors
