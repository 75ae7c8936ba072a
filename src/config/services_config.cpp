// [gpu], [phases] and [services]: reading them from TOML and the rules across them.
#include <charconv>
#include <csignal>
#include <limits>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "config/toml_reader.hpp"
#include "core/placeholder.hpp"

namespace gpuq::config::internal {

namespace {

constexpr long long kMaxMb = 16'777'216;  // 16 TiB: anything larger is a typo
constexpr long long kMaxGpuIndex = 1023;
constexpr long long kMaxPhase = 1000;

constexpr std::string_view kBackends[] = {"auto", "nvml", "nvidia-smi", "sim", "none"};

struct SignalName {
  std::string_view name;
  int number;
};
constexpr SignalName kSignals[] = {{"SIGTERM", SIGTERM}, {"SIGINT", SIGINT},   {"SIGKILL", SIGKILL},
                                   {"SIGHUP", SIGHUP},   {"SIGQUIT", SIGQUIT}, {"SIGUSR1", SIGUSR1},
                                   {"SIGUSR2", SIGUSR2}};

// Keys that only one kind of service understands: setting them on another kind is a mistake
// that would otherwise be silently ignored.
constexpr std::string_view kProcessOnly[] = {"argv", "stop_argv", "stop_signal", "pid_file"};
constexpr std::string_view kDockerOnly[] = {"container"};

// `key` as an array of integers in [min, max] into `out`; false (with a problem) otherwise.
bool ReadIntArray(Reader& r, const toml::table& t, const std::string& prefix, std::string_view key,
                  long long min, long long max, std::vector<int>& out) {
  const toml::array* array = t.get(key) ? t.get(key)->as_array() : nullptr;
  std::string field = Reader::Join(prefix, key);
  if (!array) {
    r.Report(field, "must be an array of integers");
    return false;
  }
  std::vector<int> values;
  for (const auto& item : *array) {
    auto v = item.value<int64_t>();
    if (!item.is_integer() || !v) {
      r.Report(field, "must be an array of integers");
      return false;
    }
    if (*v < min || *v > max) {
      r.Report(field, fmt::format("entries must be between {} and {} ({} is not)", min, max, *v));
      return false;
    }
    values.push_back(static_cast<int>(*v));
  }
  out = std::move(values);
  return true;
}

// A list of GPU indexes: integers >= 0, each once.
bool ReadGpuIndexes(Reader& r, const toml::table& t, const std::string& prefix,
                    std::string_view key, std::vector<int>& out) {
  std::vector<int> values;
  if (!ReadIntArray(r, t, prefix, key, 0, kMaxGpuIndex, values)) return false;
  std::set<int> seen;
  for (int v : values) {
    if (!seen.insert(v).second) {
      r.Report(Reader::Join(prefix, key), fmt::format("lists GPU {} twice", v));
      return false;
    }
  }
  out = std::move(values);
  return true;
}

void ReadSim(Reader& r, const toml::table& t, GpuConfig& gpu) {
  const toml::array* array = t.get("sim")->as_array();
  if (!array || !array->is_array_of_tables()) {
    r.Report("gpu.sim", "must be an array of tables ([[gpu.sim]])");
    return;
  }
  gpu.sim.clear();
  int position = 0;
  for (const auto& item : *array) {
    const toml::table& entry = *item.as_table();
    std::string prefix = fmt::format("gpu.sim[{}]", position);
    r.CheckKeys(entry, prefix, {"index", "name", "total_mb"});
    SimGpuConfig sim;
    sim.index = position;
    r.Int(entry, prefix, "index", sim.index, 0, kMaxGpuIndex);
    r.String(entry, prefix, "name", sim.name);
    if (sim.name.empty()) r.Report(prefix + ".name", "must not be empty");
    r.Int(entry, prefix, "total_mb", sim.total_mb, 1, kMaxMb);
    gpu.sim.push_back(std::move(sim));
    ++position;
  }
}

bool IsServiceName(std::string_view name) {
  if (name.empty() || name.front() == '.' || name.front() == '-') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

void ReadStopSignal(Reader& r, const toml::table& t, const std::string& prefix, int& out) {
  const toml::node* node = t.get("stop_signal");
  if (!node) return;
  std::string field = prefix + ".stop_signal";
  if (node->is_integer()) {
    r.Int(t, prefix, "stop_signal", out, 1, 64);
    return;
  }
  if (auto name = node->value<std::string>(); name && node->is_string()) {
    for (const auto& s : kSignals) {
      if (*name == s.name) {
        out = s.number;
        return;
      }
    }
  }
  r.Report(field,
           "must be SIGTERM, SIGINT, SIGKILL, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 or a number 1..64");
}

// evict_body as JSON text: a TOML table is converted, a string must already be JSON.
void ReadEvictBody(Reader& r, const toml::table& t, const std::string& prefix, std::string& out) {
  const toml::node* node = t.get("evict_body");
  if (!node) return;
  std::string field = prefix + ".evict_body";
  if (const toml::table* table = node->as_table()) {
    std::ostringstream text;
    text << toml::json_formatter{*table};
    auto json = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded()) {
      r.Report(field, "cannot be written as JSON");
    } else {
      out = json.dump();
    }
    return;
  }
  if (auto v = node->value<std::string>(); v && node->is_string()) {
    if (!nlohmann::json::accept(*v)) {
      r.Report(field, "must be JSON text or a TOML table");
    } else {
      out = nlohmann::json::parse(*v).dump();
    }
    return;
  }
  r.Report(field, "must be JSON text or a TOML table");
}

void ReadService(Reader& r, const std::string& name, const toml::table& t, ServiceSpec& spec) {
  std::string prefix = "services." + name;
  r.CheckKeys(t, prefix,
              {"kind",           "vram_mb",  "priority",   "health_url",     "health_timeout_s",
               "warm_time_s",    "phases",   "container",  "argv",           "stop_signal",
               "stop_argv",      "pid_file", "evict_api",  "evict_body",     "gpus",
               "base_port",      "env",      "idle_ttl_s", "stop_timeout_s", "url",
               "max_concurrency"});
  spec.name = name;
  bool kind_known = true;
  if (t.contains("kind")) {
    std::string word;
    r.String(t, prefix, "kind", word);
    if (auto kind = ParseServiceKind(word)) {
      spec.kind = *kind;
    } else if (kind_known = false; t.get("kind")->is_string()) {
      r.Report(prefix + ".kind", word == "native"
                                     ? "must be process, docker, external or slot (the notes' "
                                       "'native' is 'process')"
                                     : "must be process, docker, external or slot");
    }
  }
  for (std::string_view key : kProcessOnly) {
    if (kind_known && t.contains(key) && spec.kind != ServiceKind::kProcess) {
      r.Report(Reader::Join(prefix, key),
               fmt::format("only for kind process (this service is {})", ToString(spec.kind)));
    }
  }
  for (std::string_view key : kDockerOnly) {
    if (kind_known && t.contains(key) && spec.kind != ServiceKind::kDocker) {
      r.Report(Reader::Join(prefix, key),
               fmt::format("only for kind docker (this service is {})", ToString(spec.kind)));
    }
  }
  r.Int(t, prefix, "vram_mb", spec.vram_mb, 0, kMaxMb);
  r.Int(t, prefix, "priority", spec.priority, std::numeric_limits<int>::min(),
        std::numeric_limits<int>::max());
  r.String(t, prefix, "health_url", spec.health_url);
  r.Duration(t, prefix, "health_timeout_s", spec.health_timeout, 1000, 1, 86400);
  r.Duration(t, prefix, "warm_time_s", spec.warm_time, 1000, 0, 86400);
  if (t.contains("phases")) ReadIntArray(r, t, prefix, "phases", 1, kMaxPhase, spec.phases);
  r.String(t, prefix, "container", spec.container);
  ReadStringArray(r, t, prefix, "argv", spec.argv);
  r.ResolveProgram(spec.argv);
  ReadStopSignal(r, t, prefix, spec.stop_signal);
  ReadStringArray(r, t, prefix, "stop_argv", spec.stop_argv);
  r.ResolveProgram(spec.stop_argv);
  r.String(t, prefix, "pid_file", spec.pid_file);
  if (!spec.pid_file.empty() && !spec.pid_file.starts_with("{{")) {
    spec.pid_file = r.Resolve(spec.pid_file);
  }
  r.String(t, prefix, "evict_api", spec.evict_api);
  ReadEvictBody(r, t, prefix, spec.evict_body);
  if (const toml::node* gpus = t.get("gpus")) {
    if (gpus->is_string() && gpus->value<std::string>() == "any") {
      spec.gpus.reset();
    } else if (gpus->is_array()) {
      std::vector<int> indexes;
      if (ReadGpuIndexes(r, t, prefix, "gpus", indexes)) {
        if (indexes.empty()) {
          r.Report(prefix + ".gpus", "must name at least one GPU (or be \"any\")");
        } else {
          spec.gpus = std::move(indexes);
        }
      }
    } else {
      r.Report(prefix + ".gpus", "must be an array of GPU indexes or \"any\"");
    }
  }
  r.Int(t, prefix, "base_port", spec.base_port, 1, 65535);
  ReadStringTable(r, t, prefix, "env", spec.env);
  r.Duration(t, prefix, "idle_ttl_s", spec.idle_ttl, 1000, 0, 30 * 86400);
  r.Duration(t, prefix, "stop_timeout_s", spec.stop_timeout, 1000, 0, 86400);
  r.String(t, prefix, "url", spec.url);
  r.Int(t, prefix, "max_concurrency", spec.max_concurrency, 1, 1'000'000);
}

std::string JoinInts(const std::vector<int>& values) {
  return fmt::format("{}", fmt::join(values, ", "));
}

// Checks one template string: placeholders parse, are service placeholders, and {{port}} has
// a base_port to come from.
void CheckTemplate(const ServiceSpec& spec, const std::string& field, const std::string& text,
                   std::vector<Problem>* problems) {
  auto names = PlaceholderNames(text);
  if (!names) {
    problems->push_back({field, names.error().message});
    return;
  }
  for (const auto& name : names.value()) {
    if (name == "port") {
      if (spec.base_port == 0) {
        problems->push_back({field, "uses {{port}} but the service has no base_port"});
      }
    } else if (name != "gpu" && name != "name" && name != "host") {
      problems->push_back(
          {field, fmt::format("unknown placeholder {{{{{}}}}} (a service may use {{{{port}}}}, "
                              "{{{{gpu}}}}, {{{{name}}}}, {{{{host}}}})",
                              name)});
    }
  }
}

bool IsHttpUrl(const std::string& text) {
  return text.starts_with("http://") || text.starts_with("https://");
}

void CheckService(const Config& config, const std::set<int>* available, ServiceSpec& spec,
                  std::vector<Problem>* problems) {
  std::string prefix = "services." + spec.name;
  auto report = [&](std::string_view key, std::string message) {
    problems->push_back({Reader::Join(prefix, key), std::move(message)});
  };
  bool managed = spec.kind != ServiceKind::kExternal;
  switch (spec.kind) {
    case ServiceKind::kProcess:
      if (spec.argv.empty()) report("argv", "a process service needs a non-empty argv");
      break;
    case ServiceKind::kDocker:
      if (spec.container.empty()) report("container", "a docker service needs its container name");
      break;
    case ServiceKind::kExternal:
      // argv or container on an external service is reported by ReadService (key of another
      // kind), where the key's presence is known.
      if (spec.url.empty()) report("url", "an external service needs its url");
      if (spec.health_url.empty()) spec.health_url = spec.url;
      break;
    case ServiceKind::kSlot:
      if (!spec.health_url.empty()) report("health_url", "a slot runs nothing to check");
      if (!spec.url.empty()) report("url", "a slot runs nothing to reach");
      break;
  }
  if (managed) {
    if (spec.health_url.empty() && spec.kind != ServiceKind::kSlot) {
      report("health_url", fmt::format("a {} service needs a health_url", ToString(spec.kind)));
    }
    if (spec.vram_mb <= 0) report("vram_mb", "must be a positive integer");
  } else if (spec.vram_mb < 0) {
    report("vram_mb", "must not be negative");
  }
  if (!spec.health_url.empty() && !IsHttpUrl(spec.health_url)) {
    report("health_url", "must be an http:// or https:// URL");
  }
  if (!spec.url.empty() && !IsHttpUrl(spec.url))
    report("url", "must be an http:// or https:// URL");
  if (!spec.evict_api.empty() && !IsHttpUrl(spec.evict_api)) {
    report("evict_api", "must be an http:// or https:// URL");
  }
  if (!spec.evict_body.empty()) {
    if (spec.evict_api.empty()) report("evict_body", "needs evict_api");
    if (!nlohmann::json::accept(spec.evict_body)) report("evict_body", "must be JSON text");
  }
  if (spec.health_timeout <= Millis(0)) report("health_timeout_s", "must be positive");
  if (spec.max_concurrency < 1) report("max_concurrency", "must be at least 1");
  if (spec.stop_signal < 1 || spec.stop_signal > 64) report("stop_signal", "must be 1..64");
  for (int phase : spec.phases) {
    if (!config.phases.count(phase)) {
      std::vector<int> known;
      for (const auto& [number, name] : config.phases) known.push_back(number);
      report("phases", fmt::format("phase {} is not in [phases] (configured: {})", phase,
                                   known.empty() ? "none" : JoinInts(known)));
    }
  }
  int max_index = 0;
  if (spec.gpus) {
    if (spec.gpus->empty()) report("gpus", "must name at least one GPU (or be \"any\")");
    for (int g : *spec.gpus) {
      if (g < 0) {
        report("gpus", fmt::format("GPU indexes must be >= 0 ({} is not)", g));
      } else if (available && !available->count(g)) {
        report("gpus", fmt::format("GPU {} is not one of this agent's GPUs ({})", g,
                                   JoinInts({available->begin(), available->end()})));
      }
      max_index = std::max(max_index, g);
    }
  } else if (available && !available->empty()) {
    max_index = *available->rbegin();
  }
  if (spec.base_port != 0) {
    if (spec.base_port < 1 || spec.base_port > 65535) {
      report("base_port", "must be between 1 and 65535");
    } else if (spec.base_port + max_index > 65535) {
      report("base_port", fmt::format("base_port {} + GPU index {} is above port 65535",
                                      spec.base_port, max_index));
    }
  }
  CheckTemplate(spec, prefix + ".health_url", spec.health_url, problems);
  CheckTemplate(spec, prefix + ".url", spec.url, problems);
  CheckTemplate(spec, prefix + ".container", spec.container, problems);
  CheckTemplate(spec, prefix + ".pid_file", spec.pid_file, problems);
  CheckTemplate(spec, prefix + ".evict_api", spec.evict_api, problems);
  for (const auto& arg : spec.argv) CheckTemplate(spec, prefix + ".argv", arg, problems);
  for (const auto& arg : spec.stop_argv) CheckTemplate(spec, prefix + ".stop_argv", arg, problems);
  for (const auto& [key, value] : spec.env) {
    CheckTemplate(spec, prefix + ".env." + key, value, problems);
  }
}

}  // namespace

void ReadStringArray(Reader& r, const toml::table& t, const std::string& prefix,
                     std::string_view key, std::vector<std::string>& out) {
  auto* node = t.get(key);
  if (!node) return;
  auto* array = node->as_array();
  if (!array) {
    r.Report(Reader::Join(prefix, key), "must be an array of strings");
    return;
  }
  out.clear();
  for (const auto& item : *array) {
    if (auto v = item.value<std::string>(); v && item.is_string()) {
      out.push_back(*v);
    } else {
      r.Report(Reader::Join(prefix, key), "must be an array of strings");
      return;
    }
  }
}

void ReadStringTable(Reader& r, const toml::table& t, const std::string& prefix,
                     std::string_view key, std::map<std::string, std::string>& out) {
  auto* node = t.get(key);
  if (!node) return;
  auto* table = node->as_table();
  if (!table) {
    r.Report(Reader::Join(prefix, key), "must be a table of strings");
    return;
  }
  for (const auto& [name, value] : *table) {
    if (auto v = value.value<std::string>(); v && value.is_string()) {
      out[std::string(name.str())] = *v;
    } else {
      r.Report(Reader::Join(prefix, key) + "." + std::string(name.str()), "must be a string");
    }
  }
}

void ReadGpu(Reader& r, const toml::table& t, GpuConfig& gpu) {
  const std::string p = "gpu";
  r.CheckKeys(t, p,
              {"backend", "reserve_mb", "gpus", "host", "lock_ttl_s", "aging_s", "memory_wait_s",
               "health_interval_ms", "docker_socket", "nvml_library", "nvidia_smi",
               "fake_services_die_with_agent", "sim"});
  if (t.contains("backend")) {
    std::string backend;
    r.String(t, p, "backend", backend);
    if (std::find(std::begin(kBackends), std::end(kBackends), backend) != std::end(kBackends)) {
      gpu.vram_backend = backend;
    } else if (t.get("backend")->is_string()) {
      r.Report("gpu.backend", "must be one of auto, nvml, nvidia-smi, sim, none");
    }
  }
  r.Int(t, p, "reserve_mb", gpu.reserve_mb, 0, kMaxMb);
  if (t.contains("gpus")) ReadGpuIndexes(r, t, p, "gpus", gpu.gpus);
  r.String(t, p, "host", gpu.host);
  r.Duration(t, p, "lock_ttl_s", gpu.lock_ttl, 1000, 1, 3600);
  r.Duration(t, p, "aging_s", gpu.aging_step, 1000, 1, 86400);
  r.Duration(t, p, "memory_wait_s", gpu.memory_wait, 1000, 1, 3600);
  r.Duration(t, p, "health_interval_ms", gpu.health_interval, 1, 10, 60000);
  r.String(t, p, "docker_socket", gpu.docker_socket);
  if (t.contains("docker_socket") && !gpu.docker_socket.empty()) {
    gpu.docker_socket = r.Resolve(gpu.docker_socket);
  }
  // A library or program given with a '/' is a path relative to the file; a bare name is
  // looked up by dlopen / PATH.
  r.String(t, p, "nvml_library", gpu.nvml_library);
  if (t.contains("nvml_library") && gpu.nvml_library.find('/') != std::string::npos) {
    gpu.nvml_library = r.Resolve(gpu.nvml_library);
  }
  r.String(t, p, "nvidia_smi", gpu.nvidia_smi);
  if (t.contains("nvidia_smi") && gpu.nvidia_smi.find('/') != std::string::npos) {
    gpu.nvidia_smi = r.Resolve(gpu.nvidia_smi);
  }
  r.Bool(t, p, "fake_services_die_with_agent", gpu.fake_services_die_with_agent);
  if (t.contains("sim")) ReadSim(r, t, gpu);
}

void ReadPhases(Reader& r, const toml::table& t, std::map<int, std::string>& phases) {
  phases.clear();
  for (const auto& [key, node] : t) {
    std::string_view text = key.str();
    std::string field = "phases." + std::string(text);
    int number = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (ec != std::errc() || end != text.data() + text.size() || number < 1 || number > kMaxPhase) {
      r.Report(field,
               fmt::format("a phase is a number from 1 to {} (\"1\" = \"crawl\")", kMaxPhase));
      continue;
    }
    auto name = node.value<std::string>();
    if (!node.is_string() || !name || name->empty()) {
      r.Report(field, "must be the phase's name (a non-empty string)");
      continue;
    }
    phases[number] = *name;
  }
}

void ReadServices(Reader& r, const toml::table& t, std::map<std::string, ServiceSpec>& services) {
  for (const auto& [key, node] : t) {
    std::string name(key.str());
    if (!IsServiceName(name)) {
      r.Report("services." + name, "a service name uses letters, digits, '_', '-' and '.'");
      continue;
    }
    const toml::table* table = node.as_table();
    if (!table) {
      r.Report("services." + name, "must be a table");
      continue;
    }
    ServiceSpec& spec = services[name];
    ReadService(r, name, *table, spec);
  }
}

void CheckGpuAndServices(Config& config, std::vector<Problem>* problems) {
  const GpuConfig& gpu = config.gpu;
  auto report = [&](std::string field, std::string message) {
    problems->push_back({std::move(field), std::move(message)});
  };
  bool sim = gpu.vram_backend == "sim";
  if (std::find(std::begin(kBackends), std::end(kBackends), gpu.vram_backend) ==
      std::end(kBackends)) {
    report("gpu.backend", "must be one of auto, nvml, nvidia-smi, sim, none");
  }
  if (gpu.reserve_mb < 0) report("gpu.reserve_mb", "must not be negative");
  std::set<int> sim_indexes;
  if (sim && gpu.sim.empty()) {
    report("gpu.sim", "backend \"sim\" needs at least one [[gpu.sim]]");
  } else if (!sim && !gpu.sim.empty()) {
    report("gpu.sim", fmt::format("[[gpu.sim]] is only for backend \"sim\" (backend is \"{}\")",
                                  gpu.vram_backend));
  }
  for (size_t i = 0; i < gpu.sim.size(); ++i) {
    const SimGpuConfig& g = gpu.sim[i];
    std::string prefix = fmt::format("gpu.sim[{}]", i);
    if (g.index < 0) report(prefix + ".index", "must be >= 0");
    if (!sim_indexes.insert(g.index).second) {
      report(prefix + ".index", fmt::format("GPU {} is declared twice", g.index));
    }
    if (g.total_mb <= gpu.reserve_mb) {
      report(prefix + ".total_mb",
             fmt::format("must be larger than gpu.reserve_mb ({})", gpu.reserve_mb));
    }
  }
  std::set<int> owned;
  for (int g : gpu.gpus) {
    if (g < 0) {
      report("gpu.gpus", fmt::format("GPU indexes must be >= 0 ({} is not)", g));
    } else if (!owned.insert(g).second) {
      report("gpu.gpus", fmt::format("lists GPU {} twice", g));
    } else if (sim && !sim_indexes.empty() && !sim_indexes.count(g)) {
      report("gpu.gpus", fmt::format("GPU {} is not a [[gpu.sim]] index", g));
    }
  }
  // The GPUs a service may be placed on, when this config alone says which.
  const std::set<int>* available = nullptr;
  if (!gpu.gpus.empty()) {
    available = &owned;
  } else if (sim && !sim_indexes.empty()) {
    available = &sim_indexes;
  }

  std::vector<std::string> managed;
  for (auto& [name, spec] : config.services) {
    spec.name = name;
    if (spec.kind != ServiceKind::kExternal) managed.push_back(name);
    CheckService(config, available, spec, problems);
  }
  if (gpu.vram_backend == "none" && !managed.empty()) {
    report("gpu.backend", fmt::format("\"none\" cannot run process or docker services ({})",
                                      fmt::join(managed, ", ")));
  }

  for (const auto& [name, type] : config.task_types) {
    if (type.service.empty()) continue;
    if (!config.services.count(type.service)) {
      std::vector<std::string> names;
      for (const auto& [service, spec] : config.services) names.push_back(service);
      report("task_types." + name + ".service",
             fmt::format("service '{}' is not configured (configured: {})", type.service,
                         names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "))));
    }
  }
}

}  // namespace gpuq::config::internal
