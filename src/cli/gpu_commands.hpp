#pragma once
// The CLI subcommands about GPUs and their services: `gpuq gpu status`, `gpuq service
// start|stop|logs NAME`, `gpuq phase N`. HTTP clients of the /gpu/* routes; each returns an
// exit code (output.hpp): 1 when the server ran the action and it failed (success: false).
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/api_client.hpp"

namespace CLI {
class App;
}  // namespace CLI

namespace gpuq::cli {

// Registers `gpu`, `service` and `phase` on `app` and remembers which one was parsed.
// Owns the options the parsed subcommands fill; must outlive app.parse().
class GpuCommands {
 public:
  explicit GpuCommands(CLI::App& app);
  ~GpuCommands();

  // The exit code when one of these subcommands was given, nullopt otherwise.
  std::optional<int> Run(const GlobalOptions& global) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// `gpuq gpu status` as text: per GPU "host:0 NAME [####------] used/total MB (free F, reserve
// R, unknown U)" (plus its lock when held), then a table SERVICE GPU STATE
// VRAM(declared/measured) PORT PID RUNS. Pure: reads only `status` (a /gpu/status reply).
std::string RenderGpuStatus(const nlohmann::json& status);

int GpuStatus(const GlobalOptions& global);
int ServiceStart(const GlobalOptions& global, const std::string& name);
int ServiceStop(const GlobalOptions& global, const std::string& name, bool force);
int ServiceLogs(const GlobalOptions& global, const std::string& name, int gpu, bool follow);
int PreparePhase(const GlobalOptions& global, int phase);

}  // namespace gpuq::cli
