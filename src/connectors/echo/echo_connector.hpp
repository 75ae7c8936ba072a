#pragma once
// `echo`: the run's result is its payload. For tests and the demo the payload may also ask for
//   "sleep_ms": N     wait N ms (returns early, with kUnavailable, once ctx.stop is requested),
//   "progress": N     report N evenly spaced progress steps while sleeping,
//   "fail": "text"    fail with that message (kInvalidArgument: not retried).
// Writes one line to the attempt's log file. Stateless: thread-safe.
#include "connectors/connector.hpp"

namespace gpuq::connectors {

class EchoConnector final : public Connector {
 public:
  // Any object; the optional keys above must have their types (sleep_ms, progress >= 0).
  Result<void> Validate(const TaskType& type, const Json& payload) const override;
  Result<Outcome> Execute(RunContext& ctx) override;
  // Echo writes no files and no log: its runs are pure queue round trips.
  bool UsesRunDir() const override { return false; }
};

}  // namespace gpuq::connectors
