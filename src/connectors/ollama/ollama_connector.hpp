#pragma once
// `ollama`: text generation through Ollama's /api/generate or /api/chat (protocols.md section 4),
// on the service the task type is bound to.
//
// Settings ([task_types.NAME]):
//   model       the model when the payload names none ("llama3.2", "qwen2.5:7b").
//   keep_alive  passed to Ollama as-is: a number of seconds or a Go duration string ("10m",
//               "-1" keeps it forever, 0 unloads after each run). A bare numeric string such as
//               "300" is refused, as Ollama would refuse it.
//   mode        "generate" (default) or "chat": which endpoint a payload that has both or neither
//               of prompt and messages uses.
//
// Payload: {"model"?, "prompt"?, "messages"?: [{"role","content",...}], "system"?,
// "options"?: {...}, "format"?: "json" | schema, "mode"?: "generate" | "chat", "keep_alive"?}.
// Mode: payload "mode", else "chat" for messages without a prompt, else the setting. Chat with
// only a prompt sends [system?, {"role":"user","content":prompt}]; messages and a prompt in
// generate mode send the prompt alone.
// Validate (422): not an object, no model in payload or settings, neither prompt nor messages,
// messages not an array of {role: string, content: string}, generate mode without a prompt, a
// bad mode or keep_alive, options not an object.
//
// Execute POSTs with "stream": true and reads the NDJSON lines as they come; each token is
// progress ("N tokens", fraction of options.num_predict when given). Result: {"model",
// "response" (generate) or "message": {"role","content"} (chat), "done_reason",
// "prompt_eval_count", "eval_count", "total_duration_ms", "eval_duration_ms", "tokens_per_s",
// "response_file"}; the text is also written to <run_dir>/response.txt (listed in files).
// Errors: 400/404 (an unknown model: Ollama's words) -> kInvalidArgument; 429, 502, 503, 504,
// refused or reset connections and a stream that ends without its done:true line ("cut off")
// -> kUnavailable; 500, an {"error"} line mid-stream and a line that is not JSON -> kInternal
// (retried: runner crashes and OOMs may not repeat). ctx.stop aborts the stream at once ->
// kUnavailable "ollama generate stopped". Thread-safe: one instance serves every worker.
#include <string>

#include "connectors/connector.hpp"

namespace gpuq::connectors {

class OllamaConnector final : public Connector {
 public:
  Result<void> Validate(const TaskType& type, const Json& payload) const override;
  std::vector<SettingProblem> CheckSettings(const TaskType& type) const override;
  Result<Outcome> Execute(RunContext& ctx) override;

  // Unloads `model` now (POST /api/generate {"model", "keep_alive": 0}, as `ollama stop` does),
  // what a service's evict_api/evict_body does before the service is stopped. kInvalidArgument
  // for an unknown model, kUnavailable when the server cannot be reached.
  static Result<void> Unload(const std::string& base_url, const std::string& model);
};

// Ollama's keep_alive rule (api.Duration): a JSON number, or a Go duration string. An empty
// string when `value` is valid, else why not ("time: missing unit in duration \"300\"").
std::string KeepAliveProblem(const Json& value);

}  // namespace gpuq::connectors
