#pragma once
// A GPU service (ComfyUI, CosyVoice, an LLM server...) as configured, and its life-cycle words.
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"

namespace gpuq {

// How a service is started and stopped (gpu/runtime). A `slot` runs nothing: it reserves its
// vram_mb on a GPU while runs use it (one-shot work such as a container per run), so placement
// makes room for that work like for any service.
enum class ServiceKind { kProcess, kDocker, kExternal, kSlot };

// The notes' service states. `unknown` before the first look; `busy` = serving at least one run.
enum class ServiceState { kUnknown, kStopped, kStarting, kReady, kBusy, kStopping, kError };

const char* ToString(ServiceKind kind);
std::optional<ServiceKind> ParseServiceKind(std::string_view word);  // process|docker|external|slot
const char* ToString(ServiceState state);
std::optional<ServiceState> ParseServiceState(std::string_view word);

// Whether an instance in this state holds (or is about to hold) VRAM: starting, ready, busy,
// stopping. `error` is not resident: its process is gone or being cleaned up.
bool IsResident(ServiceState state);

// One [services.NAME] table. Strings marked "template" may use {{port}}, {{gpu}}, {{name}},
// {{host}} (filled per instance by gpu/lifecycle with core/placeholder's grammar).
struct ServiceSpec {
  std::string name;
  ServiceKind kind = ServiceKind::kProcess;
  int vram_mb = 0;    // declared VRAM per instance; measurement corrects it for planning
  int priority = 50;  // protects the work queued for it (DESIGN.md "Placing work on a GPU")
  std::string health_url;             // template: "http://127.0.0.1:{{port}}/health"; 200 = healthy
  Millis health_timeout{60'000};      // start -> healthy deadline
  Millis warm_time{10'000};           // longest wait before the first health check
  std::vector<int> phases;            // pipeline phases that use it
  std::string container;              // docker: container name (template)
  std::vector<std::string> argv;      // process: start argv (templates), never a shell string
  int stop_signal = 15;               // process: signal to the process group (SIGTERM)
  std::vector<std::string> stop_argv; // process: optional stop command instead of the signal
  std::string pid_file;               // process: template; empty = <data_dir>/services/<name>/gpu<N>.pid
  std::string evict_api;              // template URL POSTed (evict_body) before stopping
  std::string evict_body;             // JSON body for evict_api ("" = "{}")
  std::optional<std::vector<int>> gpus;  // GPU indexes it may run on; nullopt = any
  int base_port = 0;                  // instance port = base_port + GPU index
  std::map<std::string, std::string> env;  // extra environment (templates)
  Millis idle_ttl{0};                 // stop after this long idle; 0 = stay resident
  Millis stop_timeout{10'000};        // grace between the stop signal and SIGKILL / docker kill
  std::string url;                    // external: base URL (template); managed: derived from port
  int max_concurrency = 1;            // runs served at once per instance (external: the cap)
};

}  // namespace gpuq
