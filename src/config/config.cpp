#include "config/config.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <set>
#include <sstream>
#include <tuple>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "config/toml_reader.hpp"

namespace gpuq::config {

namespace fs = std::filesystem;

Config Defaults() {
  Config c;
  TaskType echo;
  echo.name = "echo";
  echo.connector = "echo";
  echo.description = "Returns its payload as the result (smoke tests, benchmarks).";
  echo.max_attempts = 3;
  c.task_types.emplace(echo.name, echo);
  TaskType command;
  command.name = "command";
  command.connector = "command";
  command.description = "Runs payload.argv (an array of strings, no shell) in the run directory.";
  command.max_attempts = 1;
  c.task_types.emplace(command.name, command);
  c.phases = {{1, "crawl"}, {2, "analysis"}, {3, "tts"}, {4, "video"}, {5, "render"}};
  return c;
}

namespace {

using internal::Reader;
using Json = nlohmann::json;

void ReadServer(Reader& r, const toml::table& t, ServerConfig& server) {
  r.CheckKeys(t, "server", {"listen", "token", "max_body_mb", "threads"});
  if (t.contains("listen")) {
    std::string listen;
    r.String(t, "server", "listen", listen);
    auto parsed = ParseListen(listen);
    if (!parsed) {
      r.Report("server.listen", parsed.error().message);
    } else {
      server.host = parsed.value().first;
      server.port = parsed.value().second;
    }
  }
  r.String(t, "server", "token", server.token);
  int body_mb = static_cast<int>(server.max_body_bytes >> 20);
  r.Int(t, "server", "max_body_mb", body_mb, 1, 4096);
  server.max_body_bytes = static_cast<std::size_t>(body_mb) << 20;
  r.Int(t, "server", "threads", server.threads, 0, 256);
}

void ReadStore(Reader& r, const toml::table& t, StoreConfig& store) {
  r.CheckKeys(t, "store", {"url", "retention_days"});
  r.String(t, "store", "url", store.url);
  // A relative sqlite path in the file is relative to the file, like every path in it.
  constexpr std::string_view kSqlite = "sqlite://";
  if (store.url.starts_with(kSqlite) && !store.url.starts_with("sqlite:///")) {
    store.url = "sqlite://" + (r.base() / store.url.substr(kSqlite.size())).lexically_normal().string();
  }
  r.Int(t, "store", "retention_days", store.retention_days, 0, 100000);
}

void ReadAgent(Reader& r, const toml::table& t, AgentConfig& agent) {
  r.CheckKeys(t, "agent",
              {"id", "cpu_workers", "lease_ttl_s", "heartbeat_s", "poll_ms", "drain_timeout_s"});
  r.String(t, "agent", "id", agent.id);
  r.Int(t, "agent", "cpu_workers", agent.cpu_workers, 1, 1024);
  r.Duration(t, "agent", "lease_ttl_s", agent.lease_ttl, 1000, 1, 3600);
  r.Duration(t, "agent", "heartbeat_s", agent.heartbeat, 1000, 1, 600);
  r.Duration(t, "agent", "poll_ms", agent.poll, 1, 10, 60000);
  r.Duration(t, "agent", "drain_timeout_s", agent.drain_timeout, 1000, 0, 86400);
}

constexpr std::array<std::string_view, 9> kTaskTypeKeys = {
    "connector", "service",      "endpoint", "argv",       "env",
    "timeout_s", "max_attempts", "priority", "description"};

bool IsPathKey(std::string_view key) {
  return key.ends_with("_dir") || key.ends_with("_path") || key.ends_with("_file");
}

// A TOML value as JSON (dates and times as their TOML text).
Json ToJson(const toml::node& node) {
  if (auto* table = node.as_table()) {
    Json out = Json::object();
    for (const auto& [key, value] : *table) out[std::string(key.str())] = ToJson(value);
    return out;
  }
  if (auto* array = node.as_array()) {
    Json out = Json::array();
    for (const auto& value : *array) out.push_back(ToJson(value));
    return out;
  }
  if (auto v = node.value_exact<std::string>()) return *v;
  if (auto v = node.value_exact<int64_t>()) return *v;
  if (auto v = node.value_exact<double>()) return *v;
  if (auto v = node.value_exact<bool>()) return *v;
  std::ostringstream text;
  node.visit([&text](const auto& leaf) { text << leaf; });
  return text.str();
}

// Every key that is not a common task type key belongs to the connector (checked later by it).
void ReadSettings(Reader& r, const toml::table& t, TaskType& type) {
  for (const auto& [key, node] : t) {
    std::string_view k = key.str();
    if (std::find(kTaskTypeKeys.begin(), kTaskTypeKeys.end(), k) != kTaskTypeKeys.end()) continue;
    Json value = ToJson(node);
    if (IsPathKey(k) && value.is_string() && !value.get<std::string>().empty()) {
      value = (r.base() / value.get<std::string>()).lexically_normal().string();
    }
    type.settings[std::string(k)] = std::move(value);
  }
}

void ReadTaskType(Reader& r, const std::string& name, const toml::table& t, TaskType& type) {
  std::string prefix = "task_types." + name;
  type.name = name;
  ReadSettings(r, t, type);
  r.String(t, prefix, "connector", type.connector);
  r.String(t, prefix, "service", type.service);
  r.String(t, prefix, "endpoint", type.endpoint);
  if (t.contains("endpoint") && !type.endpoint.starts_with("/")) {
    r.Report(prefix + ".endpoint", "must be a path starting with '/'");
  }
  internal::ReadStringArray(r, t, prefix, "argv", type.argv);
  r.ResolveProgram(type.argv);
  internal::ReadStringTable(r, t, prefix, "env", type.env);
  r.Int(t, prefix, "timeout_s", type.timeout_s, 1, 7 * 86400);
  r.Int(t, prefix, "max_attempts", type.max_attempts, 1, 100);
  r.Int(t, prefix, "priority", type.priority, -1'000'000, 1'000'000);
  r.String(t, prefix, "description", type.description);
}

}  // namespace

Result<std::pair<std::string, int>> ParseListen(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return Error{Errc::kInvalidArgument, fmt::format("'{}' is not HOST:PORT", text)};
  }
  std::string host(text.substr(0, colon));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = 0;
  for (char c : text.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535) {
      return Error{Errc::kInvalidArgument, fmt::format("'{}' has a bad port", text)};
    }
    port = port * 10 + (c - '0');
  }
  if (port > 65535) return Error{Errc::kInvalidArgument, fmt::format("'{}' has a bad port", text)};
  return std::pair{host, port};
}

