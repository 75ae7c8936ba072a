#pragma once
// Pure parsing and validation of submit bodies: text in, a store::NewRun or an Error out.
// Nothing here touches the store, so every rejection leaves it unchanged.
#include <map>
#include <string>
#include <string_view>

#include "connectors/connector.hpp"
#include "core/result.hpp"
#include "core/task_type.hpp"
#include "store/store.hpp"

namespace gpuq::api {

struct SubmitRules {
  const std::map<std::string, TaskType>& task_types;
  const connectors::ConnectorRegistry& connectors;
};

// POST /submit_task: {task_type, priority?, payload?, timeout_s?, max_attempts?,
// idempotency_key?, parent_run_id?}. `idempotency_header` is the Idempotency-Key header
// (empty when absent); the body field wins when both are given and they must then agree.
// Errors: kMalformed (not JSON), kInvalidArgument (not an object, a missing or mistyped field,
// an unknown task type naming the known ones, the connector's Validate failure).
Result<store::NewRun> ParseSubmitTask(std::string_view body, std::string_view idempotency_header,
                                      const SubmitRules& rules);

// POST /task/submit, the notes' alias: {type, params?, priority?}; "comfy" means "comfyui".
Result<store::NewRun> ParseTaskSubmit(std::string_view body, std::string_view idempotency_header,
                                      const SubmitRules& rules);

}  // namespace gpuq::api
