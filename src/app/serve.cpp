#include "app/serve.hpp"

#include <signal.h>

#include <cstdlib>
#include <thread>

#include <spdlog/spdlog.h>

#include "agent/agent.hpp"
#include "api/server.hpp"
#include "connectors/connector.hpp"
#include "store/store.hpp"

namespace gpuq::app {

namespace {

constexpr const char* kVersion = "0.1.0";

void SetUpLogging(const std::string& level) {
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(spdlog::level::from_str(level));
}

// Blocks SIGINT and SIGTERM in this thread and every thread it starts later, so that
// WaitForStopSignal() is the only place they arrive.
sigset_t BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

int WaitForStopSignal(const sigset_t& set) {
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

std::vector<std::string> ConnectorNames(const connectors::ConnectorRegistry& registry) {
  return registry.Names();
}

}  // namespace

Result<config::Config> BuildConfig(const Overrides& overrides,
                                   std::vector<config::Problem>* problems) {
  std::vector<config::Problem> local;
  if (!problems) problems = &local;
  config::Config config = config::Defaults();
  std::optional<std::filesystem::path> file = overrides.config_file;
  if (!file) {
    if (const char* env = std::getenv("GPUQ_CONFIG"); env && *env) file = env;
  }
  if (file) {
    auto loaded = config::ReadFile(*file, problems);
    if (!loaded) return Error{Errc::kInvalidArgument, config::Describe(*problems)};
    config = std::move(*loaded);
  }
  config::ApplyEnvironment(config, problems);
  if (overrides.listen) {
    auto parsed = config::ParseListen(*overrides.listen);
    if (!parsed) {
      problems->push_back({"--listen", parsed.error().message});
    } else {
      config.server.host = parsed.value().first;
      config.server.port = parsed.value().second;
    }
  }
  if (overrides.data_dir) config.data_dir = *overrides.data_dir;
  if (overrides.store_url) config.store.url = *overrides.store_url;
  if (overrides.token) config.server.token = *overrides.token;
  if (overrides.agent_id) config.agent.id = *overrides.agent_id;
  if (overrides.cpu_workers) {
    if (*overrides.cpu_workers < 1) {
      problems->push_back({"--cpu-workers", "must be at least 1"});
    } else {
      config.agent.cpu_workers = *overrides.cpu_workers;
    }
  }
  if (overrides.log_level) config.log_level = *overrides.log_level;
  if (overrides.gpus) config.gpu.gpus = *overrides.gpus;
  auto registry = connectors::BuiltinConnectors();
  auto check_settings = [&registry](const TaskType& type) {
    std::vector<config::Problem> found;
    if (auto* connector = registry.Find(type.connector)) {
      for (auto& p : connector->CheckSettings(type)) found.push_back({p.key, p.message});
    }
    return found;
  };
  config::Finalize(config, ConnectorNames(registry), problems, check_settings);
  if (!problems->empty()) return Error{Errc::kInvalidArgument, config::Describe(*problems)};
  return config;
}

namespace {

connectors::ConnectorOptions ConnectorOptionsOf(const config::Config& config) {
  connectors::ConnectorOptions options;
  options.data_dir = config.data_dir;
  options.asset_root = config.asset_path.empty() ? config.data_dir / "assets" : config.asset_path;
  options.docker_socket = config.gpu.docker_socket;
  return options;
}

// Everything a daemon process owns, in dependency order; destroyed in reverse.
struct Daemon {
  config::Config config;
  SystemClock clock;
  connectors::ConnectorRegistry connectors;
  std::unique_ptr<store::Store> store;
};

Result<std::unique_ptr<Daemon>> OpenDaemon(const Overrides& overrides) {
  auto daemon = std::make_unique<Daemon>();
  auto config = BuildConfig(overrides, nullptr);
  if (!config) return config.error();
  daemon->config = std::move(config.value());
  SetUpLogging(daemon->config.log_level);
  daemon->connectors = connectors::BuiltinConnectors(ConnectorOptionsOf(daemon->config));
  std::error_code ec;
  std::filesystem::create_directories(daemon->config.data_dir / "runs", ec);
  if (ec) {
    return Error{Errc::kUnavailable, fmt::format("cannot create data dir {}: {}",
                                                 daemon->config.data_dir.string(), ec.message())};
  }
  auto store = store::OpenStore(daemon->config.store.url, daemon->clock);
  if (!store) return store.error();
  daemon->store = std::move(store.value());
  return daemon;
}

}  // namespace

int Serve(const Overrides& overrides, bool no_agent) {
  sigset_t stop_signals = BlockStopSignals();
  auto opened = OpenDaemon(overrides);
  if (!opened) {
    spdlog::error("cannot start: {}", opened.error().message);
    return 2;
  }
  Daemon& d = *opened.value();
  api::Server server({*d.store, d.config, d.connectors});
  auto port = server.Listen(d.config.server.host, d.config.server.port);
  if (!port) {
    spdlog::error("cannot start: {}", port.error().message);
    return 2;
  }
  std::optional<agent::Agent> agent;
  if (!no_agent) {
    agent.emplace(agent::AgentDeps{*d.store, d.config, d.connectors, d.clock});
    if (auto started = agent->Start(); !started) {
      spdlog::error("cannot start agent: {}", started.error().message);
      return 2;
    }
  }
  spdlog::info("gpuq serving version={} listen=http://{}:{} store={} data_dir={} agent={}",
               kVersion, d.config.server.host, port.value(), d.store->Describe(),
               d.config.data_dir.string(), agent ? agent->id() : "none");
  std::thread api_thread([&] { server.Run(d.config.server.threads); });
  int sig = WaitForStopSignal(stop_signals);
  spdlog::info("stopping signal={}", strsignal(sig));
  // Drain first while the API still answers, so clients see runs finish or go back.
  if (agent) agent->Drain();
  server.Stop();
  api_thread.join();
  spdlog::info("stopped");
  return 0;
}

int RunAgent(const Overrides& overrides) {
  sigset_t stop_signals = BlockStopSignals();
  auto opened = OpenDaemon(overrides);
  if (!opened) {
    spdlog::error("cannot start: {}", opened.error().message);
    return 2;
  }
  Daemon& d = *opened.value();
  agent::Agent agent({*d.store, d.config, d.connectors, d.clock});
  if (auto started = agent.Start(); !started) {
    spdlog::error("cannot start agent: {}", started.error().message);
    return 2;
  }
  spdlog::info("gpuq agent running version={} id={} store={}", kVersion, agent.id(),
               d.store->Describe());
  int sig = WaitForStopSignal(stop_signals);
  spdlog::info("stopping signal={}", strsignal(sig));
  agent.Drain();
  spdlog::info("stopped");
  return 0;
}

}  // namespace gpuq::app
