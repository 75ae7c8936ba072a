#pragma once
// A connector runs one task type's runs through one protocol (echo, command, later comfyui...).
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "core/run.hpp"
#include "core/task_type.hpp"

namespace gpuq::connectors {

// Everything one attempt of one run may touch. Owned by the worker for the attempt's length.
struct RunContext {
  const Run& run;
  const TaskType& task_type;
  std::filesystem::path data_dir;  // absolute
  std::filesystem::path run_dir;   // <data_dir>/runs/<id>, exists if UsesRunDir(); outputs go here
  std::filesystem::path log_file;  // <run_dir>/logs/attempt-<n>.log, its folder exists if UsesRunDir()
  std::string service_url;         // service-bound types: the instance's base URL (Acquire's base_url)
  std::optional<int> gpu;          // service-bound types: the host GPU index it runs on
  std::string gpu_uuid;            // "GPU-..." when `gpu` is a real NVIDIA GPU (NVML, nvidia-smi)
  std::stop_token stop;            // requested on cancel, lost lease, timeout or drain
  std::function<void(const Progress&)> report_progress;  // thread-safe, cheap, may be called often
};

struct SettingProblem {
  std::string key;      // "sample_rate"
  std::string message;  // "must be a positive integer"
};

// What connectors learn from the config when the registry is built.
struct ConnectorOptions {
  std::filesystem::path asset_root;   // ASSET_PATH: where outputs may go besides the run dir
  std::filesystem::path data_dir;     // absolute: runs/<id> of parent runs are under it
  std::string docker_socket = "/var/run/docker.sock";
};

struct Outcome {
  Json result = Json::object();    // the run's `result`
  std::vector<std::string> files;  // relative to data_dir ("runs/<id>/out.png")
};

class Connector {
 public:
  virtual ~Connector() = default;

  // Checks a payload at submit time; an error here is a 422 and nothing is queued. Pure but
  // for reading files the task type names (a workflow template).
  virtual Result<void> Validate(const TaskType& type, const Json& payload) const = 0;

  // Checks a task type's connector settings at config load (type.settings: the keys of
  // [task_types.NAME] that are not common to every type). One problem per bad key, naming
  // the key alone ("sample_rate"). The default accepts no setting.
  virtual std::vector<SettingProblem> CheckSettings(const TaskType& type) const;

  // Whether Execute touches ctx.run_dir or ctx.log_file. When false the worker creates
  // neither: a run that writes nothing costs no inodes (echo at thousands of runs a second).
  virtual bool UsesRunDir() const { return true; }

  // Runs one attempt. Blocks; returns promptly (well under a second) once `ctx.stop` is
  // requested, after stopping whatever it started. Errors: kUnavailable and kInternal are
  // retried (the service or machine may recover); anything else fails the run for good.
  virtual Result<Outcome> Execute(RunContext& ctx) = 0;
};

// Connectors by name. Built once at start-up, read-only afterwards (thread-safe reads).
class ConnectorRegistry {
 public:
  void Add(std::string name, std::unique_ptr<Connector> connector);
  Connector* Find(std::string_view name) const;  // nullptr when unknown
  std::vector<std::string> Names() const;

 private:
  std::map<std::string, std::unique_ptr<Connector>, std::less<>> connectors_;
};

// The registry with every connector this build has ("echo", "command", "http", ...).
ConnectorRegistry BuiltinConnectors(const ConnectorOptions& options = {});

}  // namespace gpuq::connectors