Result<Config> LoadFile(const fs::path& file, std::vector<Problem>* problems) {
  std::vector<Problem> local;
  if (!problems) problems = &local;
  size_t before = problems->size();
  auto config = ReadFile(file, problems);
  if (!config || problems->size() > before) {
    return Error{Errc::kInvalidArgument, Describe(*problems)};
  }
  return std::move(*config);
}

std::optional<Config> ReadFile(const fs::path& file, std::vector<Problem>* problems) {
  Config config = Defaults();
  std::error_code ec;
  fs::path absolute = fs::absolute(file, ec);
  config.config_file = absolute;
  if (!fs::is_regular_file(absolute, ec)) {
    problems->push_back({file.string(), "no such config file"});
    return std::nullopt;
  }
  toml::table doc;
  try {
    doc = toml::parse_file(absolute.string());
  } catch (const toml::parse_error& err) {
    const auto& where = err.source().begin;
    problems->push_back({fmt::format("{}:{}:{}", file.string(), where.line, where.column),
                         std::string(err.description())});
    return std::nullopt;
  }
  Reader r(problems, absolute.parent_path());
  r.CheckKeys(doc, "",
              {"data_dir", "log_level", "asset_path", "server", "store", "agent", "gpu", "phases",
               "services", "task_types"});
  r.Path(doc, "", "data_dir", config.data_dir);
  r.Path(doc, "", "asset_path", config.asset_path);
  r.String(doc, "", "log_level", config.log_level);
  auto section = [&](std::string_view key) -> const toml::table* {
    auto* node = doc.get(key);
    if (!node) return nullptr;
    if (auto* t = node->as_table()) return t;
    r.Report(std::string(key), "must be a table");
    return nullptr;
  };
  if (auto* t = section("server")) ReadServer(r, *t, config.server);
  if (auto* t = section("store")) ReadStore(r, *t, config.store);
  if (auto* t = section("agent")) ReadAgent(r, *t, config.agent);
  if (auto* t = section("gpu")) internal::ReadGpu(r, *t, config.gpu);
  if (auto* t = section("phases")) internal::ReadPhases(r, *t, config.phases);
  if (auto* t = section("services")) internal::ReadServices(r, *t, config.services);
  if (auto* t = section("task_types")) {
    for (const auto& [key, node] : *t) {
      std::string name(key.str());
      auto* type_table = node.as_table();
      if (!type_table) {
        r.Report("task_types." + name, "must be a table");
        continue;
      }
      TaskType& type = config.task_types[name];  // may refine a built-in (echo, command)
      ReadTaskType(r, name, *type_table, type);
    }
  }
  return config;
}

namespace {

// The notes' COMFYUI_URL / COSYVOICE_URL: the service of that name becomes an external one at
// that URL (health-checked at `health_path`, never started or stopped, no VRAM tracked), and
// the task type of the same name runs through it with no other configuration.
void UseExternalService(Config& config, const std::string& name, const std::string& url,
                        const std::string& health_path) {
  std::string base = url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  ServiceSpec& service = config.services[name];
  ServiceSpec external;
  external.name = name;
  external.kind = ServiceKind::kExternal;
  external.url = base;
  external.health_url = base + health_path;
  external.priority = service.priority;
  external.max_concurrency = service.max_concurrency;
  external.phases = service.phases;
  service = std::move(external);
  auto [it, added] = config.task_types.try_emplace(name);
  if (added) {
    it->second.name = name;
    it->second.connector = name;
    it->second.description = fmt::format("{} at {} (from the environment)", name, base);
  }
  if (it->second.service.empty()) it->second.service = name;
}

}  // namespace

