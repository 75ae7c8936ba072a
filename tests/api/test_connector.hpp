#pragma once
// A tiny connector for API tests: any object payload is fine except {"bad": true}.
#include "connectors/connector.hpp"

namespace gpuq::api::testing {

class TestConnector final : public connectors::Connector {
 public:
  Result<void> Validate(const TaskType&, const Json& payload) const override {
    if (payload.value("bad", false)) return Error{Errc::kInvalidArgument, "payload says bad"};
    return Ok();
  }
  Result<connectors::Outcome> Execute(connectors::RunContext& ctx) override {
    return connectors::Outcome{ctx.run.payload, {}};
  }
};

// Task types "echo" (priority 50) and "comfyui" (priority 60, service "comfyui"), both run by
// a TestConnector named "echo".
inline std::map<std::string, TaskType> TestTaskTypes() {
  std::map<std::string, TaskType> types;
  types["echo"] = TaskType{.name = "echo", .connector = "echo", .description = "echoes"};
  types["comfyui"] = TaskType{.name = "comfyui",
                              .connector = "echo",
                              .service = "comfyui",
                              .timeout_s = 600,
                              .max_attempts = 2,
                              .priority = 60,
                              .description = "images"};
  return types;
}

inline connectors::ConnectorRegistry TestConnectors() {
  connectors::ConnectorRegistry registry;
  registry.Add("echo", std::make_unique<TestConnector>());
  return registry;
}

}  // namespace gpuq::api::testing
