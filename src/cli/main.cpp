#include "cli/main.hpp"

#include <cstdio>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "app/serve.hpp"
#include "cli/gpu_commands.hpp"
#include "cli/output.hpp"
#include "cli/run_commands.hpp"

#ifndef GPUQ_VERSION
#define GPUQ_VERSION "0.0.0"
#endif

namespace gpuq::cli {

namespace {

// `gpuq serve` / `gpuq agent` flags shared by both.
void AddDaemonFlags(CLI::App* cmd, app::Overrides& o) {
  cmd->add_option("--config", o.config_file, "TOML config file (or GPUQ_CONFIG)");
  cmd->add_option("--data-dir", o.data_dir, "where the database, runs and logs live");
  cmd->add_option("--store", o.store_url, "sqlite:///path.db (default: <data-dir>/gpuq.db)");
  cmd->add_option("--agent-id", o.agent_id, "stable agent id (default: kept in <data-dir>)");
  cmd->add_option("--cpu-workers", o.cpu_workers, "concurrent service-less runs");
  cmd->add_option("--log-level", o.log_level, "trace|debug|info|warn|error");
  cmd->add_option("--gpus", o.gpus, "GPU indexes this agent owns, e.g. 0,1 (default: all)")
      ->delimiter(',');
}

int CheckConfig(const std::string& file) {
  app::Overrides overrides;
  overrides.config_file = file;
  std::vector<config::Problem> problems;
  auto config = app::BuildConfig(overrides, &problems);
  if (!config) {
    for (const auto& p : problems) {
      fmt::print(stderr, "{}: {}\n", p.field.empty() ? file : p.field, p.message);
    }
    if (problems.empty()) fmt::print(stderr, "{}\n", config.error().message);
    fmt::print(stderr, "{}: {} problem{}\n", file, problems.size(), problems.size() == 1 ? "" : "s");
    return 2;
  }
  const auto& c = config.value();
  fmt::print("{}: ok\n  listen     {}:{}\n  data_dir   {}\n  store      {}\n  task types ",
             file, c.server.host, c.server.port, c.data_dir.string(), c.store.url);
  std::vector<std::string> names;
  for (const auto& [name, type] : c.task_types) names.push_back(name);
  fmt::print("{}\n", fmt::join(names, ", "));
  if (!c.services.empty()) {
    std::vector<std::string> services;
    for (const auto& [name, spec] : c.services) {
      services.push_back(fmt::format("{} ({}, {} MB, priority {})", name, ToString(spec.kind),
                                     spec.vram_mb, spec.priority));
    }
    std::vector<std::string> phases;
    for (const auto& [number, name] : c.phases) phases.push_back(fmt::format("{} {}", number, name));
    fmt::print("  gpu        backend {}, reserve {} MB{}\n  services   {}\n  phases     {}\n",
               c.gpu.vram_backend, c.gpu.reserve_mb,
               c.gpu.gpus.empty() ? "" : fmt::format(", gpus {}", fmt::join(c.gpu.gpus, ",")),
               fmt::join(services, ", "), fmt::join(phases, ", "));
  }
  return 0;
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"gpuq: run AI work on GPUs too small to hold every model at once"};
  app.set_version_flag("--version", std::string("gpuq ") + GPUQ_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global flags work after the subcommand too

  GlobalOptions global;
  if (const char* env = std::getenv("GPUQ_SERVER"); env && *env) global.server = env;
  if (const char* env = std::getenv("GPUQ_TOKEN"); env && *env) global.token = env;
  app.add_option("--server", global.server, "API address (or GPUQ_SERVER)")->capture_default_str();
  app.add_option("--token", global.token, "bearer token (or GPUQ_TOKEN)");
  app.add_flag("--json", global.json, "machine-readable output");

  app::Overrides overrides;
  std::string listen;
  bool no_agent = false;
  auto* serve = app.add_subcommand("serve", "run the API server and an agent");
  AddDaemonFlags(serve, overrides);
  serve->add_option("--listen", listen, "HOST:PORT (default 127.0.0.1:8000)");
  serve->add_flag("--no-agent", no_agent, "run the API alone");

  auto* agent = app.add_subcommand("agent", "run an agent alone against the store");
  AddDaemonFlags(agent, overrides);

  SubmitOptions submit_opts;
  auto* submit = app.add_subcommand("submit", "queue a task");
  submit->add_option("type", submit_opts.type, "task type")->required();
  submit->add_option("--priority,-p", submit_opts.priority, "higher runs first (default 50)");
  submit->add_option("--param", submit_opts.params, "KEY=VALUE (string) or KEY:=JSON");
  submit->add_option("--payload", submit_opts.payload, "the payload as a JSON object");
  submit->add_option("--timeout", submit_opts.timeout_s, "seconds before the run is killed");
  submit->add_option("--max-attempts", submit_opts.max_attempts, "tries before failed");
  submit->add_option("--idempotency-key", submit_opts.idempotency_key,
                     "same key, same task: no duplicate");
  submit->add_flag("--wait,-w", submit_opts.wait, "wait for the outcome; exit code reflects it");

  std::string id;
  auto* status = app.add_subcommand("status", "show one run");
  status->add_option("id", id, "run id")->required();

  std::string filter_status, filter_type;
  int limit = 50;
  auto* runs = app.add_subcommand("runs", "list runs, newest first");
  runs->add_option("--status", filter_status, "waiting|pending|processing|completed|failed|cancelled");
  runs->add_option("--type", filter_type, "task type");
  runs->add_option("--limit", limit, "at most this many (1-1000)")->capture_default_str();

  bool follow = false;
  int attempt = 0;
  auto* logs = app.add_subcommand("logs", "print a run's log");
  logs->add_option("id", id, "run id")->required();
  logs->add_flag("--follow,-f", follow, "keep printing until the run ends");
  logs->add_option("--attempt", attempt, "attempt number (default: latest)");

  auto* cancel = app.add_subcommand("cancel", "cancel a run");
  cancel->add_option("id", id, "run id")->required();
  auto* retry = app.add_subcommand("retry", "queue a failed or cancelled run again");
  retry->add_option("id", id, "run id")->required();

  std::string out_dir;
  auto* fetch = app.add_subcommand("fetch", "download a run's output files");
  fetch->add_option("id", id, "run id")->required();
  fetch->add_option("--out,-o", out_dir, "directory (default ./<id>)");

  std::string config_file;
  auto* check = app.add_subcommand("check-config", "validate a config file, every problem at once");
  check->add_option("file", config_file, "TOML file")->required();

  GpuCommands gpu_commands(app);  // gpu status, service start|stop|logs, phase

  for (auto* sub : app.get_subcommands({})) sub->fallthrough();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (!listen.empty()) overrides.listen = listen;
  if (!global.token.empty()) overrides.token = global.token;
  if (*serve) return app::Serve(overrides, no_agent);
  if (*agent) return app::RunAgent(overrides);
  if (*submit) return Submit(global, submit_opts);
  if (*status) return Status(global, id);
  if (*runs) return ListRuns(global, filter_status, filter_type, limit);
  if (*logs) return Logs(global, id, follow, attempt);
  if (*cancel) return Cancel(global, id);
  if (*retry) return Retry(global, id);
  if (*fetch) return Fetch(global, id, out_dir);
  if (*check) return CheckConfig(config_file);
  if (auto code = gpu_commands.Run(global)) return *code;
  return 2;
}

}  // namespace gpuq::cli
