#pragma once
// One attempt of one claimed run, shared by the CPU pool and the GPU workers: RunAttempt
// prepares the run dir and log file and calls the connector; FinishAttempt records how the
// attempt ended (completed, failed or retried, cancelled, given back, or abandoned after a
// lost lease) from the outcome and why the run was asked to stop.
#include <filesystem>
#include <optional>
#include <string>

#include "agent/active_run.hpp"
#include "connectors/connector.hpp"
#include "store/store.hpp"

namespace gpuq::agent {

struct Attempt {
  const std::string& worker;  // "<agent>/cpu0", "<agent>/gpu1"
  const Run& run;             // as claimed
  ActiveRun& active;          // its stop token, deadline and progress
  const TaskType& type;
  connectors::Connector& connector;
  std::filesystem::path data_dir;  // absolute
  std::string service_url;         // service-bound runs: the instance's base URL
  std::optional<int> gpu;
  std::string gpu_uuid;            // a real NVIDIA GPU's UUID, else empty
};

// Runs the connector (it never throws out of here). Blocks until it returns.
Result<connectors::Outcome> RunAttempt(store::Store& store, const Attempt& attempt);

// Writes the attempt's end to the store with the lease's token. Store errors are logged.
void FinishAttempt(store::Store& store, const std::string& worker, const Run& run,
                   ActiveRun& active, Result<connectors::Outcome> outcome);

}  // namespace gpuq::agent
