#include "core/gpu_status.hpp"

#include <fmt/format.h>

#include <limits>
#include <utility>

namespace gpuq {
namespace {

// Rank of a state in BestState's order; higher is better.
int Rank(ServiceState state) {
  switch (state) {
    case ServiceState::kUnknown:
      return 0;
    case ServiceState::kStopped:
      return 1;
    case ServiceState::kError:
      return 2;
    case ServiceState::kStopping:
      return 3;
    case ServiceState::kStarting:
      return 4;
    case ServiceState::kReady:
      return 5;
    case ServiceState::kBusy:
      return 6;
  }
  return 0;
}

template <class T>
Json OrNull(const std::optional<T>& value) {
  return value ? Json(*value) : Json(nullptr);
}

Json ToJson(const ServiceInstanceStatus& s) {
  return Json{{"state", ToString(s.state)},
              {"vram_mb_declared", s.vram_mb_declared},
              {"vram_mb_measured", OrNull(s.vram_mb_measured)},
              {"port", s.port},
              {"pid", OrNull(s.pid)},
              {"container", s.container},
              {"active_runs", s.active_runs},
              {"error", s.error}};
}

Json ToJson(const GpuLockStatus& lock) {
  return Json{{"holder", OrNull(lock.holder)}, {"ttl", lock.ttl_s}, {"token", lock.token}};
}

Json ToJson(const GpuStatus& gpu) {
  Json services = Json::object();
  for (const auto& [name, instance] : gpu.services) services[name] = ToJson(instance);
  return Json{{"host", gpu.host},
              {"index", gpu.index},
              {"name", gpu.name},
              {"total_mb", gpu.total_mb},
              {"used_mb", gpu.used_mb},
              {"free_mb", gpu.free_mb},
              {"reserve_mb", gpu.reserve_mb},
              {"unknown_mb", gpu.unknown_mb},
              {"services", std::move(services)},
              {"lock", ToJson(gpu.lock)}};
}

// Field readers for FromJson. nlohmann's get<>() throws on a wrong type, and a heartbeat is
// foreign input, so every field is type-checked first and a problem becomes kMalformed.
Error Malformed(std::string_view where, std::string_view what) {
  return Error{Errc::kMalformed, fmt::format("gpu report: {} {}", where, what)};
}

const Json* Field(const Json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

Result<int> ReadInt(const Json& object, const char* key, std::string_view where) {
  const Json* v = Field(object, key);
  if (v == nullptr) return Malformed(where, fmt::format("lacks \"{}\"", key));
  if (!v->is_number_integer())
    return Malformed(where, fmt::format("\"{}\" is not an integer", key));
  long long n = v->get<long long>();
  if (n < std::numeric_limits<int>::min() || n > std::numeric_limits<int>::max() ||
      (v->is_number_unsigned() && v->get<unsigned long long>() > 0x7fffffffULL)) {
    return Malformed(where, fmt::format("\"{}\" is out of range", key));
  }
  return static_cast<int>(n);
}

Result<long long> ReadLong(const Json& object, const char* key, std::string_view where) {
  const Json* v = Field(object, key);
  if (v == nullptr) return Malformed(where, fmt::format("lacks \"{}\"", key));
  if (!v->is_number_integer() ||
      (v->is_number_unsigned() &&
       v->get<unsigned long long>() >
           static_cast<unsigned long long>(std::numeric_limits<long long>::max()))) {
    return Malformed(where, fmt::format("\"{}\" is not an integer", key));
  }
  return v->get<long long>();
}

Result<std::optional<int>> ReadOptionalInt(const Json& object, const char* key,
                                           std::string_view where) {
  const Json* v = Field(object, key);
  if (v == nullptr || v->is_null()) return std::optional<int>();
  BOOST_OUTCOME_TRY(auto n, ReadInt(object, key, where));
  return std::optional<int>(n);
}

Result<std::string> ReadString(const Json& object, const char* key, std::string_view where) {
  const Json* v = Field(object, key);
  if (v == nullptr) return Malformed(where, fmt::format("lacks \"{}\"", key));
  if (!v->is_string()) return Malformed(where, fmt::format("\"{}\" is not a string", key));
  return v->get<std::string>();
}

Result<bool> ReadBool(const Json& object, const char* key, std::string_view where) {
  const Json* v = Field(object, key);
  if (v == nullptr) return Malformed(where, fmt::format("lacks \"{}\"", key));
  if (!v->is_boolean()) return Malformed(where, fmt::format("\"{}\" is not a boolean", key));
  return v->get<bool>();
}

Result<ServiceInstanceStatus> InstanceFromJson(const Json& json, const std::string& where) {
  if (!json.is_object()) return Malformed(where, "is not an object");
  ServiceInstanceStatus s;
  BOOST_OUTCOME_TRY(auto state_word, ReadString(json, "state", where));
  auto state = ParseServiceState(state_word);
  if (!state) return Malformed(where, fmt::format("has unknown state \"{}\"", state_word));
  s.state = *state;
  BOOST_OUTCOME_TRY(s.vram_mb_declared, ReadInt(json, "vram_mb_declared", where));
  BOOST_OUTCOME_TRY(s.vram_mb_measured, ReadOptionalInt(json, "vram_mb_measured", where));
  BOOST_OUTCOME_TRY(s.port, ReadInt(json, "port", where));
  BOOST_OUTCOME_TRY(s.pid, ReadOptionalInt(json, "pid", where));
  BOOST_OUTCOME_TRY(s.container, ReadString(json, "container", where));
  BOOST_OUTCOME_TRY(s.active_runs, ReadInt(json, "active_runs", where));
  BOOST_OUTCOME_TRY(s.error, ReadString(json, "error", where));
  return s;
}

Result<GpuLockStatus> LockFromJson(const Json& json, const std::string& where) {
  if (!json.is_object()) return Malformed(where, "is not an object");
  GpuLockStatus lock;
  const Json* holder = Field(json, "holder");
  if (holder != nullptr && !holder->is_null()) {
    if (!holder->is_string()) return Malformed(where, "\"holder\" is not a string or null");
    lock.holder = holder->get<std::string>();
  }
  BOOST_OUTCOME_TRY(lock.ttl_s, ReadLong(json, "ttl", where));
  BOOST_OUTCOME_TRY(lock.token, ReadLong(json, "token", where));
  return lock;
}

Result<GpuStatus> GpuFromJson(const Json& json, const std::string& where) {
  if (!json.is_object()) return Malformed(where, "is not an object");
  GpuStatus gpu;
  BOOST_OUTCOME_TRY(gpu.host, ReadString(json, "host", where));
  BOOST_OUTCOME_TRY(gpu.index, ReadInt(json, "index", where));
  BOOST_OUTCOME_TRY(gpu.name, ReadString(json, "name", where));
  BOOST_OUTCOME_TRY(gpu.total_mb, ReadInt(json, "total_mb", where));
  BOOST_OUTCOME_TRY(gpu.used_mb, ReadInt(json, "used_mb", where));
  BOOST_OUTCOME_TRY(gpu.free_mb, ReadInt(json, "free_mb", where));
  BOOST_OUTCOME_TRY(gpu.reserve_mb, ReadInt(json, "reserve_mb", where));
  BOOST_OUTCOME_TRY(gpu.unknown_mb, ReadInt(json, "unknown_mb", where));
  const Json* services = Field(json, "services");
  if (services == nullptr || !services->is_object()) {
    return Malformed(where, "\"services\" is not an object");
  }
  for (const auto& [name, instance] : services->items()) {
    BOOST_OUTCOME_TRY(auto status, InstanceFromJson(instance, where + ".services." + name));
    gpu.services.emplace(name, std::move(status));
  }
  const Json* lock = Field(json, "lock");
  if (lock == nullptr) return Malformed(where, "lacks \"lock\"");
  BOOST_OUTCOME_TRY(gpu.lock, LockFromJson(*lock, where + ".lock"));
  return gpu;
}

}  // namespace

Json ToJson(const AgentGpuReport& report) {
  Json gpus = Json::array();
  for (const GpuStatus& gpu : report.gpus) gpus.push_back(ToJson(gpu));
  return Json{{"agent", report.agent},
              {"backend", report.backend},
              {"ok", report.ok},
              {"error", report.error},
              {"gpus", std::move(gpus)}};
}

Result<AgentGpuReport> AgentGpuReportFromJson(const Json& json) {
  const std::string where = "report";
  if (!json.is_object()) return Malformed(where, "is not an object");
  AgentGpuReport report;
  BOOST_OUTCOME_TRY(report.agent, ReadString(json, "agent", where));
  BOOST_OUTCOME_TRY(report.backend, ReadString(json, "backend", where));
  BOOST_OUTCOME_TRY(report.ok, ReadBool(json, "ok", where));
  BOOST_OUTCOME_TRY(report.error, ReadString(json, "error", where));
  const Json* gpus = Field(json, "gpus");
  if (gpus == nullptr || !gpus->is_array()) return Malformed(where, "\"gpus\" is not an array");
  for (std::size_t i = 0; i < gpus->size(); ++i) {
    BOOST_OUTCOME_TRY(auto gpu, GpuFromJson((*gpus)[i], fmt::format("gpus[{}]", i)));
    report.gpus.push_back(std::move(gpu));
  }
  return report;
}

ServiceState BestState(ServiceState a, ServiceState b) { return Rank(b) > Rank(a) ? b : a; }

Json GpuStatusReply(const std::vector<AgentGpuReport>& reports,
                    const std::vector<std::string>& service_names) {
  long long total = 0;
  long long used = 0;
  long long free_mb = 0;
  std::map<std::string, ServiceState> best;
  for (const std::string& name : service_names) best.emplace(name, ServiceState::kStopped);
  Json gpus = Json::array();
  Json agents = Json::array();
  const GpuLockStatus* first_lock = nullptr;
  bool first_lock_is_zero = false;
  for (const AgentGpuReport& report : reports) {
    agents.push_back(Json{{"agent", report.agent},
                          {"backend", report.backend},
                          {"ok", report.ok},
                          {"error", report.error}});
    for (const GpuStatus& gpu : report.gpus) {
      total += gpu.total_mb;
      used += gpu.used_mb;
      free_mb += gpu.free_mb;
      // The notes have one GPU and one lock; "GPU 0" is the first agent's index 0, or the
      // first GPU reported when that agent has no index 0.
      if (first_lock == nullptr ||
          (!first_lock_is_zero && gpu.index == 0 && &report == &reports.front())) {
        first_lock = &gpu.lock;
        first_lock_is_zero = gpu.index == 0;
      }
      for (const auto& [name, instance] : gpu.services) {
        // A configured service nobody reports reads "stopped"; one reported only as
        // "unknown" keeps the better "stopped" default, since `unknown` ranks below it.
        auto [it, inserted] = best.emplace(name, instance.state);
        if (!inserted) it->second = BestState(it->second, instance.state);
      }
      gpus.push_back(ToJson(gpu));
    }
  }
  Json services = Json::object();
  for (const auto& [name, state] : best) services[name] = Json{{"state", ToString(state)}};
  Json lock = Json{{"holder", nullptr}, {"ttl", -2}};
  if (first_lock != nullptr && first_lock->holder) {
    lock = Json{{"holder", *first_lock->holder}, {"ttl", first_lock->ttl_s}};
  }
  return Json{{"vram", Json{{"total_mb", total}, {"used_mb", used}, {"free_mb", free_mb}}},
              {"services", std::move(services)},
              {"lock", std::move(lock)},
              {"gpus", std::move(gpus)},
              {"agents", std::move(agents)}};
}

}  // namespace gpuq
