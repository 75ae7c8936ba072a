#pragma once
// The composition root of the daemon: `gpuq serve` (API + agent) and `gpuq agent`.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/result.hpp"

namespace gpuq::app {

// What the command line says; each set field overrides config file and environment.
struct Overrides {
  std::optional<std::filesystem::path> config_file;  // --config, else GPUQ_CONFIG
  std::optional<std::string> listen;                 // --listen HOST:PORT
  std::optional<std::filesystem::path> data_dir;     // --data-dir
  std::optional<std::string> store_url;              // --store
  std::optional<std::string> token;                  // --token
  std::optional<std::string> agent_id;               // --agent-id
  std::optional<int> cpu_workers;                    // --cpu-workers
  std::optional<std::string> log_level;              // --log-level
  std::optional<std::vector<int>> gpus;              // --gpus 0,1: the GPUs this agent owns
};

// defaults < config file < environment < flags, then validated. Every problem is reported in
// `problems` (and the Error lists them all).
Result<config::Config> BuildConfig(const Overrides& overrides,
                                   std::vector<config::Problem>* problems);

// Runs the API server (and, unless no_agent, an agent) until SIGINT/SIGTERM, then drains.
// Returns the process exit code.
int Serve(const Overrides& overrides, bool no_agent);

// Runs an agent alone against the configured store until SIGINT/SIGTERM, then drains.
int RunAgent(const Overrides& overrides);

}  // namespace gpuq::app
