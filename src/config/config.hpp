#pragma once
// One tree of plain structs: defaults < TOML file < environment < flags.
// Only config/ reads the environment; every module gets its section.
#include <chrono>
#include <cstdlib>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/result.hpp"
#include "core/service.hpp"
#include "core/task_type.hpp"

namespace gpuq::config {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string token;                         // empty: no auth (loopback only)
  std::size_t max_body_bytes = 16u << 20;    // bytes; larger bodies get 413
  int threads = 0;                           // API io threads; 0: half the cores (at least 1)
};

struct StoreConfig {
  std::string url;         // empty: sqlite://<data_dir>/gpuq.db
  int retention_days = 0;  // 0: keep finished runs forever
};

struct AgentConfig {
  std::string id;                 // empty: stable id kept in <data_dir>/agent-id
  int cpu_workers = 4;            // concurrent service-less runs
  Millis lease_ttl{10'000};
  Millis heartbeat{2'000};
  Millis poll{200};               // idle claim poll when other processes submit
  Millis drain_timeout{30'000};   // SIGTERM: how long running work may finish
};

struct SimGpuConfig {
  int index = 0;
  std::string name = "sim";
  int total_mb = 24576;
};

// [gpu]: how this host's GPUs are seen and shared.
struct GpuConfig {
  std::string vram_backend = "auto";  // auto | nvml | nvidia-smi | sim | none
  std::vector<SimGpuConfig> sim;      // [[gpu.sim]]: the sim backend's GPUs
  int reserve_mb = 512;               // per GPU, never planned into
  std::vector<int> gpus;              // GPUs this agent owns (--gpus); empty = every GPU seen
  std::string host;                   // "<host>" in "host:0"; empty = the machine's hostname
  Millis lock_ttl{10'000};            // GPU lock and ownership lease TTL (renewed while held)
  Millis aging_step{30'000};          // claim aging: +1 effective priority per step waited
  Millis memory_wait{30'000};         // after a stop: longest wait for the tracker to show it free
  Millis health_interval{50};         // longest interval between health polls (a refused
                                      // connect costs nothing; a late notice costs a swap)
  std::string docker_socket = "/var/run/docker.sock";
  std::string nvml_library = "libnvidia-ml.so.1";
  std::string nvidia_smi = "nvidia-smi";
  bool fake_services_die_with_agent = false;  // PR_SET_PDEATHSIG for process services (demo/tests)
};

struct Config {
  std::filesystem::path data_dir = "gpuq-data";  // absolute after Load/Finalize
  std::string log_level = "info";
  ServerConfig server;
  StoreConfig store;
  AgentConfig agent;
  std::map<std::string, TaskType> task_types;  // always holds "echo" (and "command" generic)
  GpuConfig gpu;
  std::map<std::string, ServiceSpec> services;  // [services.NAME]
  std::map<int, std::string> phases;            // [phases]: number -> name (default 1..5)
  std::filesystem::path config_file;           // empty when none was given
  std::filesystem::path asset_path;            // ASSET_PATH: root for task inputs/outputs
};

struct Problem {
  std::string field;    // "task_types.render.argv"
  std::string message;  // "must be a non-empty array of strings"
};

// Defaults with the built-in task types (echo; command with argv from the payload).
Config Defaults();

// Parses a TOML file over the defaults. Relative paths in it are relative to the file.
// Every problem found is returned at once (never just the first).
Result<Config> LoadFile(const std::filesystem::path& file, std::vector<Problem>* problems);

// LoadFile's best effort: the config with every readable field applied, even when some
// fields had problems (appended to `problems`), so later checks can report theirs too.
// std::nullopt only when the file is missing or is not TOML.
std::optional<Config> ReadFile(const std::filesystem::path& file, std::vector<Problem>* problems);

// The notes' environment variables (and GPUQ_*): GPUQ_TOKEN, GPUQ_DATA_DIR, GPUQ_STORE,
// GPUQ_LISTEN, REDIS_HOST/REDIS_PORT (store url), ASSET_PATH, DOCKER_HOST (unix://),
// COMFYUI_URL / COSYVOICE_URL (an external service and its task type), GPUQ_GPUS ("0,1": the GPUs this
// agent owns, replacing [gpu].gpus; a malformed list is a problem named "GPUQ_GPUS").
// `getenv` is injectable for tests.
using GetEnv = char* (*)(const char*);
void ApplyEnvironment(Config& config, std::vector<Problem>* problems, GetEnv getenv = &std::getenv);

// Checks cross-field rules and appends every problem, naming the field: every task type names a
// connector in `known_connectors` and, when it names a `service`, a configured one; [gpu]'s
// backend agrees with [[gpu.sim]] and the services; each service has what its kind needs
// (process: argv + health_url; docker: container + health_url; both vram_mb > 0; external: url),
// phases that [phases] names, GPUs within [gpu].gpus, ports that fit, and only the placeholders
// {{port}} (which needs base_port), {{gpu}}, {{name}} and {{host}}. Never checks that a path
// exists. Makes data_dir absolute, fills store.url when empty and an external service's empty
// health_url from its url.
// check_settings: the connector's check of a task type's `settings` (problems name the key
// alone: "templates_dir"); without one, any setting is an "unknown setting".
using SettingsCheck = std::function<std::vector<Problem>(const TaskType&)>;
void Finalize(Config& config, const std::vector<std::string>& known_connectors,
              std::vector<Problem>* problems, const SettingsCheck& check_settings = {});

// "a: x; b: y" for an Error message.
std::string Describe(const std::vector<Problem>& problems);

// "host:port" -> host, port. kInvalidArgument on anything else.
Result<std::pair<std::string, int>> ParseListen(std::string_view text);

}  // namespace gpuq::config