void ApplyEnvironment(Config& config, std::vector<Problem>* problems, GetEnv getenv) {
  auto get = [&](const char* name) -> std::optional<std::string> {
    const char* v = getenv(name);
    if (!v || !*v) return std::nullopt;
    return std::string(v);
  };
  if (auto v = get("GPUQ_TOKEN")) config.server.token = *v;
  if (auto v = get("GPUQ_DATA_DIR")) config.data_dir = *v;
  if (auto v = get("GPUQ_STORE")) config.store.url = *v;
  if (auto v = get("ASSET_PATH")) config.asset_path = *v;
  // Docker's own variable. Only a unix socket is spoken here; another kind (tcp://) is left
  // alone rather than refused, since it may be meant for other tools on a host without docker
  // services.
  if (auto v = get("DOCKER_HOST"); v && v->starts_with("unix://")) {
    config.gpu.docker_socket = v->substr(7);
  }
  for (auto [variable, name, health] : {std::tuple{"COMFYUI_URL", "comfyui", "/system_stats"},
                                        std::tuple{"COSYVOICE_URL", "cosyvoice", "/docs"}}) {
    auto v = get(variable);
    if (!v) continue;
    if (!v->starts_with("http://")) {
      problems->push_back({variable, "must be an http:// URL"});
      continue;
    }
    UseExternalService(config, name, *v, health);
  }
  if (auto v = get("GPUQ_LISTEN")) {
    auto parsed = ParseListen(*v);
    if (!parsed) {
      problems->push_back({"GPUQ_LISTEN", parsed.error().message});
    } else {
      config.server.host = parsed.value().first;
      config.server.port = parsed.value().second;
    }
  }
  if (auto v = get("GPUQ_GPUS")) {
    std::vector<int> gpus;
    bool ok = true;
    std::string_view rest = *v;
    while (ok) {
      auto comma = rest.find(',');
      std::string_view item = rest.substr(0, comma);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      int index = 0;
      auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), index);
      ok = !item.empty() && ec == std::errc() && end == item.data() + item.size() && index >= 0;
      if (ok) gpus.push_back(index);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    if (ok) {
      config.gpu.gpus = std::move(gpus);
    } else {
      problems->push_back(
          {"GPUQ_GPUS", fmt::format("'{}' is not a list of GPU indexes like 0,1", *v)});
    }
  }
  // The notes' Redis variables select a Redis store when either is set.
  auto redis_host = get("REDIS_HOST");
  auto redis_port = get("REDIS_PORT");
  if (redis_host || redis_port) {
    config.store.url = fmt::format("redis://{}:{}/0", redis_host.value_or("localhost"),
                                   redis_port.value_or("6379"));
  }
}

void Finalize(Config& config, const std::vector<std::string>& known_connectors,
              std::vector<Problem>* problems, const SettingsCheck& check_settings) {
  std::error_code ec;
  config.data_dir = fs::absolute(config.data_dir, ec).lexically_normal();
  if (!config.asset_path.empty()) {
    config.asset_path = fs::absolute(config.asset_path, ec).lexically_normal();
  }
  if (config.store.url.empty()) {
    config.store.url = "sqlite://" + (config.data_dir / "gpuq.db").string();
  }
  if (config.server.port < 0 || config.server.port > 65535) {
    problems->push_back({"server.listen", "port must be between 0 and 65535"});
  }
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error",
                                                "critical", "off"};
  if (!kLevels.count(config.log_level)) {
    problems->push_back({"log_level", "must be one of trace, debug, info, warn, error, off"});
  }
  for (auto& [name, type] : config.task_types) {
    std::string prefix = "task_types." + name;
    type.name = name;
    if (type.connector.empty()) {
      problems->push_back({prefix + ".connector", "is required"});
    } else if (std::find(known_connectors.begin(), known_connectors.end(), type.connector) ==
               known_connectors.end()) {
      problems->push_back({prefix + ".connector",
                           fmt::format("unknown connector '{}' (known: {})", type.connector,
                                       fmt::join(known_connectors, ", "))});
    }
    if (check_settings && !type.connector.empty()) {
      for (auto& problem : check_settings(type)) {
        problem.field = problem.field.empty() ? prefix : prefix + "." + problem.field;
        problems->push_back(std::move(problem));
      }
    } else {
      for (const auto& [key, value] : type.settings.items()) {
        problems->push_back({prefix + "." + key, "unknown setting"});
      }
    }
    if (type.connector == "command" && name != "command" && type.argv.empty()) {
      problems->push_back({prefix + ".argv", "a command task type needs a non-empty argv"});
    }
    if (name == "comfy") {
      problems->push_back({prefix, "'comfy' is an alias of 'comfyui'; name the type comfyui"});
    }
  }
  internal::CheckGpuAndServices(config, problems);
}

std::string Describe(const std::vector<Problem>& problems) {
  std::string out;
  for (const auto& p : problems) {
    if (!out.empty()) out += "; ";
    out += p.field.empty() ? p.message : p.field + ": " + p.message;
  }
  return out;
}

}  // namespace gpuq::config
