#pragma once
// End-to-end helpers: the real `gpuq` binary started as child processes on a temp data dir.
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

namespace gpuq::e2e {

struct CliResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
  nlohmann::json Json() const;  // the output parsed as JSON (null when it is not)
};

// A temp dir holding gpuq.toml, the data dir and the processes' output files.
class Cluster {
 public:
  // `extra_toml` is appended to a config with fast leases (ttl 3 s, heartbeat 1 s).
  explicit Cluster(const std::string& extra_toml = "");

  // Starts `gpuq serve` (with an agent unless no_agent) and waits until /health answers.
  std::unique_ptr<testing::ChildProcess> StartServer(bool no_agent = false,
                                                     const std::string& agent_id = "srv");
  // Starts `gpuq serve --config FILE` on this cluster's port and data dir (the flags override
  // the file's) with extra arguments and environment; waits until /health answers.
  std::unique_ptr<testing::ChildProcess> StartServerWith(
      const std::filesystem::path& config, const std::vector<std::string>& args = {},
      const std::map<std::string, std::string>& env = {});
  // Starts `gpuq agent --agent-id ID`.
  std::unique_ptr<testing::ChildProcess> StartAgent(const std::string& agent_id);

  // Runs the CLI against this cluster's server and waits for it (generous deadline).
  CliResult Cli(std::vector<std::string> args) const;

  // GET /task_status/{id} through the CLI's --json; null when it fails.
  nlohmann::json Status(const std::string& id) const;

  // Waits until the run's status is `status`.
  bool WaitForStatus(const std::string& id, const std::string& status) const;

  const std::filesystem::path& dir() const { return dir_.path(); }
  std::filesystem::path data_dir() const { return dir_ / "data"; }
  std::string server_url() const;
  int port() const { return port_; }

 private:
  testing::TempDir dir_;
  int port_;
  mutable int cli_runs_ = 0;
  int processes_ = 0;
};

}  // namespace gpuq::e2e
