#include "cli/gpu_commands.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/output.hpp"

namespace gpuq::cli {

using nlohmann::json;

namespace {

// The server answers start, stop and phase once the services have settled, which can take
// minutes (its own reply deadline is 300 s): wait a little longer than it does.
constexpr std::chrono::milliseconds kCommandTimeout = std::chrono::seconds(330);
constexpr int kBarWidth = 20;

std::string Text(const json& object, const char* key, std::string_view none = "-") {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::string(none);
  if (it->is_string())
    return it->get<std::string>().empty() ? std::string(none) : it->get<std::string>();
  return it->dump();
}

long long Int(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_number() ? it->get<long long>() : 0;
}

std::string Bar(long long used, long long total) {
  int filled = 0;
  if (total > 0) {
    filled = static_cast<int>((std::clamp(used, 0LL, total) * kBarWidth + total / 2) / total);
  }
  return "[" + std::string(filled, '#') + std::string(kBarWidth - filled, '-') + "]";
}

// "a, b" from a JSON array of strings; "-" when empty or absent.
std::string List(const json& reply, const char* key) {
  auto it = reply.find(key);
  if (it == reply.end() || !it->is_array() || it->empty()) return "-";
  std::vector<std::string> items;
  for (const auto& item : *it)
    items.push_back(item.is_string() ? item.get<std::string>() : item.dump());
  return fmt::format("{}", fmt::join(items, ", "));
}

bool Succeeded(const json& reply) { return reply.value("success", false); }

// Prints the reply (--json) or `line`; 0 on success, else the reply's error and 1.
int Report(const GlobalOptions& global, const json& reply, const std::string& line,
           const std::string& failure) {
  if (global.json) {
    fmt::print("{}\n", reply.dump(2));
  } else if (Succeeded(reply)) {
    fmt::print("{}\n", line);
  } else {
    std::string why = Text(reply, "error", "");
    fmt::print(stderr, "gpuq: {}{}\n", failure, why.empty() ? "" : ": " + why);
  }
  return Succeeded(reply) ? 0 : 1;
}

Result<json> Post(const GlobalOptions& global, const std::string& target) {
  BOOST_OUTCOME_TRY(auto api, ApiClient::Connect(global, kCommandTimeout));
  return api.PostJson(target, json::object());
}

}  // namespace

std::string RenderGpuStatus(const json& status) {
  std::string out;
  const json gpus = status.value("gpus", json::array());
  std::vector<std::vector<std::string>> rows = {
      {"SERVICE", "GPU", "STATE", "VRAM(declared/measured)", "PORT", "PID", "RUNS"}};
  std::vector<std::string> placed;
  for (const auto& gpu : gpus) {
    std::string where = fmt::format("{}:{}", Text(gpu, "host"), Int(gpu, "index"));
    long long used = Int(gpu, "used_mb"), total = Int(gpu, "total_mb");
    out += fmt::format("{} {} {} {}/{} MB (free {}, reserve {}, unknown {})\n", where,
                       Text(gpu, "name"), Bar(used, total), used, total, Int(gpu, "free_mb"),
                       Int(gpu, "reserve_mb"), Int(gpu, "unknown_mb"));
    const json lock = gpu.value("lock", json::object());
    if (lock.contains("holder") && lock["holder"].is_string()) {
      out += fmt::format("  locked by {} (ttl {} s, token {})\n", lock["holder"].get<std::string>(),
                         Int(lock, "ttl"), Int(lock, "token"));
    }
    const json services = gpu.value("services", json::object());
    for (const auto& [name, s] : services.items()) {
      std::string pid = Text(s, "pid");
      if (pid == "-") pid = Text(s, "container");
      std::string port = Int(s, "port") > 0 ? std::to_string(Int(s, "port")) : "-";
      rows.push_back({name, where, Text(s, "state"),
                      fmt::format("{}/{}", Int(s, "vram_mb_declared"), Text(s, "vram_mb_measured")),
                      port, pid, std::to_string(Int(s, "active_runs"))});
      placed.push_back(name);
    }
  }
  if (gpus.empty()) out += "no GPU reported: is an agent running (`gpuq serve` or `gpuq agent`)?\n";
  // Configured services no agent shows on a GPU still get a line.
  const json services = status.value("services", json::object());
  for (const auto& [name, s] : services.items()) {
    if (std::find(placed.begin(), placed.end(), name) != placed.end()) continue;
    rows.push_back({name, "-", Text(s, "state"), "-", "-", "-", "-"});
  }
  if (rows.size() > 1) out += "\n" + RenderTable(rows);
  return out;
}

int GpuStatus(const GlobalOptions& global) {
  auto api = ApiClient::Connect(global);
  if (!api) return Fail(api.error());
  auto status = api.value().GetJson("/gpu/status");
  if (!status) return Fail(status.error());
  if (global.json) {
    fmt::print("{}\n", status.value().dump(2));
  } else {
    fmt::print("{}", RenderGpuStatus(status.value()));
  }
  return 0;
}

int ServiceStart(const GlobalOptions& global, const std::string& name) {
  auto reply = Post(global, fmt::format("/gpu/service/{}/start", UrlEncode(name)));
  if (!reply) return Fail(reply.error());
  std::string line = fmt::format("{} ready", name);
  if (auto it = reply.value().find("gpu"); it != reply.value().end() && !it->is_null()) {
    line += fmt::format(" on GPU {}", it->dump());
  }
  return Report(global, reply.value(), line, fmt::format("{} did not start", name));
}

int ServiceStop(const GlobalOptions& global, const std::string& name, bool force) {
  auto reply = Post(global, fmt::format("/gpu/service/{}/stop?force={}", UrlEncode(name),
                                        force ? "true" : "false"));
  if (!reply) return Fail(reply.error());
  std::string line = fmt::format("{} stopped", name);
  if (auto requeued = List(reply.value(), "requeued"); requeued != "-") {
    line += fmt::format(" (requeued {})", requeued);
  }
  return Report(global, reply.value(), line, fmt::format("{} did not stop", name));
}

int ServiceLogs(const GlobalOptions& global, const std::string& name, int gpu, bool follow) {
  auto api = ApiClient::Connect(global);
  if (!api) return Fail(api.error());
  std::string target = fmt::format("/gpu/service/{}/logs?gpu={}", UrlEncode(name), gpu);
  if (!follow) {
    auto text = api.value().GetRaw(target);
    if (!text) return Fail(text.error());
    fmt::print("{}", text.value());
    return 0;
  }
  auto streamed =
      api.value().http().Stream(target + "&follow=1", [](std::string_view, std::string_view data) {
        fmt::print("{}\n", data);
        std::fflush(stdout);
        return true;
      });
  if (!streamed) return Fail(streamed.error());
  if (streamed.value().status != 200) return Fail(ErrorFromResponse(streamed.value()));
  return 0;
}

int PreparePhase(const GlobalOptions& global, int phase) {
  auto reply = Post(global, fmt::format("/gpu/prepare-phase/{}", phase));
  if (!reply) return Fail(reply.error());
  const json& r = reply.value();
  std::string line = fmt::format("phase {} ready: started {}; stopped {}; kept busy {}", phase,
                                 List(r, "started"), List(r, "stopped"), List(r, "kept_busy"));
  return Report(global, r, line, fmt::format("phase {} is not ready", phase));
}

// ---- registration ---------------------------------------------------------------------------

struct GpuCommands::State {
  CLI::App* gpu_status = nullptr;
  CLI::App* start = nullptr;
  CLI::App* stop = nullptr;
  CLI::App* logs = nullptr;
  CLI::App* phase = nullptr;
  std::string name;
  bool force = false;
  int gpu = 0;
  bool follow = false;
  int phase_number = 0;
};

GpuCommands::GpuCommands(CLI::App& app) : state_(std::make_unique<State>()) {
  State& s = *state_;
  auto* gpu = app.add_subcommand("gpu", "GPUs and the services on them");
  gpu->require_subcommand(1);
  s.gpu_status = gpu->add_subcommand("status", "VRAM per GPU, services, locks");

  auto* service = app.add_subcommand("service", "start, stop or read a GPU service");
  service->require_subcommand(1);
  s.start = service->add_subcommand("start", "start a service (waits until it is healthy)");
  s.start->add_option("name", s.name, "service name")->required();
  s.stop = service->add_subcommand("stop", "stop a service");
  s.stop->add_option("name", s.name, "service name")->required();
  s.stop->add_flag("--force", s.force, "stop even while it serves runs (they are requeued)");
  s.logs = service->add_subcommand("logs", "print a service's own output");
  s.logs->add_option("name", s.name, "service name")->required();
  s.logs->add_option("--gpu", s.gpu, "GPU index")->capture_default_str();
  s.logs->add_flag("--follow,-f", s.follow, "keep printing new lines");

  s.phase = app.add_subcommand("phase", "stage the services a pipeline phase needs");
  s.phase->add_option("phase", s.phase_number, "phase number (see config [phases])")->required();

  // Global flags (--server, --token, --json) work after the nested subcommands too.
  for (auto* parent : {gpu, service}) {
    for (auto* sub : parent->get_subcommands({})) sub->fallthrough();
  }
}

GpuCommands::~GpuCommands() = default;

std::optional<int> GpuCommands::Run(const GlobalOptions& global) const {
  const State& s = *state_;
  if (*s.gpu_status) return GpuStatus(global);
  if (*s.start) return ServiceStart(global, s.name);
  if (*s.stop) return ServiceStop(global, s.name, s.force);
  if (*s.logs) return ServiceLogs(global, s.name, s.gpu, s.follow);
  if (*s.phase) return PreparePhase(global, s.phase_number);
  return std::nullopt;
}

}  // namespace gpuq::cli
